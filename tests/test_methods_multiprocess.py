"""shortest-rs and DPO as two processes (torchrun; DDP on CPU over gloo): the glue
around TRL's trainers is multi-process safe. Rank 0 samples while the other rank waits and then reads
the finished file (no sample drawn twice), both ranks train on their half of each batch, and rank 0
alone writes the output, whole, with the gathered weights. What several GPUs add (NCCL, DeepSpeed
ZeRO, FSDP sharding) is not exercised here: CI has no GPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate 1.15 hands several CPU
# processes to mpirun only); torchrun starts two, and ACCELERATE_USE_CPU makes accelerate see them.
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "ACCELERATE_USE_CPU": "1"}


def launch(*args, timeout=400):
    r = subprocess.run(
        [*LAUNCH, "-m", "l2s.cli", "derive", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _moved(a, b) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return any(not wa[k].equal(wb[k]) for k in wa)


def test_shortest_rs_then_dpo_on_two_processes(coin_ckpt, coin_task, tmp_path):
    from l2s.checkpoint import validate_checkpoint

    srs = tmp_path / "srs"
    # settings in a YAML: torchrun's own parser would take `--n` for an abbreviation of its options
    yml = tmp_path / "srs.yaml"
    yml.write_text(f"task: jsonl:{coin_task}\nlimit: 16\nn: 4\nmax_tokens: 32\nbatch_size: 4\nepochs: 1\n")
    launch("--method", "shortest-rs", "--long", coin_ckpt, "--config", yml, "--out", srs)
    samples = [
        json.loads(line) for line in (tmp_path / "srs.work" / "samples.jsonl").read_text().splitlines()
    ]
    keys = [(r["prompt_id"], r["sample_idx"]) for r in samples]
    assert len(keys) == 16 * 4 and len(set(keys)) == len(keys)  # drawn once, by one rank
    validate_checkpoint(srs)
    assert _moved(coin_ckpt, srs)
    metrics = json.loads((srs / "l2s.json").read_text())["metrics"]
    # 2 processes x 4 rows each per optimizer step: the steps of one epoch over the chosen rows
    assert metrics["processes"] == 2
    assert metrics["train_steps"] == math.ceil(metrics["prompts_with_correct"] / 8)

    dpo = tmp_path / "dpo"
    launch("--method", "dpo", "--long", coin_ckpt, "--samples", tmp_path / "srs.work" / "samples.jsonl",
           "--batch-size", 4, "--epochs", 1, "--out", dpo)  # fmt: skip
    validate_checkpoint(dpo)
    assert _moved(coin_ckpt, dpo)
    metrics = json.loads((dpo / "l2s.json").read_text())["metrics"]
    assert metrics["processes"] == 2
    assert metrics["pairs"] > 0 and metrics["train_steps"] == math.ceil(metrics["pairs"] / 8)
    # no rank left a temporary output (atomic_dir's .NAME.tmp-PID-*) behind
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
