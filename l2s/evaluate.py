"""`l2s eval`: every model on the same held-out problems, through the same sampling core; metrics with CIs.

For each `name=PATH` the held-out split is sampled into RUN_DIR/samples/NAME.jsonl (resumable, with
per-token logprobs so each sample carries its answer confidence), then RUN_DIR gets:
- report.json — the contract of docs/DESIGN.md: {"task", "n", "grader", "models": {name: {"accuracy",
  "accuracy_ci95", "mean_tokens", "p50_tokens", "p90_tokens", "tokens_per_correct", "token_ratio_vs_long",
  "unparsed", "path", "method", ...}}}, plus "auto" (what auto mode would do on these samples) when short
  and long are there;
- report.md and pareto.png (l2s.report);
- calibration.json — auto mode's escalation threshold, chosen on these samples (l2s.confidence);
- effort.json — which measured point serves each `reasoning_effort` level (l2s.effort).

With `--thinking-budgets 8,16,32` every model (or each of `--budget-models`) is also sampled with each
thinking budget B (`</think>` forced after B reasoning tokens) into samples/NAME@B.jsonl, and measured as
its own point `NAME@B` carrying `thinking_budget: B`; `--budget-n` measures those points on the first
problems only, to keep a large sweep cheap. A budget-conditioned model (`l2s derive --method budget`) is
also told B in its prompt at those points ("Think for at most B tokens.", written by the engine as in its
training), so `budget@B` beside `long@B` compares asking for a budget with only cutting the reasoning.
With `--uncapped-budgets` each budget-conditioned model also gets points `NAME@Bfree`: B told in its prompt
but not forced, so their mean reasoning tokens show how well the model keeps to its budget by itself.
Their entries carry `budget_enforced: false` (every other budget point `true`); they are not how the
model is served, so effort calibration passes over them.

Accuracy's 95% interval is Wilson's score interval (Wilson 1927; Brown, Cai & DasGupta 2001
recommend it over the normal approximation for small n or p near 0/1). Token counts are completion
tokens by each model's own tokenizer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from l2s.effort import DEFAULT_TOLERANCE, LOW_MARGIN
from l2s.errors import UserError
from l2s.sampling import EngineChoice, GradedTask
from l2s.selection import percentile

Z95 = 1.959963984540054  # two-sided 95% normal quantile
UNCAPPED = "free"  # NAME@B + this: budget B told in the prompt, not forced (`--uncapped-budgets`)


class EvalConfig(GradedTask, EngineChoice):
    """`l2s eval`: which models, on what, and where the run folder goes."""

    models: str = Field(description="comma-separated name=PATH pairs; 'long' is the reference")
    n: int = Field(1000, ge=1, description="number of held-out problems")
    samples: int = Field(1, ge=1, description="samples per problem")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    max_tokens: int = Field(512, ge=1, description="max completion tokens per sample")
    max_thinking_tokens: int | None = Field(None, ge=0, description="thinking budget for every model")
    batch_size: int = Field(128, ge=1, description="sequences per engine batch")
    seed: int = Field(0, description="task and sampling seed")
    out: str = Field(description="run folder")
    force: bool = Field(False, description="re-sample models whose samples were made with other settings")
    auto_tolerance: float = Field(
        0.0, ge=0, le=1, description="accuracy auto may give up vs long when calibrating (0.01 = 1 point)"
    )
    thinking_budgets: list[int] | None = Field(
        None,
        description="also evaluate each model with each thinking budget, as points NAME@B (e.g. 8,16,32)",
    )
    budget_n: int | None = Field(
        None, ge=1, description="held-out problems for the budget points (the first of the n; default: n)"
    )
    budget_models: list[str] | None = Field(
        None, description="models that get budget points (default: every model in --models)"
    )
    uncapped_budgets: bool = Field(
        False,
        description="also evaluate each budget-conditioned model at each thinking budget with the budget only "
        "stated in the prompt, not enforced: points NAME@Bfree, which measure how well it keeps to its budget",
    )
    effort_tolerance: float = Field(
        DEFAULT_TOLERANCE,
        ge=0,
        le=LOW_MARGIN,
        description="effort.json: accuracy medium may give up against high (see `l2s calibrate`)",
    )

    @field_validator("thinking_budgets")
    @classmethod
    def _positive_budgets(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else check_budgets(v)


def check_budgets(budgets: list[int]) -> list[int]:
    """Thinking budgets, each > 0, in increasing order without repeats.

    >>> check_budgets([32, 8, 16, 8])
    [8, 16, 32]
    >>> check_budgets([8, 0])
    Traceback (most recent call last):
    ValueError: each thinking budget must be a whole number > 0, e.g. 8,16,32
    """
    if not budgets or any(b <= 0 for b in budgets):
        raise ValueError("each thinking budget must be a whole number > 0, e.g. 8,16,32")
    return sorted(set(budgets))


def parse_models(spec: str) -> dict[str, str]:
    """`long=PATH,short=PATH` -> {"long": PATH, "short": PATH}, in order.

    >>> parse_models("long=/m/long, short=/m/short")
    {'long': '/m/long', 'short': '/m/short'}
    >>> parse_models("long")
    Traceback (most recent call last):
    l2s.errors.UserError: malformed --models entry 'long': expected name=PATH, e.g. --models long=PATH,short=PATH
    """
    models: dict[str, str] = {}
    for item in (x.strip() for x in spec.split(",")):
        name, sep, path = (s.strip() for s in item.partition("="))
        if not sep or not name or not path:
            raise UserError(
                f"malformed --models entry '{item}': expected name=PATH, e.g. --models long=PATH,short=PATH"
            )
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UserError(
                f"model name '{name}' in --models may hold only letters, digits, '-', '_' and '.'"
            )
        if name in models:
            raise UserError(f"model name '{name}' appears twice in --models")
        models[name] = path
    return models


def wilson_interval(correct: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval for a binomial proportion.

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 0), wilson_interval(0, 5)[0], wilson_interval(5, 5)[1]
    ([0.0, 1.0], 0.0, 1.0)
    """
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 (or 1) the bound is exactly 0 (or 1); rounding must not push it past p.
    lo = 0.0 if correct == 0 else max(0.0, min(p, center - half))
    hi = 1.0 if correct == n else min(1.0, max(p, center + half))
    return [lo, hi]


