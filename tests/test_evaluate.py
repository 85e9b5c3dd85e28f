"""`l2s eval` end to end: a scripted engine for exact numbers, a real pico run, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from argparse import Namespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2s.checkpoint import write_provenance
from l2s.engines.base import Generation
from l2s.errors import UserError
from l2s.evaluate import EvalConfig, parse_models, run, wilson_interval

CONTRACT = {
    "accuracy",
    "accuracy_ci95",
    "mean_tokens",
    "p50_tokens",
    "p90_tokens",
    "tokens_per_correct",
    "token_ratio_vs_long",
    "path",
    "method",
}
# model folder name -> (tokens per answer, answers correct on problems i with i % 4 < k, confidence if right/wrong)
SCRIPT = {
    "long": (40, 4, 0.99, 0.9),
    "short": (8, 2, 0.95, 0.3),
    "a25": (14, 2, 0.9, 0.5),
    "a75": (30, 3, 0.9, 0.5),
}


class ScriptedEngine:
    """Answers by its folder name per SCRIPT, with the confidence SCRIPT says; counts its calls.

    Its reasoning is the answer's tokens less 4. A thinking budget B below that, when forced, cuts the
    reasoning to B tokens (answers B + 4 tokens long) and keeps only the right answers of problems i with
    i % 10 < round(10 * B / reasoning); a budget only told changes nothing."""

    calls = 0

    def __init__(self, model_path, **_):
        self.model_path, self.name = str(model_path), str(model_path).rsplit("/", 1)[-1]
        self.tokens, self.k, self.conf_right, self.conf_wrong = SCRIPT[self.name]
        self.seen = 0  # problems answered so far: problem i is right when i % 4 < k

    def generate(self, prompts, params, on_token=None):
        import math

        ScriptedEngine.calls += 1
        out = []
        for msgs in prompts:
            expr = msgs[0]["content"].split("Compute ")[1].split(".")[0]
            truth = eval(expr)  # arith prompts are "Compute a + b - c."
            right = self.seen % 4 < self.k
            tokens, budget = self.tokens, params.thinking_cap
            if budget is not None and budget < tokens - 4:
                right = right and self.seen % 10 < round(10 * budget / (tokens - 4))
                tokens = budget + 4
            self.seen += 1
            lp = math.log(self.conf_right if right else self.conf_wrong)
            text = f"<think>\n{'.' * tokens}\n</think>\nAnswer: {truth if right else truth + 1}"
            ids = list(range(tokens))
            gen = Generation(text, ids, "stop", ".", "", tokens - 4, [lp] * tokens, {"answer_tokens": [0, 1]})
            out.append([gen] * params.n)
        return out

    def close(self):
        pass


@pytest.fixture
def family(pico_ckpt, tmp_path, monkeypatch):
    """Checkpoint folders long, short and two merges (provenance alpha 0.25, 0.75), served by the script."""
    from l2s import engines

    monkeypatch.setitem(engines.ENGINES, "scripted", ScriptedEngine)
    ScriptedEngine.calls = 0
    paths = {}
    for name in SCRIPT:
        paths[name] = tmp_path / "models" / name
        shutil.copytree(pico_ckpt, paths[name])
    for name, alpha in (("a25", 0.25), ("a75", 0.75)):
        write_provenance(paths[name], method="merge", config={"alpha": alpha, "merge_method": "linear"})
    write_provenance(paths["long"], method="rl")
    return paths


def _cfg(family, out, **kw):
    spec = ",".join(f"{k}={v}" for k, v in family.items())
    return EvalConfig(
        **{"models": spec, "n": 40, "engine": "scripted", "batch_size": 16, "out": str(out), **kw}
    )


def test_eval_writes_the_contract(family, tmp_path):
    out = run(_cfg(family, tmp_path / "run"))
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "arith" and report["n"] == 40
    assert list(report["models"]) == list(SCRIPT)
    for name, m in report["models"].items():
        assert set(m) >= CONTRACT
        assert m["mean_tokens"] == SCRIPT[name][0]
        lo, hi = m["accuracy_ci95"]
        assert lo <= m["accuracy"] <= hi
        assert m["path"] == str(family[name])
    models = report["models"]
    assert models["long"]["accuracy"] == 1.0 and models["long"]["method"] == "rl"
    assert models["short"]["accuracy"] == 0.5 and models["short"]["method"] is None
    assert models["a75"]["alpha"] == 0.75 and models["a75"]["method"] == "merge"
    assert models["short"]["token_ratio_vs_long"] == pytest.approx(8 / 40)
    assert models["short"]["tokens_per_correct"] == pytest.approx(16.0)
    # Every model's samples are on disk, one per problem, graded against the task's own answers.
    lines = (out / "samples" / "short.jsonl").read_text().splitlines()
    assert len(lines) == 40 and sum(json.loads(x)["correct"] for x in lines) == 20
    # Auto: short's wrong answers are the low-confidence ones, so threshold 0.95 keeps only right ones.
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["threshold"] == pytest.approx(0.95)
    assert cal["accepted_accuracy"] == 1.0 and cal["long_accuracy"] == 1.0
    assert report["auto"]["accuracy"] == 1.0 and report["auto"]["escalated"] == pytest.approx(0.5)
    assert "| long | rl | 1.000 |" in (out / "report.md").read_text()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_auto_tolerance_recalibrates_without_resampling(family, tmp_path):
    run(_cfg(family, tmp_path / "run"))
    calls = ScriptedEngine.calls
    # short is right on half the problems, long on all: a 0.5 tolerance accepts every short answer
    out = run(_cfg(family, tmp_path / "run", auto_tolerance=0.5))
    assert ScriptedEngine.calls == calls  # the tolerance only changes the calibration, not the samples
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["tolerance"] == 0.5 and cal["threshold"] == 0.0 and cal["auto"]["escalated"] == 0.0
    assert json.loads((out / "report.json").read_text())["auto"]["accuracy"] == 0.5


def test_eval_resumes_and_refuses_other_settings(family, tmp_path):
    run(_cfg(family, tmp_path / "run"))
    calls = ScriptedEngine.calls
    run(_cfg(family, tmp_path / "run"))
    assert ScriptedEngine.calls == calls  # everything was already sampled
    with pytest.raises(UserError, match=r"not resumable.*--force"):
        run(_cfg(family, tmp_path / "run", max_tokens=64))
    assert ScriptedEngine.calls == calls  # refused before any model ran
    run(_cfg(family, tmp_path / "run", max_tokens=64, force=True))
    assert ScriptedEngine.calls > calls


def test_bad_input_is_a_user_error(family, pico_ckpt, tmp_path):
    with pytest.raises(UserError, match="unknown task"):
        run(_cfg(family, tmp_path / "r", task="nope"))
    with pytest.raises(UserError, match="unknown engine"):
        run(_cfg(family, tmp_path / "r", engine="tgi"))
    with pytest.raises(UserError, match="malformed --models"):
        run(EvalConfig(models="long=", out=str(tmp_path / "r")))
    with pytest.raises(UserError, match="appears twice"):
        parse_models("a=/x,a=/y")
    bare = tmp_path / "bare"
    shutil.copytree(pico_ckpt, bare)
    (bare / "chat_template.jinja").unlink()
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="no chat template"):
        run(EvalConfig(models=f"long={bare}", out=str(tmp_path / "r"), engine="scripted"))
    from l2s.config import load_config

    with pytest.raises(UserError, match="--n"):
        load_config(EvalConfig, overrides=vars(Namespace(models="long=/x", n=0, out="r")))


@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_interval_holds_the_estimate(correct, n):
    correct = min(correct, n)
    lo, hi = wilson_interval(correct, n)
    assert 0.0 <= lo <= correct / n <= hi <= 1.0


@pytest.mark.slow
def test_eval_cli_on_a_pico_model(pico_ckpt, tmp_path):
    """The real thing: hf engine, greedy, two models, through the console entry point."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "l2s.cli", "eval", "--models", f"long={pico_ckpt},short={pico_ckpt}"]
    cmd += ["--n", "4", "--max-tokens", "8", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"long", "short"}
    # Same checkpoint, greedy: identical samples, so identical numbers and a ratio of exactly 1.
    assert report["models"]["long"] == report["models"]["short"]
    assert report["models"]["short"]["token_ratio_vs_long"] == 1.0
    records = [json.loads(x) for x in (out / "samples" / "long.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(0.0 <= r["confidence"] <= 1.0 for r in records)
    assert (out / "calibration.json").is_file() and (out / "pareto.png").is_file()
    bad = subprocess.run(
        cmd[:-1] + [str(out), "--max-tokens", "9"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "not resumable" in bad.stderr and "Traceback" not in bad.stderr


def test_thinking_budgets_are_points_of_their_own(family, tmp_path):
    out = run(_cfg(family, tmp_path / "run", thinking_budgets=[16, 8], budget_n=20))
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    # each model, then its budget points in order of budget
    assert list(models) == [f"{m}{b}" for m in SCRIPT for b in ("", "@8", "@16")]
    assert report["n"] == 40 and report["budget_n"] == 20
    for name, m in models.items():
        assert set(m) >= CONTRACT | {"mean_reasoning_tokens"}
        base, _, budget = name.partition("@")
        assert m.get("thinking_budget") == (int(budget) if budget else None)
        assert m["samples"] == (20 if budget else 40) and m["path"] == str(family[base])
        lines = (out / "samples" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == m["samples"]
    # long reasons 36 tokens: budget 8 cuts it to 8 (12 tokens in all) and keeps 2 answers in 10
    assert (models["long@8"]["mean_tokens"], models["long@8"]["mean_reasoning_tokens"]) == (12, 8)
    assert models["long@8"]["accuracy"] == 0.2 and models["long@16"]["accuracy"] == 0.4
    assert models["long@8"]["token_ratio_vs_long"] == pytest.approx(12 / 40)
    assert models["short@8"]["mean_tokens"] == 8  # its 4 reasoning tokens are under every budget
    assert models["a75@8"]["method"] == "merge" and models["a75@8"]["alpha"] == 0.75
    md = (out / "report.md").read_text()
    assert "| long@8 | rl, budget 8 | 0.200 |" in md and "on the first 20 of the 40 problems" in md
    effort = json.loads((out / "effort.json").read_text())
    assert effort["levels"]["high"]["model"] == "long" and effort["levels"]["minimal"]["model"] == "short"
    assert effort["auto"]["threshold"] == pytest.approx(0.95)
    # a second run with the same budgets samples nothing again
    calls = ScriptedEngine.calls
    run(_cfg(family, tmp_path / "run", thinking_budgets=[8, 16], budget_n=20))
    assert ScriptedEngine.calls == calls


def test_budget_points_only_for_the_budget_models(family, tmp_path):
    out = run(_cfg(family, tmp_path / "run", thinking_budgets=[8], budget_models=["long", "a75"]))
    names = list(json.loads((out / "report.json").read_text())["models"])
    assert names == ["long", "long@8", "short", "a25", "a75", "a75@8"]
    with pytest.raises(UserError, match="--budget-models names 'rl', which is not in --models"):
        run(_cfg(family, tmp_path / "run", thinking_budgets=[8], budget_models=["rl"]))


def test_uncapped_budgets_for_budget_conditioned_models(family, tmp_path):
    """`--uncapped-budgets`: each budget-conditioned model also gets NAME@Bfree, its budget told but not
    forced (`budget_enforced: false`), which effort calibration passes over; no other model gets one."""
    write_provenance(family["long"], method="budget", config={"budget_form": "max"})
    out = run(_cfg(family, tmp_path / "run", thinking_budgets=[8], budget_n=20, uncapped_budgets=True))
    models = json.loads((out / "report.json").read_text())["models"]
    assert list(models) == [
        "long",
        "long@8",
        "long@8free",
        "short",
        "short@8",
        "a25",
        "a25@8",
        "a75",
        "a75@8",
    ]
    free, capped = models["long@8free"], models["long@8"]
    assert (free["thinking_budget"], free["budget_enforced"], free["samples"]) == (8, False, 20)
    assert capped["budget_enforced"] is True and "budget_enforced" not in models["long"]
    # not forced, the scripted long reasons its 36 tokens whatever it is told; forced, it stops at 8
    assert (free["mean_reasoning_tokens"], capped["mean_reasoning_tokens"]) == (36, 8)
    effort = json.loads((out / "effort.json").read_text())
    assert "long@8free" not in effort["front"]
    assert all(lv["point"] != "long@8free" for lv in effort["levels"].values())
    assert "| long@8free |" in (out / "report.md").read_text()
    with pytest.raises(UserError, match="--uncapped-budgets needs --thinking-budgets"):
        run(_cfg(family, tmp_path / "run2", uncapped_budgets=True))
    with pytest.raises(UserError, match="no budget model in --models is budget-conditioned"):
        run(
            _cfg(
                family,
                tmp_path / "run2",
                thinking_budgets=[8],
                budget_models=["short"],
                uncapped_budgets=True,
            )
        )


def test_bad_thinking_budgets_are_one_line(capsys):
    from l2s.cli import main
    from l2s.config import load_config

    for bad in ([0, 8], [-4], []):
        with pytest.raises(UserError, match="each thinking budget must be a whole number > 0"):
            load_config(EvalConfig, overrides={"models": "long=/x", "out": "r", "thinking_budgets": bad})
    assert main(["eval", "--models", "long=/x", "--out", "r", "--thinking-budgets", "8,0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad value for --thinking-budgets" in err


@pytest.mark.slow
def test_a_budget_models_points_state_their_budget_in_the_prompt(pico_ckpt, tmp_path):
    """A model derived with `--method budget` gets "Think for at most B tokens." at its point NAME@B, from
    the engine: its samples are what the same weights answer when the sentence is written in by hand.
    Its unconstrained point, and other models' budget points, get the prompt as it is."""
    from l2s.budget import with_budget
    from l2s.engines.base import SamplingParams
    from l2s.engines.hf import HFEngine
    from l2s.tasks import load_task

    budget = tmp_path / "models" / "budget"
    shutil.copytree(pico_ckpt, budget)
    write_provenance(budget, method="budget", config={"budget_form": "max"})
    cfg = EvalConfig(
        models=f"long={pico_ckpt},budget={budget}", n=3, engine="hf", max_tokens=10, thinking_budgets=[4],
        uncapped_budgets=True, out=str(tmp_path / "run"),
    )  # fmt: skip
    out = run(cfg)

    def completions(point):
        lines = (out / "samples" / f"{point}.jsonl").read_text().splitlines()
        return [json.loads(x)["completion"] for x in lines]

    messages = [p.messages() for p in load_task(cfg, seed=cfg.seed).problems("test", 3)]
    plain = HFEngine(pico_ckpt)
    greedy = SamplingParams(temperature=0, max_tokens=10, max_thinking_tokens=4)
    texts = lambda prompts, p: [g[0].text for g in plain.generate(prompts, p)]  # noqa: E731
    assert completions("budget@4") == texts([with_budget(m, 4) for m in messages], greedy)
    assert completions("long@4") == texts(messages, greedy)
    assert (
        completions("budget")
        == completions("long")
        == texts(messages, SamplingParams(temperature=0, max_tokens=10))
    )
    assert completions("budget@4") != completions("long@4")  # the sentence changed what the model saw
    # budget@4free: the same sentence, no forced </think>; long is not budget-conditioned: no such point
    unforced = SamplingParams(temperature=0, max_tokens=10)
    assert completions("budget@4free") == texts([with_budget(m, 4) for m in messages], unforced)
    assert not (out / "samples" / "long@4free.jsonl").exists()
    records = (out / "samples" / "budget@4.jsonl").read_text().splitlines()
    assert all(json.loads(x)["prompt"].endswith("\nThink for at most 4 tokens.") for x in records)
