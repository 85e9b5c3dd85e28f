"""long2short RL through `l2s derive`: the RL engine runs from the long model with the length penalty on
and a tight max length, and writes an ordinary checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_methods_shortest_rs import assert_one_line_error

from l2s.methods.rl import RLMethodConfig, run
from l2s.rl.config import RLConfig

# Seconds per iteration on a pico model.
TINY = """\
train_problems: 64
prompts_per_iteration: 4
k: 2
minibatch_prompts: 2
learning_rate: 1.0e-3
save_every: 1
length_penalty_warmup: 1
"""


def derive(*args, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "derive", "--method", "rl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_defaults_are_long2short():
    """Without --config, derive rl is long2short: the length penalty on and a tighter max length than
    the full RL stage's defaults."""
    cfg, full = RLMethodConfig(), RLConfig()
    assert cfg.length_penalty_weight > 0 and cfg.length_penalty_warmup > 0
    assert full.length_penalty_weight == 0 and cfg.max_tokens < full.max_tokens


@pytest.mark.slow
def test_rl_from_the_long_model_with_the_length_penalty(coin_ckpt, coin_task, tmp_path):
    """On the coin model (rollouts of varied length, right half the time) the weights move. 32 tokens
    holds a think block of up to five "hmm" lines (4 tokens each) and the answer, so most rollouts end."""
    from safetensors.torch import load_file

    yml = tmp_path / "tiny.yaml"
    yml.write_text(TINY.replace("train_problems: 64", "train_problems: 40") + f"task: jsonl:{coin_task}\n")
    out = tmp_path / "rl"
    r = derive(
        "--long", coin_ckpt, "--config", yml, "--iterations", 2, "--max-tokens", 32, "--seed", 1, "--out", out
    )
    assert r.returncode == 0, r.stderr[-3000:]
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["method"] == "rl"
    assert prov["config"]["length_penalty_weight"] == RLMethodConfig().length_penalty_weight > 0
    assert prov["config"]["max_tokens"] == 32 and prov["config"]["init"] == str(coin_ckpt)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["length_weight"] for row in rows] == [
        0.0,
        RLMethodConfig().length_penalty_weight,
    ]  # after warm-up
    w0, w1 = load_file(coin_ckpt / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not w0[k].equal(w1[k]) for k in w0)


def test_rl_needs_the_long_model(tmp_path):
    from l2s.errors import UserError

    with pytest.raises(UserError, match="rl needs --long"):
        run(RLMethodConfig(out=str(tmp_path / "o")))


def test_rl_refuses_a_budget_range(tmp_path):
    from l2s.errors import UserError

    with pytest.raises(UserError, match="use --method budget"):
        run(RLMethodConfig(long="x", out=str(tmp_path / "o"), budget_min=8, budget_max=16))


def test_cli_bad_rl_arguments(pico_ckpt, tmp_path):
    assert_one_line_error(
        derive("--long", pico_ckpt, "--n", "4", "--out", tmp_path / "o"), "--n does not apply to --method rl"
    )
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    assert_one_line_error(derive("--long", pico_ckpt, "--out", tmp_path / "o"), "already exists")