def model_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-model numbers of report.json (without path/method/ratio, which need context).

    >>> m = model_metrics([dict(correct=c, completion_tokens=t, reasoning_tokens=0, finish_reason="stop")
    ...                    for c, t in [(True, 10), (False, 30), (True, 20)]])
    >>> m["accuracy"], m["mean_tokens"], m["p50_tokens"], m["tokens_per_correct"], m["unparsed"]
    (0.6666666666666666, 20.0, 20.0, 30.0, 0.0)
    """
    if not records:
        raise ValueError("no samples to measure")
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    tokens = [r["completion_tokens"] for r in records]
    return {
        "accuracy": correct / n,
        "accuracy_ci95": wilson_interval(correct, n),
        "mean_tokens": sum(tokens) / n,
        "p50_tokens": percentile(tokens, 50),
        "p90_tokens": percentile(tokens, 90),
        "tokens_per_correct": sum(tokens) / correct if correct else None,
        "mean_reasoning_tokens": sum(r.get("reasoning_tokens", 0) for r in records) / n,
        "truncated": sum(r["finish_reason"] == "length" for r in records) / n,
        # Samples in which the grader found no final answer at all (counted wrong).
        "unparsed": sum("answer" in r and r["answer"] is None for r in records) / n,
        "samples": n,
    }


def build_report(
    task: str,
    n: int,
    runs: dict[str, tuple[str, list[dict[str, Any]]]],
    grader: str = "flexible",
    budgets: dict[str, int] | None = None,
    told_only: Collection[str] = (),
) -> dict[str, Any]:
    """report.json from {name: (checkpoint path, sample records)}; 'long' is the token-ratio reference.
    `budgets` gives the thinking budget each entry was sampled with, for those that had one; entries in
    `told_only` were sampled with it stated in the prompt but not forced (`budget_enforced: false`)."""
    from l2s.checkpoint import read_provenance

    models: dict[str, Any] = {}
    for name, (path, records) in runs.items():
        prov = read_provenance(path)
        cfg = prov.get("config", {}) if isinstance(prov.get("config"), dict) else {}
        entry = {**model_metrics(records), "path": str(path), "method": prov.get("method")}
        if cfg.get("alpha") is not None:
            entry["alpha"] = cfg["alpha"]
        if cfg.get("merge_method") is not None:
            entry["merge_method"] = cfg["merge_method"]
        if (budgets or {}).get(name) is not None:
            entry["thinking_budget"] = budgets[name]
            entry["budget_enforced"] = name not in told_only
        models[name] = entry
    long_mean = models.get("long", {}).get("mean_tokens")
    for entry in models.values():
        entry["token_ratio_vs_long"] = entry["mean_tokens"] / long_mean if long_mean else None
    return {"task": task, "n": n, "grader": grader, "models": models}


def _check_models(cfg: EvalConfig) -> dict[str, Path]:
    from l2s.checkpoint import validate_checkpoint
    from l2s.engines import ENGINES

    if cfg.engine not in ENGINES:
        raise UserError(f"unknown engine '{cfg.engine}'; choose one of: {', '.join(ENGINES)}")
    models = {name: validate_checkpoint(path) for name, path in parse_models(cfg.models).items()}
    unknown = [name for name in cfg.budget_models or [] if name not in models]
    if unknown:
        raise UserError(
            f"--budget-models names '{unknown[0]}', which is not in --models; choose from {', '.join(models)}"
        )
    if cfg.uncapped_budgets and not cfg.thinking_budgets:
        raise UserError("--uncapped-budgets needs --thinking-budgets, e.g. --thinking-budgets 8,16,32")
    if cfg.uncapped_budgets and not budget_conditioned(cfg, models):
        raise UserError(
            "--uncapped-budgets: no budget model in --models is budget-conditioned (derived with "
            "`l2s derive --method budget`), so no budget can be only told; drop the flag or add such a model"
        )
    return models


def budget_conditioned(cfg: EvalConfig, models: dict[str, Path]) -> set[str]:
    """The models that get budget points and read a budget from their prompt (`l2s.budget.budget_prompt`)."""
    from l2s.budget import budget_prompt

    return {
        name
        for name, path in models.items()
        if (cfg.budget_models is None or name in cfg.budget_models) and budget_prompt(path) is not None
    }


def points(
    cfg: EvalConfig, models: list[str], conditioned: Collection[str] = ()
) -> list[tuple[str, str, int | None, bool]]:
    """The measured points (report name, model name, thinking budget, budget forced): each model as
    configured (its budget is --max-thinking-tokens), then each budget model under each --thinking-budgets
    value, then, with --uncapped-budgets, each of the `conditioned` (budget-conditioned) models under each
    value told but not forced.

    >>> cfg = EvalConfig(models="long=a,short=b", out="r", thinking_budgets=[16, 8], budget_models=["long"])
    >>> points(cfg, ["long", "short"])
    [('long', 'long', None, True), ('long@8', 'long', 8, True), ('long@16', 'long', 16, True), ('short', 'short', None, True)]
    >>> cfg = EvalConfig(models="long=a,budget=b", out="r", thinking_budgets=[8], uncapped_budgets=True)
    >>> points(cfg, ["long", "budget"], conditioned={"budget"})[2:]
    [('budget', 'budget', None, True), ('budget@8', 'budget', 8, True), ('budget@8free', 'budget', 8, False)]
    """
    out = []
    for name in models:
        out.append((name, name, cfg.max_thinking_tokens, True))
        if cfg.budget_models is None or name in cfg.budget_models:
            out += [(f"{name}@{b}", name, b, True) for b in cfg.thinking_budgets or []]
            if cfg.uncapped_budgets and name in conditioned:
                out += [(f"{name}@{b}{UNCAPPED}", name, b, False) for b in cfg.thinking_budgets or []]
    return out


def run(cfg: EvalConfig) -> Path:
    """Sample every point on the held-out split, then write report.json/.md, pareto.png,
    calibration.json and effort.json."""
    from dataclasses import replace

    from l2s.checkpoint import atomic_write_text
    from l2s.confidence import calibrate
    from l2s.effort import NO_BUDGETS_NOTE, describe, write_effort
    from l2s.engines import get_engine, resolve_engine
    from l2s.report import render
    from l2s.sampling import _check_resumable, sample, sample_meta
    from l2s.tasks import load_task

    models = _check_models(cfg)
    problems = load_task(cfg, seed=cfg.seed).problems("test", cfg.n)
    if not problems:
        raise UserError(f"task {cfg.task} has no held-out (test) problems")
    from l2s.engines.base import SamplingParams

    params = SamplingParams(
        n=cfg.samples,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        max_thinking_tokens=cfg.max_thinking_tokens,
        seed=cfg.seed,
        logprobs=True,
    )
    run_dir = Path(cfg.out).expanduser()
    if run_dir.is_file():
        raise UserError(f"--out {run_dir} is a file; pass a folder for the run")
    engines = {name: resolve_engine(cfg.engine, path) for name, path in models.items()}
    settings = {
        name: {**cfg.task_settings(), "split": "test", **cfg.engine_settings(engines[name])}
        for name in models
    }
    # Budget points are measured on the first budget_n problems (a prefix: the same problems).
    plan = {
        point: (name, problems[: cfg.budget_n] if budget is not None and point != name else problems,
                replace(params, max_thinking_tokens=budget, budget_cap=capped))
        for point, name, budget, capped in points(cfg, list(models), budget_conditioned(cfg, models))
    }  # fmt: skip
    outs = {point: run_dir / "samples" / f"{point}.jsonl" for point in plan}
    if not cfg.force:  # refuse non-resumable outputs before any model is loaded
        for point, (name, probs, p) in plan.items():
            meta = sample_meta(models[name], probs, p, cfg.batch_size, settings[name])
            _check_resumable(outs[point], meta, False)
    runs = {}
    for name, path in models.items():
        engine = get_engine(engines[name], str(path), batch_size=cfg.batch_size, **cfg.engine_kwargs())
        try:
            for point in (pt for pt, (model, _, _) in plan.items() if model == name):
                _, probs, p = plan[point]
                records = sample(
                    engine,
                    probs,
                    outs[point],
                    p,
                    batch_size=cfg.batch_size,
                    force=cfg.force,
                    settings=settings[name],
                    grader=cfg.grader,
                )
                runs[point] = (str(path), records)
        finally:
            engine.close()
    runs = {point: runs[point] for point in plan}  # report order: each model, then its budget points
    budgets = {point: p.max_thinking_tokens for point, (_, _, p) in plan.items()}
    told_only = [point for point, (_, _, p) in plan.items() if not p.budget_cap]
    report = build_report(cfg.task, len(problems), runs, cfg.grader, budgets, told_only)
    if any(point != name for point, (name, _, _) in plan.items()):
        report["budget_n"] = len(problems[: cfg.budget_n])
    if "short" in runs and "long" in runs:
        cal = calibrate(runs["short"][1], runs["long"][1], tolerance=cfg.auto_tolerance)
        cal |= {"short_model": runs["short"][0], "long_model": runs["long"][0], "task": cfg.task}
        atomic_write_text(run_dir / "calibration.json", json.dumps(cal, indent=2) + "\n")
        report["auto"] = cal["auto"]
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    render(run_dir)
    effort = write_effort(run_dir, cfg.effort_tolerance)
    print((run_dir / "report.md").read_text())
    print(f"reasoning_effort levels ({effort}):")
    print("\n".join(describe(json.loads(effort.read_text()))))
    if not cfg.thinking_budgets:
        print(NO_BUDGETS_NOTE)
    return run_dir
