"""reasoning_effort benchmark: each effort level served over HTTP, measured against what calibration said.

`l2s calibrate` (run by `l2s eval` and `l2s quickstart`) maps minimal/low/medium/high to measured points
of a run (effort.json). This serves that run's models through the real l2s server (the hf engine, in a
thread of this process, on 127.0.0.1), asks the `l2s` model each level with OpenAI's `reasoning_effort`
on N held-out problems the calibration never saw (the test split after the run's first `n` problems),
and `l2s-long` on the same problems, greedy throughout, and prints per level:

  measured accuracy (Wilson 95%) and mean completion tokens vs the calibrated ones, with the verdicts
  - each level's measured accuracy lies within its calibrated 95% interval;
  - mean tokens do not decrease from minimal to high;
  - high is within 1 accuracy point of long;
  - low costs at most 50% of high's tokens.

    .venv/bin/python benchmarks/effort.py [--run-dir runs/quickstart] [--n 500] [--clients 32]

Defaults take the last `l2s quickstart` run (its family's last-run.json); `make quickstart` makes one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

_T0 = time.perf_counter()
LEVELS = ("minimal", "low", "medium", "high")


def _say(message: str) -> None:
    """A progress line on stderr (the results go to stdout at the end)."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def _completion_text(response: dict) -> str:
    """The completion as `l2s eval` grades it, rebuilt from reasoning_content and content."""
    message = response["choices"][0]["message"]
    reasoning, content = message.get("reasoning_content") or "", message.get("content") or ""
    if not content:  # an unclosed think block: the grader searches the reasoning, as in `l2s eval`
        return f"<think>\n{reasoning}" if reasoning else ""
    return f"<think>\n{reasoning}\n</think>\n{content}" if reasoning else content


def ask_all(base: str, body: dict, problems, clients: int) -> list[dict]:
    """One chat request per problem (`body` plus its messages), `clients` at a time, in order."""

    async def main() -> list[dict]:
        out: list[dict | None] = [None] * len(problems)
        todo = list(enumerate(problems))
        async with httpx.AsyncClient(timeout=3600, limits=httpx.Limits(max_connections=clients)) as c:

            async def client() -> None:
                while todo:
                    i, p = todo.pop(0)
                    r = await c.post(f"{base}/chat/completions", json={**body, "messages": p.messages()})
                    r.raise_for_status()
                    out[i] = r.json()

            await asyncio.gather(*(client() for _ in range(clients)))
        return out

    return asyncio.run(main())


def serve_settings(run_dir: Path, cache: str, max_tokens: int, clients: int):
    """What `l2s serve --calibration RUN_DIR` needs to serve every model the run's effort map names:
    the run's long model, its served short model (the last quickstart's choice when this is that run,
    else the run's `short`), and the levels' other models as extras."""
    from l2s.effort import read_effort
    from l2s.report import read_report
    from l2s.server.settings import ServeSettings, read_last_run

    report, effort = read_report(run_dir), read_effort(run_dir)
    last = read_last_run(cache)
    long = report["models"]["long"]["path"]
    if last is not None and last.run_dir.resolve() == run_dir.resolve():
        short = str(last.short)
    else:
        short = report["models"]["short"]["path"]
    served = {Path(long).resolve(), Path(short).resolve()}
    extras = {}
    for lv in effort["levels"].values():
        if Path(lv["path"]).resolve() not in served:
            extras[lv["model"]] = lv["path"]
            served.add(Path(lv["path"]).resolve())
    settings = ServeSettings(
        long=long,
        short=short,
        models=extras,
        calibration=str(run_dir),
        port=0,
        default_max_tokens=max_tokens,
        max_tokens_cap=max_tokens,
        max_concurrent=max(256, clients * 4),
        max_batch=clients * 2,
        log_level="warning",
    )
    return settings, report, effort


