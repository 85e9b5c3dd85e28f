"""`l2s quickstart`: the product's main job end to end on the embedded workload, as in Kimi's Figure 7.

1. build (or reuse) the embedded family: base, short, long-sft and long (the full RL stage);
2. derive short-CoT models from long: a merge alpha sweep, shortest rejection sampling, DPO,
   long2short RL (shortest-rs and DPO share one set of long samples) and budget-conditioned RL (L1:
   a model that reads its thinking budget from the prompt);
3. evaluate every model on the held-out split, and long and the derived models also under thinking
   budgets (points `NAME@B`, on the first `budget_n` problems: the budget model's `budget@B` is told
   its budget in the prompt as well, beside `long@B`, which only has its reasoning cut), and write
   report.json / report.md / pareto.png;
4. choose what `l2s serve` serves by default: long and the best derived short model (`best_short`;
   not the budget model, which is meant to be run at a budget), with auto's threshold calibrated for
   that pair on the evaluation's samples, map the reasoning_effort levels to measured points
   (effort.json, `l2s.effort`; `l2s serve` also loads any model a level names, e.g. the budget model
   for a level measured at `budget@16`), and point the family's `last-run.json` at them
   (`l2s.server.settings.LastRun`); then print the serve and ui commands.

Every step is resumable and reuses what a previous run finished, so a second run is quick. This module
only sequences the library's own steps; it adds no method of its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from l2s.config import Config
from l2s.embedded import DEFAULT_CACHE
from l2s.errors import UserError

FAMILY = ("long", "short", "long-sft")  # the embedded family's models; every other one is derived
METHODS = ("merge", "shortest-rs", "dpo", "rl", "budget")  # the methods the quickstart can run
# Methods whose models are not offered as the served short model: a budget model is meant to be run at a
# budget, so it is served through the effort levels measured at one (effort.json), not as `l2s-short`.
NOT_SHORT = ("budget",)
SERVE_POINTS = 1.0  # accuracy points the served short model, and auto, may give up against long


class QuickstartConfig(Config):
    out: str = Field("runs/quickstart", description="run folder: derived models, samples, report")
    cache: str = Field(DEFAULT_CACHE, description="embedded family cache folder")
    preset: str = Field("default", description="embedded preset: default | tiny (seconds, for tests)")
    seed: int = Field(
        0,
        ge=0,
        description="seed of the family (its data and training) and of every method; a family cache "
        "holds one seed, so another seed needs its own --cache",
    )
    n: int = Field(1000, ge=1, description="held-out problems to evaluate")
    # 0.75 and 0.8: on the embedded family a linear merge turns from short-style to long-style answers
    # between alpha 0.72 and 0.80 (0.72: 20% accuracy at 0.26 of long's tokens; 0.76: 82% at 0.87; 0.80:
    # 99.7% at 1.01), so the sweep samples that stretch instead of stepping over it.
    alphas: list[float] = Field(
        [0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 0.9], description="merge sweep (weight of the long model)"
    )
    methods: list[str] = Field(list(METHODS), description="long2short methods to run")
    # Powers of two from the workload's shortest correct reasoning up to the long model's length: a
    # problem's running-total chain takes 2 + 4 tokens per operation (10, 14, 18 and 22 for the 2-5
    # operations of the held-out mix), so 16 holds the chains of 2- and 3-operation problems and 32 holds
    # them all, while the embedded long model reasons 52-56 tokens (64 leaves it whole). A budget of 8 is
    # below every problem's chain: no model can write a right one there (the budget model 8-10%), so it
    # only measures guessing. `--thinking-budgets` takes any list.
    thinking_budgets: list[int] = Field(
        [16, 32, 64], description="thinking budgets long and the derived models are also evaluated at"
    )
    budget_n: int = Field(300, ge=1, description="held-out problems for the thinking-budget points")

    @field_validator("thinking_budgets")
    @classmethod
    def _positive_budgets(cls, v: list[int]) -> list[int]:
        from l2s.evaluate import check_budgets

        return check_budgets(v) if v else v

    force: bool = Field(False, description="redo every step of this run (the family cache is kept)")


# The tiny preset runs every step on pico models in seconds: plumbing only, its numbers mean nothing.
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sampling": {"limit": 8, "n": 4, "max_tokens": 24},
    "shortest-rs": {"limit": 8, "n": 4, "epochs": 1.0, "batch_size": 4},
    "dpo": {"limit": 8, "n": 4, "epochs": 1.0, "batch_size": 4},
    "rl": {"iterations": 2, "prompts_per_iteration": 2, "k": 2, "max_tokens": 24, "save_every": 1},
    "budget": {
        "iterations": 2,
        "prompts_per_iteration": 2,
        "k": 2,
        "max_tokens": 24,
        "save_every": 1,
        "budget_min": 4,
        "budget_max": 8,
    },
    "eval": {"max_tokens": 24},
}

# The default (embedded, 0.5M-parameter) family: the methods' defaults are sized for 7B models (tiny
# learning rates, 10-minute RL); these fit the small models and keep the quickstart's wall time to a
# few minutes on two CPU cores once the family is built (256 train prompts x 16 samples, 30 RL iterations).
DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    # 16 samples per prompt, not Kimi's 8: the RL-trained embedded long models re-check 66-73% of their
    # steps when sampled, and the shortest of 8 still re-checks about half of them (43-49% over three
    # seeds); a model trained on them and decoded greedily re-checks at every step where re-checking is
    # the likelier choice, so seed 0's shortest-rs kept 0.77-0.78x of long's tokens whatever its epochs
    # (2-6). The shortest of 16 re-checks 35-39%, and shortest-rs then keeps 0.51-0.62x, DPO 0.58-0.63x,
    # within 0.2 points of long's accuracy on every seed (benchmarks/RESULTS.md).
    "sampling": {"limit": 256, "n": 16},
    "shortest-rs": {"limit": 256, "n": 16, "learning_rate": 3e-4},
    # DPO with the chosen answers' likelihood kept up (TRL's `sft` loss, weighted 20 to the preference
    # loss's 1, as RPO adds an NLL term): plain DPO on these small models pushes down the tokens that
    # chosen and rejected share (the running totals) and lost 9-60 points over three seeds; lr 3e-5 / 5e-5
    # and beta 0.3 / 0.5 without the NLL term lost up to 11 (benchmarks/RESULTS.md).
    "dpo": {
        "limit": 256,
        "n": 16,
        "learning_rate": 1e-4,
        "loss_type": "sigmoid,sft",
        "loss_weights": [1.0, 20.0],
    },
    # A fixed number of iterations and no wall-time limit, so the result does not depend on the machine's
    # speed (30 iterations take about a minute on two idle cores; a 3-minute limit cut them to 15 on a
    # busy machine and changed the model).
    "rl": {"learning_rate": 1e-4, "max_tokens": 64, "iterations": 30, "time_limit_minutes": None},
    # Budgets 8-64 span the thinking budgets the quickstart evaluates at (16, 32, 64) and one below every
    # problem's chain; 96 completion tokens leave room for the answer after 64. The budget goes in the
    # system turn, where it disturbs the small embedded models least (seed-1 long told a budget, greedy,
    # 300 problems: 98-100% accurate as a system turn, 40-42% appended to the user turn). 60 iterations:
    # after 30, one seed answered 93.7-96.4% told a budget against 99.8% with none; after 60 all three
    # answer 99.6-100% told 16, 32 or 64 on validation problems (benchmarks/RESULTS.md).
    "budget": {
        "budget_place": "system",
        "learning_rate": 2e-4,
        "iterations": 60,
        "time_limit_minutes": None,
        "max_tokens": 96,
        "budget_min": 8,
        "budget_max": 64,
        "budget_alpha": 0.3,
    },
    "eval": {"max_tokens": 256},
}


def _done(path: Path) -> bool:
    return (path / "l2s.json").is_file() and (path / "config.json").is_file()


def _step(title: str, times: dict[str, float]):
    class _Timer:
        def __enter__(self):
            print(f"\n== {title}", flush=True)
            self.start = time.time()

        def __exit__(self, *exc):
            if exc[0] is None:
                times[title] = round(time.time() - self.start, 1)
                print(f"== {title}: {times[title]:.0f}s", flush=True)

    return _Timer()


def run(cfg: QuickstartConfig) -> tuple[Path, dict[str, str]]:
    """Run every step; returns the run folder and {method: why} for methods that failed."""
    from l2s.embedded.build import init_family
    from l2s.methods import get_method

    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    tiny = cfg.preset == "tiny"
    over = TINY_OVERRIDES if tiny else DEFAULT_OVERRIDES
    out = Path(cfg.out).expanduser().resolve()
    models_dir = out / "models"
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    print(f"quickstart: seed {cfg.seed}, preset {cfg.preset}, family cache {cfg.cache}", flush=True)
    with _step(f"embedded family (l2s init, seed {cfg.seed})", times):
        family = init_family(cfg.cache, preset=cfg.preset, seed=cfg.seed)
    long, short = family.get("long", family["long-sft"]), family["short"]
    models: dict[str, Path] = {"long": long, "short": short}
    if "long" in family:
        models["long-sft"] = family["long-sft"]

    failed: dict[str, str] = {}

    def derive(method: str, dest: Path, **settings: Any) -> Path | None:
        """Run one method (or reuse its finished output); a method that fails on this data is reported,
        and the others still run, so one bad method never hides the rest of the comparison."""
        if _done(dest) and not cfg.force:
            print(f"{method}: reused {dest}", flush=True)
            return dest
        mod = get_method(method)
        try:
            return mod.run(mod.CONFIG(**{"seed": cfg.seed, **settings}, out=str(dest), force=True))
        except UserError as e:
            failed[method] = str(e)
            print(f"{method}: FAILED: {e}", flush=True)
            return None

    if "merge" in cfg.methods:
        with _step("merge sweep", times):
            from l2s.methods.merge import sweep_dirname

            sweep = models_dir / "merge"
            for alpha in cfg.alphas:
                dest = sweep / sweep_dirname(alpha)
                if derive("merge", dest, long=str(long), short=str(short), alpha=alpha):
                    models[f"merge-{alpha:g}"] = dest

    shared: dict[str, Any] = {"long": str(long)}
    if {"shortest-rs", "dpo"} & set(cfg.methods):
        with _step("long samples on the train split (shared by shortest-rs and dpo)", times):
            from l2s.methods.shortest_rs import ShortestRSConfig
            from l2s.sampling import SampleConfig
            from l2s.sampling import run as sample
            from l2s.workdir import work_dir

            d = ShortestRSConfig(**over["sampling"])  # the methods' own sampling defaults
            samples = sample(
                SampleConfig(model=str(long), task=d.task, split="train", limit=d.limit, n=d.n,
                             temperature=d.temperature, top_p=d.top_p, max_tokens=d.max_tokens,
                             batch_size=d.sample_batch_size, seed=cfg.seed,
                             out=str(work_dir(out) / "long-train-samples.jsonl"), force=cfg.force)
            )  # fmt: skip
        shared["samples"] = str(samples)
    for method, settings in (
        ("shortest-rs", {**shared, **over["shortest-rs"]}),
        ("dpo", {**shared, **over["dpo"]}),
        ("rl", {"long": str(long), **over["rl"]}),
        ("budget", {"long": str(long), **over["budget"]}),
    ):
        if method in cfg.methods:
            with _step(method, times):
                derived = derive(method, models_dir / method, **settings)
            if derived is not None:
                models[method] = derived

    with _step(f"evaluate {len(models)} models on {cfg.n} held-out problems", times):
        from l2s.evaluate import EvalConfig
        from l2s.evaluate import run as evaluate

        spec = ",".join(f"{name}={path}" for name, path in models.items())
        derived_names = [name for name in models if name not in FAMILY]
        budgets = dict(thinking_budgets=cfg.thinking_budgets or None, budget_n=cfg.budget_n)
        budgets["budget_models"] = ["long", *derived_names]  # not short and long-sft: the family's own
        # the budget model also told its budget with nothing forced (budget@Bfree): how well it keeps to it
        budgets["uncapped_budgets"] = bool(cfg.thinking_budgets) and "budget" in models
        evaluate(EvalConfig(models=spec, n=cfg.n, out=str(out), force=cfg.force, **budgets, **over["eval"]))

    served = choose_served(out, cfg.cache, derived_names)
    from l2s.effort import write_effort

    # reasoning_effort levels, with the served pair's auto threshold beside them; `l2s serve` reads both
    write_effort(out, calibration=served.calibration)
    for method, why in failed.items():
        print(f"not in the report: {method} ({why})")
    print("\nwhere the time went: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    print(f"\nreport: {out / 'report.md'}\nplot:   {out / 'pareto.png'}")
    print(next_commands(served, cfg.cache))
    return out, failed


def best_short(report: dict[str, Any], candidates: list[str], points: float = SERVE_POINTS) -> str | None:
    """The short model to serve beside long: among the candidates that answer in fewer mean tokens than
    long, the one with the fewest tokens within `points` accuracy points of long's accuracy in `report`
    (report.json); when none is that close, the most accurate of them; None when none is shorter.

    >>> m = lambda acc, tok: {"accuracy": acc, "mean_tokens": tok}
    >>> r = {"models": {"long": m(0.999, 64.2), "rl": m(1.0, 26.9), "dpo": m(0.988, 30.7),
    ...                 "shortest-rs": m(0.997, 42.3), "merge-0.7": m(0.119, 9.8), "merge-0.9": m(1.0, 64.8)}}
    >>> best_short(r, ["rl", "dpo", "shortest-rs", "merge-0.7"]), best_short(r, ["dpo", "merge-0.7"])
    ('rl', 'dpo')
    >>> best_short(r, ["dpo"], 2), best_short(r, ["merge-0.9"])
    ('dpo', None)
    """
    models = report["models"]
    long = models["long"]
    shorter = [n for n in candidates if n in models and models[n]["mean_tokens"] < long["mean_tokens"]]
    floor = long["accuracy"] - points / 100 - 1e-9
    within = [n for n in shorter if models[n]["accuracy"] >= floor]
    if within:
        return min(within, key=lambda n: (models[n]["mean_tokens"], n))
    return max(shorter, key=lambda n: (models[n]["accuracy"], -models[n]["mean_tokens"]), default=None)


def choose_served(out: Path, cache: str | Path, candidates: list[str]):
    """Pick the served short model (`best_short` of the candidates not made by a `NOT_SHORT` method, else
    the family's short), calibrate auto for it and long on the run's evaluation samples
    (`calibration-NAME.json`, tolerance `SERVE_POINTS`), and write the family's pointer that `l2s serve`
    and `l2s ui` read. Returns the `LastRun`."""
    from l2s.checkpoint import atomic_write_text
    from l2s.confidence import calibrate
    from l2s.report import read_report
    from l2s.sampling import read_samples
    from l2s.server.settings import LastRun, write_last_run

    out = Path(out)
    report = read_report(out)
    candidates = [n for n in candidates if report["models"].get(n, {}).get("method") not in NOT_SHORT]
    name = best_short(report, candidates) or "short"
    samples = {m: read_samples(out / "samples" / f"{m}.jsonl") for m in ("long", name)}
    cal = calibrate(samples[name], samples["long"], tolerance=SERVE_POINTS / 100)
    long, short = report["models"]["long"]["path"], report["models"][name]["path"]
    cal |= {"short_model": short, "long_model": long, "task": report["task"]}
    calibration = out / f"calibration-{name}.json"
    atomic_write_text(calibration, json.dumps(cal, indent=2) + "\n")
    task = {"task": report["task"]} if isinstance(report["task"], str) else dict(report["task"])
    served = LastRun(out.resolve(), Path(long), Path(short), name, calibration.resolve(), task)
    write_last_run(cache, served)
    return served


def _l2s() -> str:
    """How to call the `l2s` command that is running now: its script beside this Python, relative to
    the current folder when it is inside it (`.venv/bin/l2s` in a checkout), else `l2s`."""
    script = Path(sys.executable).parent / "l2s"
    if not script.is_file():
        return "l2s"
    try:
        return str(script.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def next_commands(served, cache: str | Path) -> str:
    """The exact `l2s serve` and `l2s ui` commands that serve and show this run, for the closing lines."""
    cache = Path(cache).expanduser().resolve()
    env = "" if cache == Path(DEFAULT_CACHE).resolve() else f"L2S_CACHE={cache} "
    ui = f"{env}{_l2s()} ui --server http://127.0.0.1:8000"
    if served.run_dir != Path(QuickstartConfig.model_fields["out"].default).resolve():
        ui += f" --run-dir {served.run_dir}"
    why = (
        f"of the derived models shorter than long, the fewest tokens within {SERVE_POINTS:g} point of "
        "long's accuracy, else the most accurate"
        if served.short_name != "short"
        else "no derived model answers in fewer tokens than long"
    )
    effort = served.run_dir / "effort.json"
    levels = ""
    if effort.is_file():
        from l2s.effort import describe, read_effort

        levels = "\nreasoning_effort on the model `l2s` (effort.json):\n  " + "\n  ".join(
            describe(read_effort(effort))
        )
    return (
        f"\nnext, in two terminals:\n  {env}{_l2s()} serve\n  {ui}\n"
        f"`l2s serve` serves long and '{served.short_name}' ({why}) with mode=short|long|auto, auto "
        f"calibrated on this run ({served.calibration.name}); --long/--short/--calibration override them."
        f"{levels}"
    )


def run_cli(cfg: QuickstartConfig) -> int:
    """`l2s quickstart`: exit code 1 when a method failed (the others are still in the report)."""
    _, failed = run(cfg)
    return 1 if failed else 0
