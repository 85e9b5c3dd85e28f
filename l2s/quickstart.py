"""`l2s quickstart`: the product's main job end to end on the embedded workload, as in Kimi's Figure 7.

1. build (or reuse) the embedded family: base, short, long-sft and long (the full RL stage);
2. derive short-CoT models from long: a merge alpha sweep, shortest rejection sampling, DPO and
   long2short RL (shortest-rs and DPO share one set of long samples);
3. evaluate every model on the held-out split and write report.json / report.md / pareto.png.

Every step is resumable and reuses what a previous run finished, so a second run is quick. This module
only sequences the library's own steps; it adds no method of its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.config import Config
from l2s.errors import UserError


class QuickstartConfig(Config):
    out: str = Field("runs/quickstart", description="run folder: derived models, samples, report")
    cache: str = Field(description="embedded family cache folder")
    preset: str = Field("default", description="embedded preset: default | tiny (seconds, for tests)")
    n: int = Field(1000, ge=1, description="held-out problems to evaluate")
    # 0.75 and 0.8: on the embedded family a linear merge turns from short-style to long-style answers
    # between alpha 0.72 and 0.80 (measured: 0.72 -> 20% at 0.26 of long's tokens, 0.76 -> 82% at 0.87,
    # 0.80 -> 99.7% at 1.01), so the sweep samples that stretch instead of only stepping over it.
    alphas: list[float] = Field(
        [0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 0.9], description="merge sweep (weight of the long model)"
    )
    methods: list[str] = Field(["merge", "shortest-rs", "dpo", "rl"], description="long2short methods to run")
    force: bool = Field(False, description="redo every step of this run (the family cache is kept)")


# The tiny preset runs every step on pico models in seconds: plumbing only, its numbers mean nothing.
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sampling": {"limit": 8, "n": 4, "max_tokens": 24},
    "shortest-rs": {"limit": 8, "n": 4, "epochs": 1.0, "batch_size": 4},
    "dpo": {"limit": 8, "n": 4, "epochs": 1.0, "batch_size": 4},
    "rl": {"iterations": 2, "prompts_per_iteration": 2, "k": 2, "max_tokens": 24, "save_every": 1},
    "eval": {"max_tokens": 24},
}

# The default (embedded, 0.5M-parameter) family: the methods' defaults are sized for 7B models (tiny
# learning rates, 10-minute RL); these fit the small models and keep quickstart's wall time bounded.
# Measured with 512 train prompts x 8 samples and 4-minute RL: 27.5 min after the family was built
# (samples 522 s, shortest-rs 56 s, dpo 351 s, rl 248 s, eval of 11 models 461 s, other jobs sharing
# the cores); 256 prompts and 3-minute RL aim at about 20.
DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    "sampling": {"limit": 256},
    "shortest-rs": {"limit": 256, "learning_rate": 3e-4},
    "dpo": {"limit": 256, "learning_rate": 1e-4},
    "rl": {"learning_rate": 1e-4, "max_tokens": 64, "time_limit_minutes": 3},
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

    unknown = sorted(set(cfg.methods) - {"merge", "shortest-rs", "dpo", "rl"})
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from merge, shortest-rs, dpo, rl")
    tiny = cfg.preset == "tiny"
    over = TINY_OVERRIDES if tiny else DEFAULT_OVERRIDES
    out = Path(cfg.out).expanduser().resolve()
    models_dir = out / "models"
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    with _step("embedded family (l2s init)", times):
        family = init_family(cfg.cache, preset=cfg.preset)
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
            return mod.run(mod.CONFIG(**settings, out=str(dest), force=True))
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

            d = ShortestRSConfig(**over["sampling"])  # the methods' own sampling defaults
            samples = sample(
                SampleConfig(model=str(long), task=d.task, split="train", limit=d.limit, n=d.n,
                             temperature=d.temperature, top_p=d.top_p, max_tokens=d.max_tokens,
                             batch_size=d.sample_batch_size, seed=d.seed,
                             out=str(out / "work" / "long-train-samples.jsonl"), force=cfg.force)
            )  # fmt: skip
        shared["samples"] = str(samples)
    for method, settings in (
        ("shortest-rs", {**shared, **over["shortest-rs"]}),
        ("dpo", {**shared, **over["dpo"]}),
        ("rl", {"long": str(long), **over["rl"]}),
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
        evaluate(EvalConfig(models=spec, n=cfg.n, out=str(out), force=cfg.force, **over["eval"]))

    for method, why in failed.items():
        print(f"not in the report: {method} ({why})")
    print("\nwhere the time went: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    print(f"\nreport: {out / 'report.md'}\nplot:   {out / 'pareto.png'}")
    print("next:\n  .venv/bin/l2s serve            # OpenAI-compatible endpoint, mode=short|long|auto")
    print("  .venv/bin/l2s ui --server http://127.0.0.1:8000")
    return out, failed


def cli(args) -> int:
    _, failed = run(
        QuickstartConfig(out=args.out, cache=args.cache, preset=args.preset, n=args.n, force=args.force)
    )
    return 1 if failed else 0
