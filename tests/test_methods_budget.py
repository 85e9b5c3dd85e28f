"""Budget-conditioned RL through `l2s derive --method budget`: rollout prompts state their group's budget
exactly as served, the budget survives a resume, bad input is one line, and on a pico model training
raises the share of rollouts that keep to their budget."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_methods_shortest_rs import assert_one_line_error

from l2s.budget import budget_instruction, with_budget
from l2s.methods.budget import BudgetConfig
from l2s.rl.rewards import budget_penalty
from l2s.rl.rollouts import draw_budget

# Pico matmuls gain nothing from threads, and on a shared CPU OpenMP spinning makes them far slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# The coin model thinks 0-6 "hmm" lines of 4 tokens (1 + 4·lines reasoning tokens): budgets of 4-12
# tokens leave room for 0-2 lines, so about a third of its rollouts keep to them before training.
TINY = """\
train_problems: 40
prompts_per_iteration: 4
k: 2
max_tokens: 32
minibatch_prompts: 2
learning_rate: 1.0e-3
save_every: 1
budget_min: 4
budget_max: 12
sampling: uniform
threads: 1
"""


def derive(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "derive", "--method", "budget", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def test_reward_charges_reasoning_tokens_against_the_budget():
    assert [budget_penalty(u, 10) for u in (0, 9, 10, 11, 30)] == [0.0, 0.0, 0.0, 0.1, 2.0]
    assert [budget_penalty(u, 10, "exact") for u in (0, 9, 10, 11, 30)] == [1.0, 0.1, 0.0, 0.1, 2.0]
    with pytest.raises(ValueError, match="unknown budget form"):
        budget_penalty(3, 10, "about")


def test_budget_draws_cover_the_range_and_depend_on_the_prompt():
    draws = [draw_budget(0, i, f"p{j}", 16, 96) for i in range(20) for j in range(20)]
    assert min(draws) >= 16 and max(draws) <= 96 and len(set(draws)) > 40
    assert draws != [draw_budget(1, i, f"p{j}", 16, 96) for i in range(20) for j in range(20)]


def test_defaults_are_budget_conditioned_without_the_length_reward():
    cfg = BudgetConfig()
    assert cfg.length_penalty_weight == 0 and cfg.budgeted
    assert 1 <= cfg.budget_min <= cfg.budget_max and cfg.budget_max + 16 <= cfg.max_tokens
    assert cfg.budget_form in ("max", "exact") and cfg.budget_alpha > 0


@pytest.fixture
def budget_cfg(coin_task, tmp_path):
    import yaml

    from l2s.config import load_config

    data = yaml.safe_load(TINY) | {"task": f"jsonl:{coin_task}", "segment_tokens": 12}

    def make(**over):
        return load_config(BudgetConfig, None, {**data, **over})

    return make


class Killed(Exception):
    pass


def _record_prompts(monkeypatch, fail_at: int | None = None) -> list[list[str]]:
    """Make the rollout engine record the texts of every generate call (and fail at call `fail_at`)."""
    from l2s.rl.rollouts import RolloutEngine

    calls: list[list[str]] = []
    generate = getattr(RolloutEngine.generate, "__wrapped__", RolloutEngine.generate)

    def recording(self, texts, max_tokens, *caps):
        if fail_at is not None and len(calls) == fail_at:
            raise Killed  # the run stops mid-iteration; its last checkpoint stays
        calls.append(list(texts))
        return generate(self, texts, max_tokens, *caps)

    recording.__wrapped__ = generate
    monkeypatch.setattr(RolloutEngine, "generate", recording)
    return calls


@pytest.mark.slow
def test_rollout_prompts_state_the_group_budget_and_it_survives_a_resume(
    budget_cfg, coin_ckpt, coin_task, tmp_path, monkeypatch
):
    """Every rollout prompt is the chat template over `with_budget(messages, N)`; the k samples of a group
    share N; partial rollouts carry N across iterations, and a run resumed from its checkpoint sends
    exactly the prompts (and continuations) the uninterrupted run sent."""
    from transformers import AutoTokenizer

    from l2s.engines.completion import render_prompt
    from l2s.methods.budget import run
    from l2s.rl.run_state import STATE_FILE, work_dir
    from l2s.tasks import TaskOptions, load_task

    tokenizer = AutoTokenizer.from_pretrained(coin_ckpt)
    problems = {p.prompt: p for p in load_task(TaskOptions(task=f"jsonl:{coin_task}")).problems("train")}
    instruction = re.compile(r"\nThink for at most (\d+) tokens\.")

    ref = _record_prompts(monkeypatch)
    run(budget_cfg(long=str(coin_ckpt), out=str(tmp_path / "ref"), iterations=3))
    assert ref and any(len(call) < 8 for call in ref[1:])  # some calls continue buffered trajectories
    for call in ref:
        budgets = []
        for text in call:
            (n,) = map(int, instruction.findall(text))
            prompt = text.split("<|im_start|>user\n", 1)[1].split("\nThink for at most", 1)[0]
            messages = with_budget(problems[prompt].messages(), n)
            assert text.startswith(render_prompt(tokenizer, messages).text)
            assert 4 <= n <= 12 and budget_instruction(n) in text
            budgets.append((prompt, n))
        if call is ref[0]:  # new groups: k consecutive rows of one prompt, one budget
            assert all(budgets[i] == budgets[i + 1] for i in range(0, len(budgets), 2))

    out = tmp_path / "resumed"
    killed = _record_prompts(monkeypatch, fail_at=len(ref) - 2)
    with pytest.raises(Killed):
        run(budget_cfg(long=str(coin_ckpt), out=str(out), iterations=3))
    state = json.loads((work_dir(out) / "checkpoint" / STATE_FILE).read_text())
    buffered = state["rollouts"][0]["buffer"]
    assert buffered, "the checkpoint should hold unfinished groups to resume"
    for group in buffered:
        assert group["budget"] == draw_budget(0, group["started"], group["problem"]["id"], 4, 12)
        assert budget_instruction(group["budget"]) in group["prompt_text"]
    resumed = _record_prompts(monkeypatch)
    run(budget_cfg(long=str(coin_ckpt), out=str(out), iterations=3))
    redone = len(ref) - len(resumed)  # calls of the iterations before the checkpoint
    assert 0 < redone < len(killed) + 1
    assert killed[:redone] + resumed == ref
    assert json.loads((out / "l2s.json").read_text())["method"] == "budget"


@pytest.mark.slow
def test_system_place_compulsory_think_block_and_forced_samples(budget_cfg, coin_ckpt, tmp_path, monkeypatch):
    """With `budget_place: system` the instruction is the system turn and the user's text is untouched;
    every rollout prompt ends inside an open think block (the template saved with the model opens it,
    so serving renders the same prompt); with `budget_forced_share: 0.5` half of each group's samples
    get `</think>` forced at the stated budget and never think past it."""
    from transformers import AutoTokenizer

    from l2s.budget import BudgetPrompt, budget_prompt
    from l2s.engines.completion import ThinkMarkers, count_reasoning_tokens, opens_think, render_prompt
    from l2s.methods.budget import run
    from l2s.rl.rollouts import RolloutEngine

    calls: list[tuple[list[str], list]] = []
    outputs: list[list[list[int]]] = []
    generate = RolloutEngine.generate

    def recording(self, texts, max_tokens, caps=None):
        calls.append((list(texts), list(caps) if caps is not None else [None] * len(texts)))
        outputs.append(generate(self, texts, max_tokens, caps))
        return outputs[-1]

    monkeypatch.setattr(RolloutEngine, "generate", recording)
    out = tmp_path / "sys"
    cfg = budget_cfg(
        long=str(coin_ckpt), out=str(out), iterations=1, k=4, segment_tokens=None, budget_place="system",
        budget_forced_share=0.5,
    )  # fmt: skip
    run(cfg)
    ((texts, caps),) = calls
    tokenizer = AutoTokenizer.from_pretrained(out)
    markers = ThinkMarkers.of(tokenizer)
    system = re.compile(r"<\|im_start\|>system\nThink for at most (\d+) tokens\.<\|im_end\|>")
    for i, text in enumerate(texts):
        (n,) = map(int, system.findall(text))
        assert opens_think(text) and "Think for" not in text.split("<|im_start|>user", 1)[1]
        assert caps[i] == (n if i % 4 < 2 else None)  # the first half of each group is forced
        if caps[i] is not None:
            assert count_reasoning_tokens(outputs[0][i], markers, think_opened=True) <= n
    assert budget_prompt(out) == BudgetPrompt("max", "system")
    assert opens_think(render_prompt(tokenizer, [{"role": "user", "content": "2+2?"}]).text)
    with pytest.raises(Exception, match="partial rollouts"):
        run(budget_cfg(long=str(coin_ckpt), out=str(tmp_path / "x"), budget_forced_share=0.5))


def test_cli_bad_budget_arguments(pico_ckpt, coin_task, tmp_path, capsys):
    from l2s.cli import main

    def budget(*args):
        code = main(
            ["derive", "--method", "budget", "--long", str(pico_ckpt), "--out", str(out), *map(str, args)]
        )
        return subprocess.CompletedProcess(args, code, "", capsys.readouterr().err)

    out = tmp_path / "o"
    task = ("--task", f"jsonl:{coin_task}")
    assert_one_line_error(
        budget(*task, "--budget-min", 64, "--budget-max", 16), "the budget range is empty: --budget-min 64"
    )
    assert_one_line_error(budget(*task, "--budget-min", 0), "bad value for --budget-min")
    assert_one_line_error(budget(*task, "--budget-max", -8), "bad value for --budget-max")
    assert_one_line_error(
        budget(*task, "--budget-max", 200, "--max-tokens", 160), "raise --max-tokens to at least 216"
    )
    assert_one_line_error(
        budget(*task, "--length-penalty-weight", 0.5), "the budget penalty replaces Kimi's length reward"
    )
    poems = tmp_path / "poems.jsonl"
    poems.write_text(
        json.dumps({"prompt": "Write a poem.", "answer": "roses are red\nviolets are blue"}) + "\n"
    )
    assert_one_line_error(budget("--task", f"jsonl:{poems}"), "no verifiable answers")
    assert not out.exists()
    # and through the real console entry
    assert_one_line_error(
        derive("--long", pico_ckpt, "--out", out, "--budget-min", 9, "--budget-max", 8), "empty"
    )


@pytest.mark.slow
def test_training_raises_budget_adherence(coin_ckpt, coin_task, tmp_path):
    """On the coin model a heavy budget penalty makes rollouts keep to their budgets: the share within
    budget in the last iterations is far above the first iteration's. Budgets of 2-6 tokens leave room
    for at most one "hmm" line, and correctness (a coin flip, ±1) is small beside the penalty of a
    rollout a few lines over such a budget."""
    from l2s.checkpoint import validate_checkpoint

    yml = tmp_path / "tiny.yaml"
    yml.write_text(TINY + f"task: jsonl:{coin_task}\n")
    out = tmp_path / "budget"
    r = derive(
        "--long", coin_ckpt, "--config", yml, "--iterations", 8, "--prompts-per-iteration", 8, "--k", 4,
        "--minibatch-prompts", 4, "--learning-rate", 3e-3, "--budget-alpha", 2, "--budget-min", 2,
        "--budget-max", 6, "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    validate_checkpoint(out)
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["method"] == "budget" and prov["parents"]["init"] == str(coin_ckpt)
    assert {k: prov["config"][k] for k in ("budget_form", "budget_min", "budget_max", "budget_alpha")} == {
        "budget_form": "max",
        "budget_min": 2,
        "budget_max": 6,
        "budget_alpha": 2.0,
    }
    from l2s.budget import BudgetPrompt, budget_prompt

    assert budget_prompt(out) == BudgetPrompt("max", "user")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["rollouts"] == 32 and r["length_weight"] == 0 for r in rows)
    assert all(2 <= r["mean_budget"] <= 6 for r in rows)
    late = (rows[-2]["adherence"] + rows[-1]["adherence"]) / 2  # the first row: the coin model as it was
    assert late >= rows[0]["adherence"] + 0.3 and late >= 0.8, [round(r["adherence"], 2) for r in rows]
    assert rows[-1]["mean_reasoning_tokens"] < rows[0]["mean_reasoning_tokens"]
    assert (out / "training_curve.png").is_file() and "adherence" in r.stderr
    assert Path(out / "l2s.json").is_file()
