"""Engine adapters the routes call: one async `generate` over either engine.

- `HFBackend`: an `l2s.engines.hf.HFEngine` behind a `Batcher` (concurrent requests share generate
  calls; the engine runs in a worker thread).
- `VLLMBackend`: vLLM's `AsyncLLM` (the v1 async engine), whose scheduler does continuous batching;
  each prompt is one vLLM request, streamed as it decodes and aborted by vLLM when its task is cancelled.
Both return `Generation`s built by `l2s.engines.completion`, so text, reasoning split and token counts
mean the same thing whichever engine answered. Both send a budget-conditioned model (`l2s derive --method
budget`) its thinking budget in the prompt as well (`prompt_as_sent`), and count that prompt's tokens. torch and vLLM are imported only when a backend is built.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from l2s.engines.base import Generation, Prompt, SamplingParams
from l2s.engines.completion import (
    RenderedPrompt,
    ThinkMarkers,
    eos_token_ids,
    make_generation,
    prompt_as_sent,
    render_prompt,
)
from l2s.server.batching import Batcher, TokenSink

if TYPE_CHECKING:
    from l2s.budget import BudgetPrompt


class Backend(Protocol):
    name: str
    path: str
    tokenizer: Any
    markers: ThinkMarkers
    eos_ids: set[int]
    context_length: int  # prompt + completion tokens the model can attend to
    budget_prompt: BudgetPrompt | None  # how a budget-conditioned model is told its budget, else None

    async def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenSink | None = None
    ) -> list[list[Generation]]: ...

    def depth(self) -> int: ...

    def prompt_info(self, prompt: Prompt, max_thinking_tokens: int | None = None) -> tuple[int, bool]:
        """(prompt tokens, whether the rendered prompt opens a think block) of the prompt as sent under
        that thinking budget."""
        ...

    async def close(self) -> None: ...


class _Rendering:
    tokenizer: Any
    budget_prompt: BudgetPrompt | None

    def render(self, prompt: Prompt, max_thinking_tokens: int | None) -> RenderedPrompt:
        """The prompt as the engine sends it: with a budget-conditioned model's budget instruction."""
        return render_prompt(self.tokenizer, prompt_as_sent(prompt, max_thinking_tokens, self.budget_prompt))

    def prompt_info(self, prompt: Prompt, max_thinking_tokens: int | None = None) -> tuple[int, bool]:
        rendered = self.render(prompt, max_thinking_tokens)
        return len(rendered.ids), rendered.think_opened


class HFBackend(_Rendering):
    def __init__(
        self, name: str, path: Path, *, max_batch: int, wait_s: float, on_depth: Callable[[int], None], **kw
    ) -> None:
        from l2s.engines.hf import HFEngine

        self.name, self.path = name, str(path)
        self.engine = HFEngine(path, batch_size=max_batch, **kw)
        self.tokenizer, self.markers, self.eos_ids = (
            self.engine.tokenizer,
            self.engine.markers,
            self.engine.eos_ids,
        )
        self.budget_prompt = self.engine.budget_prompt  # the engine writes the instruction itself
        self.context_length = int(getattr(self.engine.model.config, "max_position_embeddings", 2**31))
        self.batcher = Batcher(self.engine, max_batch=max_batch, wait_s=wait_s, on_depth=on_depth)
        self.batcher.start()

    async def generate(self, prompts, params, on_token=None):
        return await self.batcher.generate(prompts, params, on_token)

    def depth(self) -> int:
        return self.batcher.depth()

    async def close(self) -> None:
        await self.batcher.stop()
        self.engine.close()


