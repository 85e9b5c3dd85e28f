"""Serving benchmark: batching throughput, HTTP overhead, latency per mode, and what auto buys.

One run, one server (the hf engine, in a thread of this process, on 127.0.0.1), same requests side
by side, greedy decoding throughout so every arm generates the same tokens:
  throughput   the same R chat requests (mode long) sent one at a time, then by C concurrent clients;
               ratio = sequential wall time / concurrent wall time.            target >= 4x at C=16
  overhead     K requests through HTTP vs `engine.generate` on the same engine, interleaved;
               overhead = median over requests of http / direct - 1.          target <= 10%
  latency      p50/p99 per mode (short, long, auto) for R requests at concurrency C.
  auto         accuracy and mean completion tokens of short, long and auto on N held-out `arith`
               problems (auto's tokens include the discarded short attempt when it escalates).
               target: auto within 1 point of long's accuracy at <= 50% of long's tokens.
auto's threshold comes from --calibration (calibration.json from `l2s eval`), else it is calibrated
here with `l2s.confidence.calibrate` on train-split problems, disjoint from the held-out ones.

    .venv/bin/python benchmarks/serving.py [--long A --short B] [--requests 32] [--eval-n 200]

Defaults serve the embedded family (~/.cache/l2s/embedded; `l2s init` builds it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

_T0 = time.perf_counter()


def _say(message: str) -> None:
    """A progress line on stderr (the results go to stdout at the end)."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def _chat(base: str, mode: str, prompt: str, max_tokens: int) -> dict:
    return {
        "url": f"{base}/chat/completions",
        "json": {
            "model": f"l2s-{mode}",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    }


def sequential(
    base: str, mode: str, prompts: list[str], max_tokens: int
) -> tuple[float, list[dict], list[float]]:
    out, lat = [], []
    with httpx.Client(timeout=3600) as c:
        start = time.perf_counter()
        for p in prompts:
            t = time.perf_counter()
            r = c.post(**_chat(base, mode, p, max_tokens))
            r.raise_for_status()
            lat.append(time.perf_counter() - t)
            out.append(r.json())
        return time.perf_counter() - start, out, lat


def concurrent(base: str, mode: str, prompts: list[str], max_tokens: int, clients: int):
    """`clients` concurrent clients, each sending its next request when the last one is answered."""

    async def main():
        queue = list(enumerate(prompts))
        out: list[dict | None] = [None] * len(prompts)
        lat: list[float] = []
        async with httpx.AsyncClient(timeout=3600, limits=httpx.Limits(max_connections=clients)) as c:

            async def client():
                while queue:
                    i, p = queue.pop(0)
                    t = time.perf_counter()
                    r = await c.post(**_chat(base, mode, p, max_tokens))
                    r.raise_for_status()
                    lat.append(time.perf_counter() - t)
                    out[i] = r.json()

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return time.perf_counter() - start, out, lat

    return asyncio.run(main())


def _completion_text(response: dict) -> str:
    """The completion as `l2s eval` grades it, rebuilt from reasoning_content and content."""
    message = response["choices"][0]["message"]
    reasoning, content = message.get("reasoning_content") or "", message.get("content") or ""
    if not content:  # an unclosed think block: the grader searches the reasoning, as in `l2s eval`
        return f"<think>\n{reasoning}" if reasoning else ""
    return f"<think>\n{reasoning}\n</think>\n{content}" if reasoning else content


def calibrate_here(endpoint, problems, max_tokens: int, tolerance: float = 0.0) -> dict:
    """auto's threshold from train-split problems, with the served engines called directly."""
    from l2s.confidence import calibrate, confidence
    from l2s.engines.base import SamplingParams
    from l2s.grading import grade

    prompts = [[{"role": "user", "content": p.prompt}] for p in problems]
    records = {}
    for name in ("short", "long"):
        engine = endpoint.backends[f"l2s-{name}"].engine
        gens = [
            g
            for gs in engine.generate(
                prompts, SamplingParams(max_tokens=max_tokens, temperature=0, logprobs=True)
            )
            for g in gs
        ]
        ok = grade([g.text for g in gens], [p.answer for p in problems])
        records[name] = [
            dict(
                prompt_id=p.id,
                sample_idx=0,
                correct=c,
                confidence=confidence(g),
                completion_tokens=g.completion_tokens,
            )
            for p, g, c in zip(problems, gens, ok, strict=True)
        ]
    return calibrate(records["short"], records["long"], tolerance=tolerance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", default=None)
    ap.add_argument("--short", default=None)
    ap.add_argument(
        "--calibration", default=None, help="calibration.json from `l2s eval` (else calibrated here)"
    )
    ap.add_argument("--requests", type=int, default=32, help="requests per throughput/latency arm")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--overhead-requests", type=int, default=16)
    ap.add_argument("--eval-n", type=int, default=200, help="held-out problems for the auto comparison")
    ap.add_argument(
        "--calib-n", type=int, default=200, help="train problems to calibrate on (no --calibration)"
    )
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument(
        "--auto-tolerance", type=float, default=0.0, help="accuracy auto may give up vs long (0.01 = 1 point)"
    )
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    from l2s.engines.base import SamplingParams
    from l2s.grading import grade
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings, read_threshold
    from l2s.tasks import get_task

    task = get_task("arith")
    settings = ServeSettings(
        long=args.long,
        short=args.short,
        port=0,
        max_tokens_cap=args.max_tokens,
        max_concurrent=max(256, args.clients * 4),
        max_batch=args.clients * 2,
        log_level="warning",
    )
    results: dict = {"settings": {k: v for k, v in vars(args).items()}}
    load = time.perf_counter()
    with serve_in_thread(settings) as srv:
        endpoint = srv.app.state.endpoint
        base = srv.base_url
        results["startup_s"] = time.perf_counter() - load
        _say(f"server up in {results['startup_s']:.1f}s at {srv.url}: {', '.join(endpoint.backends)}")
        prompts = [p.prompt for p in task.problems("test", args.requests)]
        for mode in ("short", "long"):  # warm-up: first calls pay one-off costs (threads, caches)
            sequential(base, mode, prompts[:2], 16)
            endpoint.backends[f"l2s-{mode}"].engine.generate(
                [[{"role": "user", "content": prompts[0]}]], SamplingParams(max_tokens=16, temperature=0)
            )

        # -- HTTP overhead: same engine, same request, interleaved --------------------------------------
        _say(f"overhead: {args.overhead_requests} long requests, HTTP and direct, interleaved")
        engine = endpoint.backends["l2s-long"].engine
        direct_s, http_s = [], []
        with httpx.Client(timeout=3600) as c:
            for p in prompts[: args.overhead_requests]:
                t = time.perf_counter()
                g = engine.generate(
                    [[{"role": "user", "content": p}]],
                    SamplingParams(max_tokens=args.max_tokens, temperature=0),
                )
                direct_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                r = c.post(**_chat(base, "long", p, args.max_tokens)).json()
                http_s.append(time.perf_counter() - t)
                assert r["usage"]["completion_tokens"] == g[0][0].completion_tokens, (
                    "HTTP and engine disagree"
                )
        results["overhead"] = {
            "direct_s": sum(direct_s),
            "http_s": sum(http_s),
            # the median of per-request ratios: robust to load spikes on a shared machine
            "overhead": statistics.median(h / d for h, d in zip(http_s, direct_s, strict=True)) - 1,
            "overhead_of_sums": sum(http_s) / sum(direct_s) - 1,
            "per_request_ms": 1000 * (sum(http_s) - sum(direct_s)) / len(http_s),
        }

        # -- throughput: sequential vs concurrent, same requests ----------------------------------------
        _say(f"throughput: {len(prompts)} long requests, sequential then {args.clients} clients")
        seq_wall, seq_out, seq_lat = sequential(base, "long", prompts, args.max_tokens)
        batches_before = endpoint.backends["l2s-long"].batcher.batches
        con_wall, con_out, con_lat = concurrent(base, "long", prompts, args.max_tokens, args.clients)
        tokens = sum(r["usage"]["completion_tokens"] for r in con_out)
        results["throughput"] = {
            "requests": len(prompts),
            "clients": args.clients,
            "sequential_s": seq_wall,
            "concurrent_s": con_wall,
            "ratio": seq_wall / con_wall,
            "concurrent_tokens_per_s": tokens / con_wall,
            "sequential_tokens_per_s": sum(r["usage"]["completion_tokens"] for r in seq_out) / seq_wall,
            "generate_calls": endpoint.backends["l2s-long"].batcher.batches - batches_before,
        }

        # -- calibration (train split) and auto vs short vs long (held-out split) -------------------------
        _say("calibration" if not args.calibration else f"threshold from {args.calibration}")
        if args.calibration:
            threshold, source = read_threshold(args.calibration), args.calibration
        else:
            cal = calibrate_here(
                endpoint, task.problems("train", args.calib_n), args.max_tokens, args.auto_tolerance
            )
            threshold = cal["threshold"]
            source = f"calibrated here on {cal['n']} train problems, tolerance {args.auto_tolerance:g}"
            results["calibration"] = cal
        endpoint.policy.threshold = threshold
        results["threshold"] = {"value": threshold, "source": source}

        _say(f"latency: short and auto at {args.clients} clients")
        latency = {"long": {"p50_s": _pct(con_lat, 50), "p99_s": _pct(con_lat, 99)}}
        for mode in ("short", "auto"):
            _, _, lat = concurrent(base, mode, prompts, args.max_tokens, args.clients)
            latency[mode] = {"p50_s": _pct(lat, 50), "p99_s": _pct(lat, 99)}
        latency["long_sequential"] = {"p50_s": _pct(seq_lat, 50), "p99_s": _pct(seq_lat, 99)}
        results["latency"] = latency

        held_out = task.problems("test", args.eval_n)
        accuracy = {}
        for mode in ("short", "long", "auto"):
            _say(f"held-out accuracy: {mode} on {len(held_out)} problems")
            _, out, _ = concurrent(base, mode, [p.prompt for p in held_out], args.max_tokens, args.clients)
            ok = grade([_completion_text(r) for r in out], [p.answer for p in held_out])
            spent = [r["usage"]["completion_tokens"] + (r["l2s"].get("attempt_tokens") or 0) for r in out]
            accuracy[mode] = {
                "accuracy": sum(ok) / len(ok),
                "mean_tokens": statistics.mean(spent),
                "escalated": sum(bool(r["l2s"].get("escalated")) for r in out) / len(out),
            }
        results["auto"] = accuracy | {
            "accuracy_gap_points": 100 * (accuracy["long"]["accuracy"] - accuracy["auto"]["accuracy"]),
            "token_ratio_vs_long": accuracy["auto"]["mean_tokens"] / accuracy["long"]["mean_tokens"],
        }

    _print(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _print(r: dict) -> None:
    t, o, a = r["throughput"], r["overhead"], r["auto"]
    ok = lambda cond: "PASS" if cond else "MISS"  # noqa: E731
    print(
        f"throughput  {t['clients']} clients vs sequential, {t['requests']} long requests: "
        f"{t['sequential_s']:.1f}s vs {t['concurrent_s']:.1f}s = {t['ratio']:.2f}x "
        f"({t['generate_calls']} generate calls; {t['concurrent_tokens_per_s']:.0f} vs "
        f"{t['sequential_tokens_per_s']:.0f} tok/s)  [{ok(t['ratio'] >= 4)} target >= 4x]"
    )
    print(
        f"overhead    HTTP {o['http_s']:.2f}s vs engine {o['direct_s']:.2f}s: median {100 * o['overhead']:+.1f}% "
        f"(of sums {100 * o['overhead_of_sums']:+.1f}%) "
        f"({o['per_request_ms']:.1f} ms/request)  [{ok(o['overhead'] <= 0.10)} target <= 10%]"
    )
    for mode, v in r["latency"].items():
        print(f"latency     {mode:16s} p50 {v['p50_s']:.2f}s  p99 {v['p99_s']:.2f}s")
    print(f"threshold   {r['threshold']['value']:.4f} ({r['threshold']['source']})")
    for mode in ("short", "long", "auto"):
        v = a[mode]
        print(
            f"accuracy    {mode:5s} {100 * v['accuracy']:5.1f}%  mean tokens {v['mean_tokens']:6.1f}"
            + (f"  escalated {100 * v['escalated']:.0f}%" if mode == "auto" else "")
        )
    print(
        f"auto        {a['accuracy_gap_points']:+.1f} points below long at {100 * a['token_ratio_vs_long']:.0f}% "
        f"of long's tokens  [{ok(a['accuracy_gap_points'] <= 1)} within 1 point; "
        f"{ok(a['token_ratio_vs_long'] <= 0.5)} <= 50% tokens]"
    )
    if a["long"]["accuracy"] == 0:
        print(
            "auto        NO SIGNAL: long answers nothing correctly (untrained models?); the auto rows mean nothing"
        )


if __name__ == "__main__":
    from l2s.errors import UserError

    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"benchmarks/serving.py: error: {e}")
