"""Answer confidence, and the threshold that decides when `auto` escalates from short to long.

Written by hand: the definition is l2s's own (the Kimi report has no routing; docs/DESIGN.md, "Serving").

**Confidence** of a generation = the lowest probability the model gave to any token of its final
answer (the value `extract_answer` returns, e.g. the digits after "Answer:"), read from the engine's
per-token logprobs of the sampled tokens. The weakest token is used, not the mean: the format tokens
around an answer ("Answer", ":") are near-certain and would hide a coin-flip digit. A generation with no
extractable answer has confidence 0 (auto always escalates it).

**Threshold** (chosen on the eval set by `calibrate`): auto accepts the short answer when its
confidence >= t and asks the long model otherwise. t is the *lowest* threshold at which auto, replayed on
the eval samples, is at most `tolerance` less accurate than long on the same problems (0 by default:
at least as accurate; 0.01 = one accuracy point): the most short answers one can keep for that price.
Accepting nothing always qualifies, so t exists; where only "escalate everything" does, t = 1.0 (above
every confidence but a certain answer's). A tolerance matters for a short model whose few mistakes are
confident: at 0, t must sit above them, and auto escalates far more often than those mistakes justify.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from l2s.engines.base import Generation

RULE = (
    "lowest t at which auto (short's answer when its confidence >= t, else long's) is at most the tolerance "
    "less accurate than long on the same problems; confidence = min probability of the final answer's tokens"
)


def confidence_from_logprobs(logprobs: Sequence[float], span: Sequence[int] | None) -> float:
    """min p over the answer tokens `logprobs[span[0]:span[1]]`; 0.0 when there is no answer span.

    >>> round(confidence_from_logprobs([-0.1, -2.0, -0.01, -0.5], (2, 4)), 4)
    0.6065
    >>> confidence_from_logprobs([-0.1], None)
    0.0
    """
    if span is None or span[1] <= span[0]:
        return 0.0
    return math.exp(min(logprobs[span[0] : span[1]]))


def confidence(gen: Generation) -> float:
    """The confidence of one generation made with `SamplingParams(logprobs=True)`.

    The answer's token span is `gen.extra["answer_tokens"]`, set by the l2s engines. A Generation
    from elsewhere (no span recorded) falls back to the geometric-mean probability of all its tokens.
    """
    if gen.logprobs is None:
        raise ValueError("confidence needs per-token logprobs: sample with SamplingParams(logprobs=True)")
    if "answer_tokens" in gen.extra:
        return confidence_from_logprobs(gen.logprobs, gen.extra["answer_tokens"])
    if not gen.logprobs:
        return 0.0
    return math.exp(sum(gen.logprobs) / len(gen.logprobs))


def _key(r: dict[str, Any]) -> tuple[str, int]:
    return r["prompt_id"], r["sample_idx"]


def simulate_auto(short: Sequence[dict], long: Sequence[dict], threshold: float) -> dict[str, float]:
    """What auto mode does on paired samples: keep short's answer when confidence >= threshold, else
    long's. Tokens count both generations when it escalates (both were paid for).

    >>> S = [dict(prompt_id=str(i), sample_idx=0, correct=c, confidence=p, completion_tokens=5)
    ...      for i, (c, p) in enumerate([(True, 0.9), (False, 0.3), (True, 0.6)])]
    >>> L = [dict(prompt_id=str(i), sample_idx=0, correct=True, confidence=1.0, completion_tokens=50) for i in range(3)]
    >>> simulate_auto(S, L, 0.5)
    {'threshold': 0.5, 'accuracy': 1.0, 'mean_tokens': 21.666666666666668, 'escalated': 0.3333333333333333}
    """
    by_key = {_key(r): r for r in long}
    pairs = [(s, by_key[_key(s)]) for s in short if _key(s) in by_key]
    if not pairs:
        raise ValueError("short and long samples share no (prompt_id, sample_idx): evaluate both on one task")
    correct = tokens = escalated = 0
    for s, lg in pairs:
        keep = s["confidence"] >= threshold
        correct += s["correct"] if keep else lg["correct"]
        tokens += s["completion_tokens"] + (0 if keep else lg["completion_tokens"])
        escalated += not keep
    n = len(pairs)
    return {
        "threshold": threshold,
        "accuracy": correct / n,
        "mean_tokens": tokens / n,
        "escalated": escalated / n,
    }


def calibrate(short: Sequence[dict], long: Sequence[dict], tolerance: float = 0.0) -> dict[str, Any]:
    """Choose auto's threshold on paired eval samples (records carrying `confidence`), per `RULE`.

    >>> S = [dict(prompt_id=str(i), sample_idx=0, correct=c, confidence=p, completion_tokens=5)
    ...      for i, (c, p) in enumerate([(True, 0.95), (True, 0.9), (False, 0.5), (True, 0.4), (False, 0.2)])]
    >>> L = [dict(prompt_id=str(i), sample_idx=0, correct=i != 4, confidence=1.0, completion_tokens=40)
    ...      for i in range(5)]
    >>> cal = calibrate(S, L)
    >>> cal["threshold"], cal["long_accuracy"], cal["accepted_accuracy"], cal["auto"]["accuracy"]
    (0.9, 0.8, 1.0, 0.8)
    >>> cal = calibrate(S, L, tolerance=0.2)  # may give up one problem in five: accept every short answer
    >>> cal["threshold"], cal["accepted_fraction"], cal["auto"]["accuracy"], cal["auto"]["escalated"]
    (0.0, 1.0, 0.6, 0.0)
    """
    by_key = {_key(r): r for r in long}
    pairs = [(s, by_key[_key(s)]) for s in short if _key(s) in by_key]
    if not pairs:
        raise ValueError("short and long samples share no (prompt_id, sample_idx): evaluate both on one task")
    shorts, longs = [s for s, _ in pairs], [lg for _, lg in pairs]
    long_acc = sum(lg["correct"] for lg in longs) / len(pairs)
    threshold = 1.0
    # Candidates from the lowest: 0 (accept everything), then each observed confidence. The epsilon keeps
    # a tolerance equal to an accuracy gap from failing on float rounding.
    for t in sorted({0.0} | {s["confidence"] for s in shorts}):
        if simulate_auto(shorts, longs, t)["accuracy"] >= long_acc - tolerance - 1e-12:
            threshold = t
            break
    kept = [s for s in shorts if s["confidence"] >= threshold]
    return {
        "threshold": threshold,
        "rule": RULE,
        "tolerance": tolerance,
        "n": len(pairs),
        "long_accuracy": long_acc,
        "short_accuracy": sum(s["correct"] for s in shorts) / len(pairs),
        "accepted_fraction": len(kept) / len(pairs),
        "accepted_accuracy": sum(s["correct"] for s in kept) / len(kept) if kept else None,
        "auto": simulate_auto(shorts, longs, threshold),
    }