class VLLMBackend(_Rendering):
    """One served model on vLLM's `AsyncLLM`; its arguments come from `l2s.engines.vllm_args.engine_args`
    (device-aware defaults, this model's share of a shared GPU, the settings' `engine_options` last)."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        on_depth: Callable[[int], None],
        memory_share: float = 1.0,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        **engine_options,
    ) -> None:
        from transformers import AutoTokenizer

        from l2s.budget import budget_prompt
        from l2s.engines.vllm_args import check_engine_options, engine_args, vllm_device, vllm_environment

        vllm_environment(in_process=False)  # AsyncLLM runs its engine core in its own process
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.name, self.path = name, str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.markers = ThinkMarkers.of(self.tokenizer)
        self.eos_ids = eos_token_ids(self.tokenizer)
        self.budget_prompt = budget_prompt(path)
        check_engine_options(engine_options)
        args = engine_args(
            path,
            device=vllm_device(),
            offline=False,
            memory_share=memory_share,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            engine_options=engine_options,
        )
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self.context_length = int(self.engine.model_config.max_model_len)
        self.on_depth, self.running = on_depth, 0

    def depth(self) -> int:
        return self.running

    async def generate(self, prompts, params, on_token=None):
        rows = await asyncio.gather(*(self._one(i, p, params, on_token) for i, p in enumerate(prompts)))
        return list(rows)

    async def _one(self, index: int, prompt: Prompt, params: SamplingParams, on_token) -> list[Generation]:
        from l2s.engines.vllm_args import vllm_sampling_params

        rendered = self.render(prompt, params.max_thinking_tokens)
        # vLLM refuses n > 1 with greedy decoding; greedy samples are all the same, so make one.
        n = 1 if params.greedy else params.n
        vparams = vllm_sampling_params(
            params,
            prompt_ids=rendered.ids,
            open_ids=self.markers.open_ids,
            think_opened=rendered.think_opened,
            n=n,
            seed=params.seed,
            delta=True,
        )
        ids: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        self.running += n
        self.on_depth(self.running)
        try:
            # Already tokenized by the model's own chat template (as the hf engine does); vLLM's renderer
            # turns the ids into its engine input (raw prompts to generate() are deprecated in vLLM).
            (engine_input,) = await self.engine.renderer.render_cmpl_async(
                [{"prompt_token_ids": rendered.ids}]
            )
            stream = self.engine.generate(engine_input, vparams, request_id=f"l2s-{uuid.uuid4().hex}")
            async for out in stream:
                for o in out.outputs:
                    for tok in o.token_ids:
                        if on_token is not None:
                            for k in range(params.n) if n == 1 else (o.index,):
                                on_token(index * params.n + k, tok)
                    ids[o.index].extend(o.token_ids)
                    if o.logprobs:
                        logprobs[o.index].extend(
                            step[tok].logprob for step, tok in zip(o.logprobs, o.token_ids, strict=False)
                        )
                    if o.finish_reason is not None:
                        finish[o.index] = o.finish_reason
        finally:
            self.running -= n
            self.on_depth(self.running)
        gens = []
        for k in range(n):
            gen = make_generation(
                self.tokenizer,
                ids[k],
                eos_ids=self.eos_ids,
                markers=self.markers,
                think_opened=rendered.think_opened,
                stops=params.stop,  # cut as the hf engine cuts, so both engines return the same text
                logprobs=logprobs[k] if params.logprobs else None,
            )
            if finish[k] is not None:
                gen.finish_reason = finish[k]
            gens.append(gen)
        if n < params.n:
            gens = [copy.deepcopy(gens[0]) for _ in range(params.n)]
        return gens

    async def close(self) -> None:
        import gc

        engine, self.engine = self.engine, None
        engine.shutdown()
        del engine
        gc.collect()  # AsyncLLM.__del__ shuts down again; let it run now, not at interpreter exit


def build_backend(engine: str, name: str, path: Path, settings, on_depth: Callable[[int], None]) -> Backend:
    """The backend for one served model (called in the app's lifespan).

    `auto` picks vllm when vLLM can run the model here, else hf (`l2s.engines.resolve_engine`). On vllm,
    the served models share the GPU budget in proportion to their weight bytes.
    """
    from l2s.engines import resolve_engine

    if resolve_engine(engine, path) == "vllm":
        from l2s.engines.vllm_args import memory_shares, weight_bytes

        shares = memory_shares({n: weight_bytes(p) for n, p in settings.served_models().items()})
        return VLLMBackend(
            name,
            path,
            on_depth=on_depth,
            memory_share=shares.get(name, 1.0),
            tensor_parallel_size=settings.tensor_parallel_size,
            data_parallel_size=settings.data_parallel_size,
            **settings.engine_options,
        )
    return HFBackend(
        name,
        path,
        max_batch=settings.max_batch,
        wait_s=settings.batch_wait_ms / 1000,
        on_depth=on_depth,
        **settings.engine_options,
    )
