"""Rollouts for Kimi RL, with partial rollouts (Kimi k1.5 §2.6.2) and repeat detection.

Each RL iteration starts k samples for each of its new prompts (a *group*). With partial rollouts on,
every trajectory gets at most `segment_tokens` new tokens per iteration: one that is still running
after its segment goes to the replay buffer and continues in the next iteration from where it stopped,
so a few long trajectories no longer hold up the whole iteration (the report's "long trajectories do
not hold up short ones"). A group is handed to the trainer once all k of its samples are done (the
mean-reward baseline needs the whole group). Each segment remembers the iteration that generated it,
so `loss_mask` can leave segments of older policies out of the loss ("only the newest segment is
on-policy"). With `segment_tokens=None` it is ordinary rollouts: everything finishes in one iteration.

Repeated content is detected as it is generated (`ends_in_repeat`): such a trajectory is stopped (at
its segment end, or at once when the engine lets an `on_token` callback stop a row) and flagged, and
the reward may penalize it.

Generation goes through an l2s engine (`l2s.engines`): a continuation is sent as raw text, the
rendered prompt plus the decoded completion so far (special tokens kept), so both the hf and the vllm
engines can continue it. Training uses the tokens actually sampled. No library offers resumable
trajectories across policy updates, so this module is ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2s.tasks import Problem

if TYPE_CHECKING:
    from l2s.rl.config import RLConfig

# generate(texts, max_tokens) -> one list of token ids per text (EOS included when the row stopped).
# generate(texts, max_tokens) -> token ids per text; called as generate(texts, max_tokens, caps) when some
# trajectory has a thinking cap (budget-conditioned RL), caps[i] being row i's (or None).
GenerateFn = Callable[..., list[list[int]]]


def ends_in_repeat(
    token_ids: Sequence[int], max_period: int = 64, min_repeats: int = 4, min_span: int = 48
) -> bool:
    """Whether the sequence ends in one block of ≤ `max_period` tokens repeated back to back.

    The repeated span must hold at least `min_repeats` copies and `min_span` tokens, so short legitimate
    runs ("1000", a line written twice) do not count.

    >>> ends_in_repeat([5, 6, 7] * 20)
    True
    >>> ends_in_repeat([0] * 8)  # too short a span to call it a loop
    False
    >>> ends_in_repeat(list(range(100)))
    False
    >>> ends_in_repeat([1, 2, 3] + [9, 8] * 3, min_span=4, min_repeats=3)
    True
    """
    n = len(token_ids)
    tail = list(token_ids[-(max_period * min_repeats + min_span) :])
    for period in range(1, max_period + 1):
        span = max(period * min_repeats, min_span)
        if span > n:
            break
        window = tail[-span:]
        if all(window[i] == window[i - period] for i in range(period, span)):
            return True
    return False


@dataclass
class Segment:
    token_ids: list[int]
    iteration: int  # the iteration (policy) that generated these tokens


@dataclass
class Trajectory:
    sample_idx: int
    segments: list[Segment] = field(default_factory=list)
    finish_reason: str | None = None  # None while running; then "stop" | "length" | "repeat"
    thinking_cap: int | None = None  # budget RL: `</think>` forced after this many reasoning tokens

    @property
    def token_ids(self) -> list[int]:
        return [t for s in self.segments for t in s.token_ids]

    @property
    def completion_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.segments)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def repeated(self) -> bool:
        return self.finish_reason == "repeat"


@dataclass
class Group:
    """The k samples of one prompt, started together at iteration `started`."""

    problem: Problem
    prompt_text: str  # the prompt rendered by the model's chat template
    prompt_ids: list[int]
    started: int
    trajectories: list[Trajectory]
    budget: int | None = None  # budget-conditioned RL: the thinking budget the prompt states (all k share it)

    @property
    def done(self) -> bool:
        return all(t.done for t in self.trajectories)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Group:
        trajs = [
            Trajectory(
                t["sample_idx"],
                [Segment(**s) for s in t["segments"]],
                t["finish_reason"],
                t.get("thinking_cap"),
            )
            for t in d["trajectories"]
        ]
        problem = Problem(**d["problem"])
        return cls(problem, d["prompt_text"], d["prompt_ids"], d["started"], trajs, d.get("budget"))


def loss_mask(traj: Trajectory, iteration: int, mask_old_segments: bool) -> list[int]:
    """1 per completion token that counts in the loss: all of them, or only this iteration's segments.

    >>> t = Trajectory(0, [Segment([1, 2], 3), Segment([3], 4)], "stop")
    >>> loss_mask(t, 4, False), loss_mask(t, 4, True)
    ([1, 1, 1], [0, 0, 1])
    """
    return [
        0 if mask_old_segments and s.iteration < iteration else 1 for s in traj.segments for _ in s.token_ids
    ]


class PartialRollouts:
    """Collects finished groups for an iteration; unfinished ones wait in the replay buffer."""

    def __init__(
        self,
        max_tokens: int,
        segment_tokens: int | None = None,
        eos_ids: Sequence[int] = (),
        repeat: dict[str, int] | None = None,
    ):
        if segment_tokens is not None and segment_tokens < 1:
            raise ValueError("segment_tokens must be >= 1 (or None for ordinary rollouts)")
        self.max_tokens = max_tokens
        self.segment_tokens = segment_tokens
        self.eos_ids = set(eos_ids)
        self.repeat = repeat  # kwargs of ends_in_repeat; None = no repeat detection
        self.buffer: list[Group] = []

    def start(
        self,
        problem: Problem,
        prompt_text: str,
        prompt_ids: list[int],
        k: int,
        iteration: int,
        budget: int | None = None,
        forced: int = 0,
    ) -> Group:
        """Start a group of k trajectories; with a `budget`, the first `forced` of them get `</think>`
        forced after `budget` reasoning tokens, as a served request with that budget would."""
        trajs = [Trajectory(j, thinking_cap=budget if j < forced else None) for j in range(k)]
        group = Group(problem, prompt_text, list(prompt_ids), iteration, trajs, budget)
        self.buffer.append(group)
        return group

    def _budget(self, traj: Trajectory) -> int:
        left = self.max_tokens - traj.completion_tokens
        return left if self.segment_tokens is None else min(left, self.segment_tokens)

    def step(self, generate: GenerateFn, decode: Callable[[list[int]], str], iteration: int) -> list[Group]:
        """Run one segment for every unfinished trajectory; return (and drop from the buffer) done groups.

        `decode(ids)` turns a partial completion back into text (special tokens kept) to continue it.
        """
        running = [(g, t) for g in self.buffer for t in g.trajectories if not t.done]
        # New and continuing trajectories go to the engine in separate calls: a static-batch engine
        # (hf) left-pads every row to the longest context, so a few long continuations mixed into the
        # new rows would make every row pay attention over the longest context at every step.
        for rows in ([r for r in running if not r[1].segments], [r for r in running if r[1].segments]):
            if not rows:
                continue
            budgets = [self._budget(t) for _, t in rows]
            texts = [g.prompt_text + (decode(t.token_ids) if t.segments else "") for g, t in rows]
            caps = [t.thinking_cap for _, t in rows]
            if any(c is not None for c in caps):
                outputs = generate(texts, max(budgets), caps)
            else:
                outputs = generate(texts, max(budgets))
            for (_, traj), ids, budget in zip(rows, outputs, budgets, strict=True):
                self._extend(traj, list(ids)[:budget], iteration)
        finished = [g for g in self.buffer if g.done]
        self.buffer = [g for g in self.buffer if not g.done]
        return finished

    def _extend(self, traj: Trajectory, ids: list[int], iteration: int) -> None:
        traj.segments.append(Segment(ids, iteration))
        full = traj.token_ids
        if ids and ids[-1] in self.eos_ids:
            traj.finish_reason = "stop"
        elif self.repeat is not None and ends_in_repeat(full, **self.repeat):
            traj.finish_reason = "repeat"
        elif len(full) >= self.max_tokens or not ids:
            traj.finish_reason = "length"

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": [g.to_dict() for g in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [Group.from_dict(d) for d in state.get("buffer", [])]


# ---------------------------------------------------------------------------------------------------
# The policy as the generator the rollouts call, through an l2s engine (hf in memory, or vLLM kept in sync).


class RolloutEngine:
    """Turns the policy into the `generate(texts, max_tokens)` that `PartialRollouts` calls."""

    def __init__(self, cfg: RLConfig, tokenizer: Any, work: Path):
        self.cfg, self.tokenizer, self.work = cfg, tokenizer, work
        self.engine = None
        self.sync = None  # engine=vllm: the l2s.rl.weight_sync.PolicySync that keeps the engine current
        self.seed = 0  # set per iteration by `refresh`; each generate call gets its own

    def refresh(self, accelerator: Any, model: Any, seed: int) -> None:
        """Point the engine at the current policy (in memory: hf wraps it, vllm gets its weights loaded)."""
        self.seed = seed
        if self.cfg.engine == "hf":
            from l2s.engines.hf import HFEngine

            if self.engine is None:
                self.engine = HFEngine.from_objects(
                    accelerator.unwrap_model(model), self.tokenizer, batch_size=self.cfg.rollout_batch_size
                )
            return
        if self.sync is None:
            from l2s.rl.weight_sync import PolicySync

            self.sync = PolicySync(
                self.work,
                self.tokenizer,
                tensor_parallel_size=self.cfg.tensor_parallel_size,
                engine_options=self.cfg.engine_options,
            )
        self.engine = self.sync.refresh(accelerator, model)

    def release(self) -> None:
        """After the rollouts: the vLLM engine frees its GPU memory while the trainer steps."""
        if self.sync is not None:
            self.sync.release()

    def generate(
        self, texts: list[str], max_tokens: int, caps: Sequence[int | None] | None = None
    ) -> list[list[int]]:
        """Sample one completion per text; `caps[i]` forces `</think>` after that many reasoning tokens
        in row i (None: not forced). Rows are sent in one call per distinct cap."""
        from l2s.engines.base import SamplingParams

        caps = list(caps) if caps is not None else [None] * len(texts)
        out: list[list[int]] = [[] for _ in texts]
        for cap in dict.fromkeys(caps):
            rows = [i for i, c in enumerate(caps) if c == cap]
            # One seed per call (both engines then give each row its own stream: hf per batch, vLLM per
            # request as seed + row index), so the k copies of a prompt differ and a resumed run repeats.
            self.seed += 1_000_003
            params = SamplingParams(
                n=1,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                max_tokens=max_tokens,
                seed=self.seed,
                max_thinking_tokens=cap,
            )
            for i, gens in zip(rows, self.engine.generate([texts[i] for i in rows], params), strict=True):
                out[i] = gens[0].token_ids
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{iteration}:{rank}".encode()).digest()[:4], "big")


def draw_budget(seed: int, iteration: int, problem_id: str, low: int, high: int) -> int:
    """The thinking budget of a group: uniform over [low, high], fixed by (seed, iteration, problem id).

    No random state is involved, so a resumed run (and every process) draws the same budget.

    >>> draw_budget(0, 3, "arith-train-000001", 8, 64) == draw_budget(0, 3, "arith-train-000001", 8, 64)
    True
    >>> sorted({draw_budget(0, i, "p", 8, 10) for i in range(50)})
    [8, 9, 10]
    """
    digest = hashlib.sha256(f"budget:{seed}:{iteration}:{problem_id}".encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)
