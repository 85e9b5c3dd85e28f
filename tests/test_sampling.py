"""The sampling core: records, grading, resuming (including a real kill -9), refusing foreign outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from l2s.engines.base import Generation, SamplingParams
from l2s.errors import UserError
from l2s.sampling import meta_path, read_samples, sample, sample_records
from l2s.tasks import Problem

PROBLEMS = [Problem(f"p{i}", f"Compute {i} + 1. End with 'Answer: N'.", str(i + 1)) for i in range(5)]


class ScriptedEngine:
    """An engine that answers from a script: prompt i, sample s -> 'Answer: <i + 1 if s even else 0>'.

    It records the seeds it was called with, so batch seeding can be checked without a model.
    """

    name = model_path = "scripted"
    tokenizer = None

    def __init__(self):
        self.seeds: list[int] = []

    def generate(self, prompts, params: SamplingParams, on_token=None):
        self.seeds.append(params.seed)
        out = []
        for msgs in prompts:
            i = int(msgs[0]["content"].split()[1])
            gens = []
            for s in range(params.n):
                text = f"<think>\n{'x ' * s}\n</think>\nAnswer: {i + 1 if s % 2 == 0 else 0}"
                ids = list(range(3 + s))
                lp = [-0.1] * len(ids) if params.logprobs else None
                gens.append(Generation(text, ids, "stop", "x", "Answer", s, lp, {"answer_tokens": [1, 2]}))
            out.append(gens)
        return out

    def close(self):
        pass


def test_records_are_graded_and_complete(tmp_path):
    out = tmp_path / "s.jsonl"
    records = sample(
        ScriptedEngine(), PROBLEMS, out, SamplingParams(n=3, seed=0, logprobs=True), batch_size=6
    )
    assert len(records) == 15 and read_samples(out) == records
    keys = [(r["prompt_id"], r["sample_idx"]) for r in records]
    assert len(set(keys)) == 15
    r = records[0]
    for field in ("prompt", "completion", "completion_tokens", "reasoning_tokens", "finish_reason", "answer"):
        assert field in r
    assert (r["model"], r["seed"], r["reference"], r["difficulty"]) == ("scripted", 0, "1", 1)
    assert [x["correct"] for x in records[:3]] == [True, False, True]
    assert r["confidence"] == pytest.approx(0.904837, rel=1e-5)  # exp(-0.1)
    assert json.loads(Path(f"{out}.meta.json").read_text())["n"] == 3


def test_batch_seeds_do_not_depend_on_what_already_ran(tmp_path):
    full = ScriptedEngine()
    sample(full, PROBLEMS, tmp_path / "a.jsonl", SamplingParams(n=2, seed=5), batch_size=4, progress=False)
    # Batches are 2 prompts each: [p0 p1] [p2 p3] [p4]; pretend the first two finished.
    done = {(f"p{i}", s) for i in range(4) for s in range(2)}
    resumed = ScriptedEngine()
    list(sample_records(resumed, PROBLEMS, SamplingParams(n=2, seed=5), batch_size=4, done=done))
    assert resumed.seeds == full.seeds[2:]
    assert len(set(full.seeds)) == 3


def test_resume_skips_done_keys_and_drops_a_truncated_line(tmp_path):
    out, params = tmp_path / "s.jsonl", SamplingParams(n=2, seed=0)
    whole = sample(ScriptedEngine(), PROBLEMS, out, params, batch_size=4, progress=False)
    expected = out.read_bytes()
    lines = expected.decode().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20])  # died mid-line, inside the first batch
    engine = ScriptedEngine()
    assert sample(engine, PROBLEMS, out, params, batch_size=4, progress=False) == whole
    assert out.read_bytes() == expected
    assert len(engine.seeds) == 3  # every batch again, as the first was unfinished
    assert sample(engine, PROBLEMS, out, params, batch_size=4, progress=False) == whole
    assert len(engine.seeds) == 3  # nothing left to do


def test_foreign_outputs_are_refused(tmp_path):
    out = tmp_path / "s.jsonl"
    sample(ScriptedEngine(), PROBLEMS, out, SamplingParams(n=2, seed=0), progress=False)
    with pytest.raises(UserError, match=r"other settings \(n\).*--force"):
        sample(ScriptedEngine(), PROBLEMS, out, SamplingParams(n=3, seed=0), progress=False)
    with pytest.raises(UserError, match="problems"):
        sample(ScriptedEngine(), PROBLEMS[:3], out, SamplingParams(n=2, seed=0), progress=False)
    again = sample(ScriptedEngine(), PROBLEMS, out, SamplingParams(n=3, seed=0), force=True, progress=False)
    assert len(again) == 15 and len(read_samples(out)) == 15
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"prompt_id": "x"}\n')
    with pytest.raises(UserError, match="not resumable"):
        sample(ScriptedEngine(), PROBLEMS, bare, SamplingParams(n=1), progress=False)


def test_a_model_retrained_at_the_same_path_is_not_resumed(tmp_path):
    ckpt = tmp_path / "model"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights v1")
    engine = ScriptedEngine()
    engine.model_path = str(ckpt)
    out, params = tmp_path / "s.jsonl", SamplingParams(n=1, seed=0)
    first = sample(engine, PROBLEMS, out, params, progress=False)
    assert sample(engine, PROBLEMS, out, params, progress=False) == first  # same weights: resumed
    (ckpt / "model.safetensors").write_bytes(b"weights v2, retrained")
    with pytest.raises(UserError, match=r"weights were written again.*--force"):
        sample(engine, PROBLEMS, out, params, progress=False)
    assert len(sample(engine, PROBLEMS, out, params, force=True, progress=False)) == len(first)
    # a sidecar written before the weights were recorded still resumes (the path is all it knows)
    meta = json.loads(meta_path(out).read_text())
    del meta["model_weights"]
    meta_path(out).write_text(json.dumps(meta))
    assert sample(engine, PROBLEMS, out, params, progress=False) == first


def _l2s(*args: str) -> list[str]:
    return [sys.executable, "-m", "l2s.cli", *args]


def _sample_cmd(model: Path, out: Path) -> list[str]:
    return _l2s(
        "sample", "--model", str(model), "--task", "arith", "--limit", "12", "--n", "2",
        "--max-tokens", "12", "--batch-size", "4", "--temperature", "1.0", "--seed", "3", "--out", str(out),
    )  # fmt: skip


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(pico_ckpt, tmp_path):
    """A real `kill -9` mid-run; the rerun completes the file, identical to a run never interrupted."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = tmp_path / "whole.jsonl"
    subprocess.run(_sample_cmd(pico_ckpt, whole), check=True, env=env, capture_output=True, timeout=300)
    expected = whole.read_bytes()
    assert expected.count(b"\n") == 24

    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(_sample_cmd(pico_ckpt, out), env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (out.is_file() and out.read_bytes().count(b"\n") >= 4):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    assert 4 <= partial < 24, "the kill must land mid-run"
    subprocess.run(_sample_cmd(pico_ckpt, out), check=True, env=env, capture_output=True, timeout=300)
    assert out.read_bytes() == expected
    keys = [(r["prompt_id"], r["sample_idx"]) for r in read_samples(out)]
    assert len(keys) == len(set(keys)) == 24


@pytest.mark.slow
def test_cli_bad_input_is_one_line(pico_ckpt, tmp_path):
    def run(*args):
        return subprocess.run(_l2s("sample", *args), capture_output=True, text=True, timeout=120)

    cases = {
        ("--model", str(pico_ckpt), "--task", "nope", "--out", str(tmp_path / "a.jsonl")): "unknown task",
        ("--model", str(pico_ckpt), "--engine", "tgi", "--out", str(tmp_path / "a.jsonl")): "unknown engine",
        ("--model", str(pico_ckpt), "--n", "0", "--out", str(tmp_path / "a.jsonl")): "--n",
        ("--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "a.jsonl")): "checkpoint not found",
    }
    for args, message in cases.items():
        res = run(*args)
        assert res.returncode == 2, res.stderr
        assert (
            message in res.stderr
            and len(res.stderr.strip().splitlines()) == 1
            and "Traceback" not in res.stderr
        )
