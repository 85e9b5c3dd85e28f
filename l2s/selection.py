"""Choosing among sampled responses: shortest correct (rejection sampling), preference pairs, length stats.

Pure functions over sample records (the dicts `l2s.sampling` writes, one per line of samples.jsonl):
`prompt_id`, `sample_idx`, `prompt`, `completion`, `completion_tokens`, `correct`, .... Length is always
`completion_tokens` — all generated tokens, counted by the model's own tokenizer — so shortest-rs, DPO
and the report agree on what "short" means.

Kimi k1.5 report, §2.4 (long2short):
- Shortest rejection sampling: "sample the same question n times … and select the shortest correct
  response for supervised fine-tuning."
- DPO: "the shortest correct solution is used as the positive sample, while longer responses are treated
  as negative samples, including both wrong longer responses and correct longer responses (1.5 times
  longer than the chosen positive sample)." Here every wrong response is a negative, whatever its length:
  a wrong answer is never preferred.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]


def _by_prompt(samples: Iterable[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for s in samples:
        groups[s["prompt_id"]].append(s)
    return groups


def _length_key(s: Record) -> tuple[int, int]:
    return s["completion_tokens"], s["sample_idx"]


def shortest_correct(samples: Iterable[Record]) -> dict[str, Record]:
    """Per prompt, the correct sample with the fewest completion tokens (ties: the lowest sample_idx).

    Prompts with no correct sample are left out.

    >>> S = [dict(prompt_id="a", sample_idx=0, completion_tokens=9, correct=True),
    ...      dict(prompt_id="a", sample_idx=1, completion_tokens=4, correct=False),
    ...      dict(prompt_id="a", sample_idx=2, completion_tokens=6, correct=True),
    ...      dict(prompt_id="a", sample_idx=3, completion_tokens=6, correct=True),
    ...      dict(prompt_id="b", sample_idx=0, completion_tokens=3, correct=False)]
    >>> {k: v["sample_idx"] for k, v in shortest_correct(S).items()}
    {'a': 2}
    """
    best: dict[str, Record] = {}
    for pid, group in _by_prompt(samples).items():
        correct = [s for s in group if s["correct"]]
        if correct:
            best[pid] = min(correct, key=_length_key)
    return best


def preference_pairs(
    samples: Iterable[Record], ratio: float = 1.5, max_pairs_per_prompt: int | None = None
) -> list[Record]:
    """DPO pairs per Kimi k1.5 §2.4: chosen = shortest correct; rejected = every wrong sample and every
    correct one at least `ratio` times as long as the chosen one.

    Pairs come out grouped by prompt (first-seen order), rejected in sample_idx order; with
    `max_pairs_per_prompt` the first ones in that order are kept.

    >>> S = [dict(prompt_id="a", sample_idx=0, prompt="p", completion="long ok", completion_tokens=15, correct=True),
    ...      dict(prompt_id="a", sample_idx=1, prompt="p", completion="short ok", completion_tokens=10, correct=True),
    ...      dict(prompt_id="a", sample_idx=2, prompt="p", completion="bit longer", completion_tokens=14, correct=True),
    ...      dict(prompt_id="a", sample_idx=3, prompt="p", completion="wrong", completion_tokens=5, correct=False)]
    >>> [(p["chosen"], p["rejected"]) for p in preference_pairs(S)]
    [('short ok', 'long ok'), ('short ok', 'wrong')]
    >>> len(preference_pairs(S, max_pairs_per_prompt=1))
    1
    """
    if ratio < 1:
        raise ValueError(
            f"ratio must be >= 1 (a rejected correct answer is longer than the chosen), got {ratio}"
        )
    pairs: list[Record] = []
    best = shortest_correct(samples := list(samples))
    for pid, group in _by_prompt(samples).items():
        chosen = best.get(pid)
        if chosen is None:
            continue
        limit = ratio * chosen["completion_tokens"]
        rejected = [
            s
            for s in sorted(group, key=lambda s: s["sample_idx"])
            if not s["correct"] or (s is not chosen and s["completion_tokens"] >= limit)
        ]
        for r in rejected[:max_pairs_per_prompt]:
            pairs.append(
                {
                    "prompt_id": pid,
                    "prompt": chosen["prompt"],
                    **({"system": chosen["system"]} if chosen.get("system") else {}),
                    "chosen": chosen["completion"],
                    "rejected": r["completion"],
                    "chosen_tokens": chosen["completion_tokens"],
                    "rejected_tokens": r["completion_tokens"],
                    "rejected_correct": bool(r["correct"]),
                }
            )
    return pairs


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), `q` in [0, 100].

    >>> percentile([1, 2, 3, 4], 50), percentile([10], 90), percentile([0, 10], 90)
    (2.5, 10.0, 9.0)
    """
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def length_stats(samples: Iterable[Record]) -> dict[str, float]:
    """Length statistics in completion tokens: overall, of correct samples, and their spread per prompt.

    `max_min_ratio` is the mean over prompts (with >1 sample) of longest/shortest — how much the length
    of one model's answers to the same question varies (the room shortest-rs and DPO exploit).

    >>> S = [dict(prompt_id="a", sample_idx=i, completion_tokens=t, reasoning_tokens=t - 2, correct=c)
    ...      for i, (t, c) in enumerate([(10, True), (20, True), (40, False)])]
    >>> st = length_stats(S)
    >>> st["mean"], st["p50"], st["max_min_ratio"], st["correct_mean"], st["accuracy"]
    (23.333333333333332, 20.0, 4.0, 15.0, 0.6666666666666666)
    """
    samples = list(samples)
    if not samples:
        return {"n": 0}
    lengths = [s["completion_tokens"] for s in samples]
    correct = [s["completion_tokens"] for s in samples if s["correct"]]
    ratios = [
        max(t) / max(min(t), 1)
        for g in _by_prompt(samples).values()
        if len(t := [s["completion_tokens"] for s in g]) > 1
    ]
    stats = {
        "n": len(samples),
        "prompts": len(_by_prompt(samples)),
        "accuracy": len(correct) / len(samples),
        "mean": sum(lengths) / len(lengths),
        "p50": percentile(lengths, 50),
        "p90": percentile(lengths, 90),
        "min": min(lengths),
        "max": max(lengths),
        "mean_reasoning": sum(s.get("reasoning_tokens", 0) for s in samples) / len(samples),
        "correct_mean": sum(correct) / len(correct) if correct else float("nan"),
        "max_min_ratio": sum(ratios) / len(ratios) if ratios else float("nan"),
    }
    return stats
