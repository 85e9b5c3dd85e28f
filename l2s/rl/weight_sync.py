"""RL rollouts on vLLM: one engine for the whole run, given the policy's new weights in memory each iteration.

`PolicySync.refresh` is called before each iteration's rollouts. The first call starts a vLLM engine
from the policy's config with dummy weights (nothing is read from disk); every call then loads the
trainer's current weights into it through vLLM's worker entry point `reload_weights(weights_iterator=...)`,
run on every worker by `LLM.collective_rpc` (`VLLMEngine.load_weights`). That entry point loads
checkpoint-format tensors in place and redoes the per-device processing vLLM's kernels need after loading
(its CPU and quantized backends repack weights, so writing parameters directly, as older colocate
recipes do with `model.load_weights`, fails there). Then vLLM's prefix cache is reset, so no KV block
computed under the old weights is reused. This is TRL's colocate mode (`vllm_mode="colocate"`) on
vLLM's in-place reload API.

Sleep mode (GPU, when the trainer shares the GPU): `release` after the rollouts puts the engine to sleep
at level 2 (weights and KV cache freed; vLLM keeps its buffers), so the optimizer step gets that memory;
`refresh` wakes the weights, loads the new ones, then wakes the KV cache. vLLM's CPU backend has no sleep
mode, so nothing is released there. The engine's share of the GPU is sized against the trainer's resident
bytes (`rollout_memory_share`); `engine_options` override it.

Fallback: where in-memory loading is impossible — this vLLM has no `reload_weights` (it raises
NotImplementedError), or this process does not hold the full policy (ZeRO-3 / FSDP keep it sharded and
gather it on the main process only) — the main process saves the policy and every process rebuilds its
engine from that folder, as before; said once on stderr.

Partial rollouts need nothing more: an unfinished trajectory is sent again (prompt plus its tokens so
far) in the next iteration, and vLLM recomputes its KV cache under the new weights.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from l2s.engines.vllm_args import memory_shares

# What the trainer keeps on its device per parameter while rollouts run: fp32 weights, gradients and
# AdamW's two moments (4 bytes each).
TRAINER_BYTES_PER_PARAM = 16
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SYNC_DIR = "policy-for-vllm"


def rollout_memory_share(params: int, dtype: str, trainer_on_gpu: bool) -> float:
    """The rollout engine's fraction of the GPU budget beside a trainer of `params` parameters.

    >>> round(rollout_memory_share(1_000, "bfloat16", trainer_on_gpu=True), 4)  # 2 / (2 + 16)
    0.1111
    >>> rollout_memory_share(1_000, "bfloat16", trainer_on_gpu=False)
    1.0
    """
    if not trainer_on_gpu:
        return 1.0
    shares = memory_shares({"vllm": params * DTYPE_BYTES[dtype], "trainer": params * TRAINER_BYTES_PER_PARAM})
    return shares["vllm"]


def holds_full_weights(state: dict[str, Any]) -> bool:
    """Whether a gathered state dict holds every weight (not an empty or sharded one).

    >>> import torch
    >>> holds_full_weights({"w": torch.ones(2)}), holds_full_weights({}), holds_full_weights({"w": torch.ones(0)})
    (True, False, False)
    """
    return bool(state) and all(t.numel() > 0 for t in state.values())


def check_weights_match(state: dict[str, Any], checkpoint: str | Path) -> None:
    """Raise a one-line UserError when the trainer's weights do not fit the model the rollout engine is
    built from (`checkpoint`'s config and tensor names): every tensor of the checkpoint must be in `state`
    with the same shape. Tensors only the trainer has (a tied lm_head) are fine. A checkpoint without
    safetensors files is left to vLLM.

    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> d = tempfile.mkdtemp()
    >>> save_file({"w": torch.zeros(2, 3)}, f"{d}/model.safetensors")
    >>> check_weights_match({"w": torch.zeros(2, 3), "lm_head.weight": torch.zeros(1)}, d)
    >>> check_weights_match({"w": torch.zeros(3, 3)}, d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    l2s.errors.UserError: vLLM weight sync: tensor w is [3, 3] in the trainer's model but [2, 3] in the rollout engine's (...
    """
    from l2s.checkpoint import tensor_shapes
    from l2s.errors import UserError

    where = f"the rollout engine's ({checkpoint})"
    fix = "the policy must be the checkpoint RL starts from (--init / --long); or use --engine hf"
    for name, shape in tensor_shapes(checkpoint).items():
        if name not in state:
            raise UserError(
                f"vLLM weight sync: tensor {name} of {where} is not in the trainer's model; {fix}"
            )
        got = list(state[name].shape)
        if got != shape:
            raise UserError(
                f"vLLM weight sync: tensor {name} is {got} in the trainer's model but {shape} in {where}; {fix}"
            )


class PolicySync:
    """Keeps one vLLM engine at the policy's current weights for a whole RL run."""

    def __init__(self, work: Path, tokenizer: Any, **engine_kwargs: Any):
        self.work, self.tokenizer, self.engine_kwargs = work, tokenizer, engine_kwargs
        self.engine: Any = None
        self.in_memory = True
        self.asleep = False
        self.seconds = 0.0  # wall time of the last `refresh`

    def refresh(self, accelerator: Any, model: Any) -> Any:
        """Bring the engine to the policy's current weights (in memory, else saved and reloaded); returns it."""
        from accelerate.utils import gather_object

        start = time.perf_counter()
        state = accelerator.get_state_dict(model)  # every process: under ZeRO-3 / FSDP this gathers
        if self.in_memory and not all(gather_object([holds_full_weights(state)])):
            self._fall_back(
                accelerator, "this process does not hold the full policy (ZeRO-3 / FSDP shard it)"
            )
        if self.in_memory:
            try:
                self._load_in_memory(accelerator, model, state)
            except NotImplementedError as e:
                self._fall_back(accelerator, f"this vLLM cannot load weights in place ({e})")
        if not self.in_memory:
            self._save_and_reload(accelerator, model, state)
        self.seconds = time.perf_counter() - start
        return self.engine

    def release(self) -> None:
        """After the rollouts: free the engine's GPU memory for the trainer (sleep; or close, when reloading)."""
        if self.engine is None:
            return
        if not self.in_memory:
            self.engine.close()
            self.engine = None
        elif self.engine.args.get("enable_sleep_mode"):
            self.engine.sleep()
            self.asleep = True

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _load_in_memory(self, accelerator: Any, model: Any, state: dict[str, Any]) -> None:
        if self.engine is None:
            policy = accelerator.unwrap_model(model)
            check_weights_match(state, policy.name_or_path)
            self.engine = self._build(accelerator, policy, policy.name_or_path, weights_in_memory=True)
        if self.asleep:
            self.engine.wake_up(["weights"])
        self.engine.load_weights(list(state.items()))
        if self.asleep:
            self.engine.wake_up(["kv_cache"])
            self.asleep = False

    def _save_and_reload(self, accelerator: Any, model: Any, state: dict[str, Any]) -> None:
        folder = self.work / SYNC_DIR
        policy = accelerator.unwrap_model(model)
        if accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
            policy.save_pretrained(folder, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)
        accelerator.wait_for_everyone()
        self.close()
        self.engine = self._build(accelerator, policy, folder, weights_in_memory=False)

    def _fall_back(self, accelerator: Any, why: str) -> None:
        self.in_memory = False
        self.close()
        if accelerator.is_main_process:
            print(
                f"l2s rl: vLLM weight sync falls back to save + reload per iteration: {why}", file=sys.stderr
            )

    def _build(self, accelerator: Any, policy: Any, path: str | Path, *, weights_in_memory: bool) -> Any:
        from l2s.engines.vllm import VLLMEngine

        # Sample from the weights in the precision the policy trains in (vLLM's "auto" may pick bf16).
        dtype = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}[str(accelerator.mixed_precision)]
        on_gpu = accelerator.device.type == "cuda"
        params = sum(p.numel() for p in policy.parameters())
        return VLLMEngine(
            path,
            dtype=dtype,
            weights_in_memory=weights_in_memory,
            sleep_mode=on_gpu,
            memory_share=rollout_memory_share(params, dtype, on_gpu),
            launcher_processes=accelerator.num_processes,
            **self.engine_kwargs,
        )
