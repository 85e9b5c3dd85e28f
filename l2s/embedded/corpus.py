"""The text the embedded family learns from, made from `arith` train problems and traces.

- Pretraining documents are plain text, no chat template: a problem's prompt followed by a long trace
  or by a short one (as a web corpus holds both worked solutions and bare answers). The base model
  thus learns the workload's language and arithmetic; SFT then only has to teach the chat turn and
  one answer style. Both SFT models start from this one base, so their weights share an ancestor
  (what makes merging them meaningful).
- SFT examples are TRL's conversational prompt-completion records, so `SFTTrainer` renders them with
  the chat template and computes the loss on the completion only.

Only train-split problems are used; the held-out split never reaches any training stage.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from l2s.tasks import Problem
from l2s.tasks.arith import long_trace, short_trace

# Share of pretraining documents with a long trace (the rest: short). All of them: the step-by-step chain
# is what takes the base model's compute to learn (it is learned abruptly, after several hundred steps,
# and with 15% short documents three default builds had not learned it by step 1300-1500), while
# answering in the short style takes short's SFT a few dozen steps.
PRETRAIN_LONG_SHARE = 1.0


def tokenizer_corpus(problems: Sequence[Problem], seed: int) -> list[str]:
    """Prompts, long traces and short traces: every kind of text the tokenizer will see.

    >>> from l2s.tasks.arith import ArithTask
    >>> texts = tokenizer_corpus(ArithTask().problems("train", 2), seed=0)
    >>> len(texts), texts[0].startswith("Compute"), texts[1].startswith("<think>")
    (6, True, True)
    """
    rng = random.Random(f"tokenizer/{seed}")
    out: list[str] = []
    for p in problems:
        out += [p.prompt, long_trace(p, rng), short_trace(p)]
    return out


def pretrain_documents(problems: Sequence[Problem], seed: int) -> list[str]:
    """One plain-text document per problem: the prompt, a newline, then a long or a short trace.

    >>> from l2s.tasks.arith import ArithTask
    >>> docs = pretrain_documents(ArithTask().problems("train", 50), seed=0)
    >>> all(d.startswith("Compute") and "</think>" in d for d in docs)
    True
    >>> sum("=" in d.split("</think>")[0] for d in docs) == round(50 * PRETRAIN_LONG_SHARE)
    True
    """
    rng = random.Random(f"pretrain/{seed}")
    docs = []
    for p in problems:
        trace = long_trace(p, rng) if rng.random() < PRETRAIN_LONG_SHARE else short_trace(p)
        docs.append(f"{p.prompt}\n{trace}")
    return docs


def sft_examples(problems: Sequence[Problem], style: str, seed: int) -> list[dict]:
    """TRL conversational prompt-completion records with a `long` or `short` trace as the completion.

    >>> from l2s.tasks.arith import ArithTask
    >>> ex = sft_examples(ArithTask().problems("train", 1), "short", seed=0)[0]
    >>> ex["prompt"][0]["role"], ex["completion"][0]["content"].startswith("<think>\\n</think>")
    ('user', True)
    """
    if style not in ("long", "short"):
        raise ValueError(f"style must be 'long' or 'short', got {style!r}")
    rng = random.Random(f"sft-{style}/{seed}")
    out = []
    for p in problems:
        trace = long_trace(p, rng) if style == "long" else short_trace(p)
        out.append(
            {
                "prompt": [{"role": "user", "content": p.prompt}],
                "completion": [{"role": "assistant", "content": trace}],
            }
        )
    return out
