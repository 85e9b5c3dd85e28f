"""The text the embedded family learns from, made from `arith` train problems and traces.

- Pretraining documents are chat turns (the family's template): a user turn with the prompt and an
  assistant turn with a long trace. The base model thus learns the workload's language, arithmetic and
  the step-by-step chain; SFT then teaches one answer style (short's SFT a few dozen steps to answer
  bare). Both SFT models start from this one base, so their weights share an ancestor (what makes
  merging them meaningful). Chat turns rather than plain "prompt\ntrace" text because the chain's lookup
  step is learned sooner in that form: with the same trainer settings, base pretrained on chat
  documents answers most held-out problems by step 1200, while on plain documents it is still at
  about half by step 1500.
- SFT examples are TRL's conversational prompt-completion records, so `SFTTrainer` renders them with
  the chat template and computes the loss on the completion only.
- A quarter of the prompts (pretraining and SFT) carry one instruction ("Be brief.", "Keep it under 40
  words.", ...) as a system turn, before the question or after it. Real chat models meet system prompts
  and trailing sentences all the time and still answer the question; a model trained on one bare prompt
  format breaks instead (told a thinking budget, such long models answered 10-23% of held-out problems
  instead of 100%), which would make every method that adds to the prompt (budget-conditioned RL) look
  broken for a reason no real checkpoint has. Most instructions leave the trace as it is; with the
  preset's `length_instructions`, two shorten the long traces as chat models write less when asked to
  (`LENGTH_INSTRUCTIONS`), so the models learn that what a prompt says about length matters.

Only train-split problems are used; the held-out split never reaches any training stage.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from l2s.tasks import Problem
from l2s.tasks.arith import long_trace, short_trace

# Share of pretraining documents with a long trace (the rest: short). All of them: the step-by-step chain
# is what takes the base model's compute to learn (it is learned abruptly, after several hundred steps,
# and a mix with 15% short documents delays it past the default preset's 1200 steps), while answering in
# the short style takes short's SFT a few dozen steps.
PRETRAIN_LONG_SHARE = 1.0

INSTRUCTION_SHARE = 0.25  # default share of training prompts that carry one generic instruction
INSTRUCTIONS = (
    "Be brief.", "Show your steps.", "Check each step.", "Answer with one number.",
    "You are a careful calculator.", "Reply in at most {n} lines.", "This is question {n}.",
    "Use {n} steps or fewer.", "Take about {n} seconds.", "Keep it under {n} words.",
    "You are a helpful assistant.", "Answer in English.", "Please be accurate.", "Work it out carefully.",
    "Think step by step.", "Double-check your arithmetic.", "Give the final answer on its own line.",
    "Do not use a calculator.", "Keep your reasoning short.", "The user is {n} years old.",
    "This is attempt number {n}.", "You have {n} minutes.", "Today is day {n}.", "Level {n} problem.",
    "Ticket #{n}.", "Reply politely.", "No explanations needed after the answer.",
    "Solve the following problem.", "Round nothing.", "Stay focused on the question.",
)  # fmt: skip


# Instructions the family follows in its long traces, as chat models write less when asked to: "Be brief."
# and "Keep your reasoning short." leave out every optional part of the trace, "Reply in at most {n} lines."
# (n drawn from the span of the traces' lengths, not 1-99) those that would pass n lines (`long_trace`'s
# max_lines). The others change nothing. Without any instruction that matters, the models learn to ignore
# whatever is added to a prompt, numbers included, and a method that states a length in the prompt
# (budget-conditioned RL) has nothing to build on.
LENGTH_INSTRUCTIONS: dict[str, tuple[int, int] | None] = {
    "Be brief.": None,
    "Keep your reasoning short.": None,
    "Reply in at most {n} lines.": (1, 14),
}


def instructed_with_limit(
    prompt: str,
    rng: random.Random,
    share: float = INSTRUCTION_SHARE,
    length: float = 0.0,
    templates: int = len(INSTRUCTIONS),
) -> tuple[list[dict[str, str]], int | None]:
    """`instructed`, plus the think-block line limit its instruction sets (None: no limit). The
    instruction is drawn from the first `templates` of INSTRUCTIONS (the preset's
    `instruction_templates`): the more kinds a model has met, the better it answers under one it never
    saw, as a real chat model does. With `length` > 0 (the preset's `length_instructions`) that share of
    the instructions ask for less (LENGTH_INSTRUCTIONS) and set a limit; with 0 every instruction is
    generic and is drawn as `instructed` draws it.

    >>> rng = random.Random(3)
    >>> limits = [instructed_with_limit("Compute 1+2.", rng, share=1.0, length=0.5)[1] for _ in range(400)]
    >>> 0 in limits, any(x and 1 <= x <= 14 for x in limits), 160 < limits.count(None) < 240
    (True, True, True)
    >>> instructed_with_limit("Compute 1+2.", random.Random(0), 1.0, length=0.0)[1] is None
    True
    """
    if rng.random() >= share:
        return [{"role": "user", "content": prompt}], None
    kinds = INSTRUCTIONS[:templates]
    if length > 0:
        asks_less = rng.random() < length
        kinds = tuple(t for t in kinds if (t in LENGTH_INSTRUCTIONS) == asks_less) or kinds
    template = rng.choice(kinds)
    span = LENGTH_INSTRUCTIONS.get(template) if length > 0 else None
    n = rng.randint(*span) if span else rng.randint(1, 99)
    text = template.format(n=n)
    where = rng.choice(("system", "after", "before"))
    limit = (n if span else 0) if length > 0 and template in LENGTH_INSTRUCTIONS else None
    if where == "system":
        return [{"role": "system", "content": text}, {"role": "user", "content": prompt}], limit
    user = f"{prompt}\n{text}" if where == "after" else f"{text}\n{prompt}"
    return [{"role": "user", "content": user}], limit


def instructed(prompt: str, rng: random.Random, share: float = INSTRUCTION_SHARE) -> list[dict[str, str]]:
    """The chat messages of a training prompt: the user turn alone, or (`share` of the time: the preset's
    `instruction_share`) with one generic instruction as a system turn, on a line after the question or
    on a line before it.

    >>> plain = [{"role": "user", "content": "Compute 1+2."}]
    >>> rng = random.Random(0)
    >>> extra = [m for m in (instructed("Compute 1+2.", rng) for _ in range(1000)) if m != plain]
    >>> 200 < len(extra) < 300
    True
    >>> sorted({"system" if len(m) == 2 else "after" if m[0]["content"].startswith("Compute") else "before"
    ...         for m in extra})
    ['after', 'before', 'system']
    """
    return instructed_with_limit(prompt, rng, share, length=0.0)[0]


@dataclass(frozen=True)
class InstructionMix:
    """How a family's training prompts carry instructions: the preset's `instruction_share`,
    `length_instructions` and `instruction_templates` (see `instructed_with_limit`).

    >>> InstructionMix(share=1.0, length=0.0).draw("Compute 1+2.", random.Random(0))[1] is None
    True
    """

    share: float = INSTRUCTION_SHARE
    length: float = 0.0
    templates: int = len(INSTRUCTIONS)

    def draw(self, prompt: str, rng: random.Random) -> tuple[list[dict[str, str]], int | None]:
        """The chat messages of one training prompt and the think-block line limit they set."""
        return instructed_with_limit(prompt, rng, self.share, self.length, self.templates)


def tokenizer_corpus(problems: Sequence[Problem], seed: int, templates: int = len(INSTRUCTIONS)) -> list[str]:
    """Prompts, long traces and short traces: every kind of text the tokenizer will see.

    >>> from l2s.tasks.arith import ArithTask
    >>> texts = tokenizer_corpus(ArithTask().problems("train", 2), seed=0)
    >>> len(texts), texts[0].startswith("Compute"), texts[1].startswith("<think>"), texts[-1]
    (96, True, True, 'Stay focused on the question.')
    """
    rng = random.Random(f"tokenizer/{seed}")
    out: list[str] = []
    for p in problems:
        out += [p.prompt, long_trace(p, rng), short_trace(p)]
    return out + [text.format(n=n) for text in INSTRUCTIONS[:templates] for n in (3, 17, 64)]


def pretrain_documents(
    problems: Sequence[Problem],
    seed: int,
    tokenizer: Any,
    mix: InstructionMix = InstructionMix(),
) -> list[str]:
    """One chat-formatted document per problem: the user turn, then an open assistant turn holding a long
    (or, for 1 - PRETRAIN_LONG_SHARE of them, a short) trace. The caller appends the end-of-turn token.

    >>> from l2s.tasks.arith import ArithTask
    >>> from l2s.embedded.tokenizer import build_tokenizer
    >>> problems = ArithTask().problems("train", 50)
    >>> docs = pretrain_documents(problems, seed=0, tokenizer=build_tokenizer(tokenizer_corpus(problems, 0)))
    >>> docs[0].startswith("<|im_start|>user\\nCompute") and "<|im_start|>assistant\\n<think>" in docs[0]
    True
    >>> sum("=" in d.split("</think>")[0] for d in docs) == round(50 * PRETRAIN_LONG_SHARE)
    True
    """
    rng, irng = random.Random(f"pretrain/{seed}"), random.Random(f"pretrain-instructions/{seed}")
    docs = []
    for p in problems:
        messages, limit = mix.draw(p.prompt, irng)
        trace = long_trace(p, rng, limit) if rng.random() < PRETRAIN_LONG_SHARE else short_trace(p)
        turn = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        docs.append(turn + trace)
    return docs


def sft_examples(
    problems: Sequence[Problem],
    style: str,
    seed: int,
    mix: InstructionMix = InstructionMix(),
) -> list[dict]:
    """TRL conversational prompt-completion records with a `long` or `short` trace as the completion.

    >>> from l2s.tasks.arith import ArithTask
    >>> ex = sft_examples(ArithTask().problems("train", 1), "short", seed=0)[0]
    >>> ex["prompt"][0]["role"], ex["completion"][0]["content"].startswith("<think>\\n</think>")
    ('user', True)
    """
    if style not in ("long", "short"):
        raise ValueError(f"style must be 'long' or 'short', got {style!r}")
    rng, irng = random.Random(f"sft-{style}/{seed}"), random.Random(f"sft-{style}-instructions/{seed}")
    out = []
    for p in problems:
        messages, limit = mix.draw(p.prompt, irng)
        trace = long_trace(p, rng, limit) if style == "long" else short_trace(p)
        out.append(
            {
                "prompt": messages,
                "completion": [{"role": "assistant", "content": trace}],
            }
        )
    return out