def verdicts(measured: dict, effort: dict) -> list[tuple[str, bool]]:
    """(what, holds) for each target in the module docstring.

    >>> lv = lambda acc, tok, lo, hi: {"accuracy": acc, "mean_tokens": tok, "accuracy_ci95": [lo, hi]}
    >>> effort = {"levels": {"minimal": lv(0.14, 9, 0.12, 0.16), "low": lv(0.97, 12, 0.95, 0.99),
    ...                      "medium": lv(0.995, 20, 0.99, 1.0), "high": lv(1.0, 27, 0.99, 1.0)}}
    >>> m = {"minimal": (0.15, 9.1), "low": (0.96, 12.5), "medium": (0.99, 20.3), "high": (1.0, 26.8),
    ...      "long": (0.998, 64.0)}
    >>> [ok for _, ok in verdicts(m, effort)]
    [True, True, True, True, True, True, True]
    """
    out = []
    for level in LEVELS:
        lo, hi = effort["levels"][level]["accuracy_ci95"]
        acc = measured[level][0]
        out.append(
            (f"{level}: measured accuracy {acc:.3f} within calibrated [{lo:.3f}, {hi:.3f}]", lo <= acc <= hi)
        )
    tokens = [measured[level][1] for level in LEVELS]
    out.append(
        (
            "tokens non-decreasing minimal -> high: " + " <= ".join(f"{t:.1f}" for t in tokens),
            all(a <= b for a, b in zip(tokens, tokens[1:], strict=False)),
        )
    )
    high, long = measured["high"][0], measured["long"][0]
    out.append((f"high {high:.3f} within 1 point of long {long:.3f}", high >= long - 0.01 - 1e-9))
    low_t, high_t = measured["low"][1], measured["high"][1]
    out.append((f"low's tokens {low_t:.1f} <= 50% of high's {high_t:.1f}", low_t <= 0.5 * high_t))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=None, help="run folder with report.json and effort.json")
    ap.add_argument("--n", type=int, default=500, help="held-out problems per level (after the run's own)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent requests")
    ap.add_argument("--max-tokens", type=int, default=256, help="max_tokens of every request")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    from l2s.embedded import DEFAULT_CACHE
    from l2s.evaluate import wilson_interval
    from l2s.grading import grade
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import read_last_run
    from l2s.tasks import TaskOptions, load_task

    last = read_last_run(DEFAULT_CACHE)
    run_dir = Path(args.run_dir) if args.run_dir else (last.run_dir if last else None)
    if run_dir is None or not (run_dir / "effort.json").is_file():
        print(f"no run with an effort.json ({run_dir or 'no quickstart run'}): run `make quickstart` first")
        return 2
    settings, report, effort = serve_settings(run_dir, DEFAULT_CACHE, args.max_tokens, args.clients)
    task = (
        last.task
        if last is not None and last.run_dir.resolve() == run_dir.resolve()
        else {"task": report["task"]}
    )
    first = report["n"]  # the run measured the first n test problems: these come after them
    problems = load_task(TaskOptions(**task)).problems("test", first + args.n)[first:]
    if len(problems) < args.n:
        print(f"the task has only {len(problems)} held-out problems after the run's {first}; lower --n")
        return 2
    _say(f"serving {run_dir}'s effort map; {len(problems)} held-out problems from #{first}")
    lanes = {level: {"model": "l2s", "reasoning_effort": level} for level in LEVELS}
    lanes["long"] = {"model": "l2s-long"}
    measured, rows = {}, {}
    with serve_in_thread(settings) as srv:
        for lane, body in lanes.items():
            start = time.perf_counter()
            out = ask_all(
                srv.base_url,
                {**body, "temperature": 0, "max_tokens": args.max_tokens},
                problems,
                args.clients,
            )
            ok = grade(
                [_completion_text(r) for r in out],
                [p.answer for p in problems],
                report.get("grader") or "flexible",
            )
            tokens = [r["usage"]["completion_tokens"] for r in out]
            routing = out[0]["l2s"]
            acc, mean = sum(ok) / len(ok), sum(tokens) / len(tokens)
            measured[lane] = (acc, mean)
            rows[lane] = {
                "accuracy": acc, "accuracy_ci95": wilson_interval(sum(ok), len(ok)), "mean_tokens": mean,
                "model": routing["model"], "thinking_budget": routing.get("thinking_budget"),
                "seconds": time.perf_counter() - start,
            }  # fmt: skip
            _say(
                f"{lane}: {routing['model']} budget {routing.get('thinking_budget')}: {acc:.3f}, {mean:.1f} tokens"
            )

    print(
        f"reasoning_effort levels of {run_dir} (effort.json) on {len(problems)} held-out problems, greedy\n"
    )
    print(
        "| level | served by | calibrated accuracy [95% CI] | measured accuracy [95% CI] | calibrated tok | measured tok |"
    )
    print("|---|---|---|---|---|---|")
    for lane, r in rows.items():
        cal = effort["levels"].get(lane)
        budget = f" @{r['thinking_budget']}" if r["thinking_budget"] is not None else ""
        cal_acc = (
            f"{cal['accuracy']:.3f} [{cal['accuracy_ci95'][0]:.3f}, {cal['accuracy_ci95'][1]:.3f}]"
            if cal
            else "–"
        )
        cal_tok = f"{cal['mean_tokens']:.1f}" if cal else "–"
        lo, hi = r["accuracy_ci95"]
        print(
            f"| {lane} | {r['model']}{budget} | {cal_acc} | {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {cal_tok} | {r['mean_tokens']:.1f} |"
        )
    print()
    checks = verdicts(measured, effort)
    for what, holds in checks:
        print(f"{'PASS' if holds else 'MISS'}  {what}")
    if args.out:
        Path(args.out).write_text(json.dumps({"levels": rows, "verdicts": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
