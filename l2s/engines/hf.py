"""The `hf` engine: transformers `generate` over left-padded batches with a KV cache; the CPU default.

transformers does the decoding (sampling, top-p, stop strings, the cache). What l2s adds by hand, as
small `LogitsProcessor`s and a streamer plugged into `generate`:
- `ThinkingBudget`: once a row has spent `max_thinking_tokens` inside `<think>`, only `</think>` may
  follow, then the model answers (the budget approach Qwen documents for Qwen3: "stop thinking" by
  forcing the close tag and let the model continue with its answer);
- `SampledLogprobs`: the log-probability, under the model's raw distribution (before temperature and
  top-p, as vLLM reports by default), of each token that was sampled;
- `TokenStreamer`: calls `on_token(flat_index, token_id)` per produced token of unfinished rows, so a
  server can stream several batched requests at once.

A budget-conditioned model (`l2s derive --method budget`, recognised by its l2s.json) asked for a thinking
budget also reads it from its prompt: chat messages end with "Think for at most N tokens." (`l2s.budget`,
`l2s.engines.completion.prompt_as_sent`), and `ThinkingBudget` still forces `</think>` at N, unless
`params.budget_cap` is off: then the budget is only told, which measures how well the model keeps to it.

Seeding: with `params.seed`, a call runs under `torch.manual_seed(seed)` inside a forked RNG, its
chunks in order, so the same call with the same seed gives the same tokens, and the global RNG (e.g. a
trainer's) is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2s.engines.base import Generation, Prompt, SamplingParams, TokenCallback
from l2s.engines.completion import (
    RenderedPrompt,
    ThinkMarkers,
    decode_completion,
    eos_token_ids,
    make_generation,
    render_prompt,
    sent_by,
)

if TYPE_CHECKING:
    from l2s.budget import BudgetPrompt


class ThinkingBudget:
    """LogitsProcessor: after `budget` tokens inside `<think>`, force the `</think>` tokens, one per step.

    State is kept per row and updated from the last token of `input_ids` at each step; rows start
    inside the think block when their prompt opened it (`think_opened`).
    """

    def __init__(self, budget: int, markers: ThinkMarkers, think_opened: Sequence[bool], prompt_len: int):
        self.budget, self.markers, self.prompt_len = budget, markers, prompt_len
        self.inside = list(think_opened)
        self.count = [0] * len(think_opened)
        self.forcing = [-1] * len(think_opened)  # index into close_ids while forcing, else -1
        self.history: list[list[int]] = [[] for _ in think_opened]
        self.keep = max(len(markers.open_ids), len(markers.close_ids))

    def _observe(self, row: int, tok: int) -> None:
        hist = self.history[row]
        hist.append(tok)
        del hist[: -self.keep]
        close, open_ = self.markers.close_ids, self.markers.open_ids
        if self.forcing[row] >= 0:
            self.forcing[row] += 1
            if self.forcing[row] == len(close):
                self.forcing[row], self.inside[row] = -1, False
        elif not self.inside[row] and tuple(hist[-len(open_) :]) == open_:
            self.inside[row], self.count[row] = True, 0
        elif self.inside[row] and tuple(hist[-len(close) :]) == close:
            self.inside[row] = False
        elif self.inside[row]:
            self.count[row] += 1

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] > self.prompt_len:
            for row, tok in enumerate(input_ids[:, -1].tolist()):
                self._observe(row, tok)
        for row in range(scores.shape[0]):
            if self.forcing[row] < 0 and self.inside[row] and self.count[row] >= self.budget:
                self.forcing[row] = 0
            if self.forcing[row] >= 0:
                forced = self.markers.close_ids[self.forcing[row]]
                keep = scores[row, forced].clone()
                scores[row] = float("-inf")
                scores[row, forced] = keep if keep.isfinite() else 0.0
        return scores


class SampledLogprobs:
    """LogitsProcessor that records log p(sampled token) from the raw logits; it changes nothing.

    Custom processors run before transformers' temperature/top-p warpers, so these are the model's own
    probabilities. Step t's distribution is kept until step t+1 reveals the token that was sampled.
    """

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.prev = None
        self.steps: list[Any] = []

    def _collect(self, tokens) -> None:
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, tokens[:, None].to(self.prev.device))[:, 0])

    def __call__(self, input_ids, scores):
        import torch

        if input_ids.shape[1] > self.prompt_len:
            self._collect(input_ids[:, -1])
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def result(self, sequences) -> list[list[float]]:
        """Per row, the logprob of every generated token (call once, with generate's output ids)."""
        import torch

        self._collect(sequences[:, -1])
        if not self.steps:
            return [[] for _ in range(sequences.shape[0])]
        return torch.stack(self.steps, dim=1).tolist()


class TokenStreamer:
    """A transformers streamer that reports each new token of each unfinished row to `on_token`."""

    def __init__(self, on_token: TokenCallback, offset: int, rows: int, eos_ids: set[int], decode, stops):
        self.on_token, self.offset, self.eos_ids = on_token, offset, eos_ids
        self.decode, self.stops = decode, stops or []  # decode(ids) -> text, as the Generation is decoded
        self.done = [False] * rows
        self.generated: list[list[int]] = [[] for _ in range(rows)]
        self.prompt_seen = False

    def _hit_stop(self, ids: list[int]) -> bool:
        tail = self.decode(ids[-32:]) if self.stops else ""
        return any(s in tail for s in self.stops)

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt ids
            self.prompt_seen = True
            return
        for row, tok in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            self.generated[row].append(tok)
            self.on_token(self.offset + row, tok)
            if tok in self.eos_ids or self._hit_stop(self.generated[row]):
                self.done[row] = True

    def end(self) -> None:
        pass


class HFEngine:
    """transformers engine: batched, left-padded, KV-cached, seeded generation.

    `budget_close_text` replaces the bare `</think>` forced when the thinking budget is spent, e.g.
    Qwen's "Considering the limited time by the user, I have to give the solution based on the thinking
    directly now.\n</think>.\n\n"; its tokens before `</think>` then count as reasoning tokens.
    `budget_prompt` is how the model was told its budget in training (`l2s.budget.budget_prompt`, read
    from the checkpoint's l2s.json), None for a model that is not budget-conditioned.
    `device` defaults to the GPU when torch sees one, else the CPU (fp32 there, the checkpoint's dtype
    on a GPU); pass `--engine-options '{"device": "cpu"}'` to keep a GPU free.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 64,
        trust_remote_code: bool = False,
        budget_close_text: str | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from l2s.budget import budget_prompt
        from l2s.checkpoint import validate_checkpoint

        path = validate_checkpoint(model_path, need_chat_template=False)
        if device in (None, "auto"):  # the GPU when there is one: `l2s eval`/`sample`/serve pass no device
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype in (None, "auto"):
            torch_dtype = torch.float32 if device == "cpu" else "auto"
        else:
            torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        ).to(device)
        model.eval()
        self._setup(model, tokenizer, name=path.name, model_path=str(path), batch_size=batch_size)
        self.budget_close_text = budget_close_text
        self.budget_prompt = budget_prompt(path)

    @classmethod
    def from_objects(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "policy",
        batch_size: int = 64,
        budget_prompt: BudgetPrompt | None = None,
    ) -> HFEngine:
        """Wrap an in-memory model (e.g. the RL policy) without saving it first.

        There is no l2s.json to read, so the model is budget-conditioned only when `budget_prompt` says so."""
        engine = cls.__new__(cls)
        engine._setup(model, tokenizer, name=name, model_path=name, batch_size=batch_size)
        engine.budget_close_text = None
        engine.budget_prompt = budget_prompt
        return engine

    def _setup(self, model: Any, tokenizer: Any, *, name: str, model_path: str, batch_size: int) -> None:
        if batch_size < 1:
            from l2s.errors import UserError

            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.model, self.name, self.model_path, self.batch_size = model, name, model_path, batch_size
        self._tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.markers = ThinkMarkers.of(tokenizer)
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def close(self) -> None:
        self.model = None

    def render(self, prompt: Prompt, params: SamplingParams) -> RenderedPrompt:
        """The prompt as this engine sends it under `params` (budget instruction included), tokenized."""
        return render_prompt(self.tokenizer, sent_by(self, prompt, params))

    def _close_ids(self) -> tuple[int, ...]:
        if self.budget_close_text:
            return tuple(self.tokenizer.encode(self.budget_close_text, add_special_tokens=False))
        return self.markers.close_ids

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig

        greedy = params.greedy
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=None if greedy or params.top_p >= 1 else params.top_p,
            top_k=None if greedy else 0,  # 0 = off; transformers would otherwise default to 50 (vLLM: off)
            max_new_tokens=params.max_tokens,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=params.stop or None,
            use_cache=True,
        )

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> list[list[Generation]]:
        import torch

        rendered = [self.render(p, params) for p in prompts]
        rows = [r for r in rendered for _ in range(params.n)]  # flat index = prompt * n + sample
        flat: list[Generation] = []
        device = self.model.device
        rng = contextlib.nullcontext()
        if params.seed is not None:
            rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        was_training = self.model.training
        self.model.eval()
        try:
            with rng, torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                for start in range(0, len(rows), self.batch_size):
                    flat += self._generate_chunk(
                        rows[start : start + self.batch_size], params, start, on_token
                    )
        finally:
            if was_training:
                self.model.train()
        return [flat[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _generate_chunk(self, rows, params: SamplingParams, offset: int, on_token) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        device = self.model.device
        width = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in rows], device=device)
        attention = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows], device=device)

        processors = LogitsProcessorList()
        recorder = SampledLogprobs(width) if params.logprobs else None
        if recorder:
            processors.append(recorder)
        if params.thinking_cap is not None:
            markers = ThinkMarkers(self.markers.open_ids, self._close_ids())
            processors.append(
                ThinkingBudget(params.thinking_cap, markers, [r.think_opened for r in rows], width)
            )
        streamer = None
        if on_token is not None:
            decode = lambda ids: decode_completion(self.tokenizer, ids, self.markers)  # noqa: E731
            streamer = TokenStreamer(on_token, offset, len(rows), self.eos_ids, decode, params.stop)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=self._generation_config(params),
            logits_processor=processors,
            streamer=streamer,
            tokenizer=self.tokenizer if params.stop else None,
        )
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        logprobs = recorder.result(sequences) if recorder else None
        gens = []
        for i, row in enumerate(rows):
            ids = sequences[i, width:].tolist()
            end = next((j + 1 for j, t in enumerate(ids) if t in self.eos_ids), len(ids))
            gens.append(
                make_generation(
                    self.tokenizer,
                    ids[:end],
                    eos_ids=self.eos_ids,
                    markers=self.markers,
                    think_opened=row.think_opened,
                    stops=params.stop,
                    logprobs=logprobs[i] if logprobs else None,
                )
            )
        return gens
