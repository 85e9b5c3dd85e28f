"""Shared fixtures: pico models built on the fly; nothing is downloaded."""

from __future__ import annotations

import pytest

PICO_CORPUS = [
    "<think>\n12 + 30 = 42\nwait, check: 42 - 30 = 12\n</think>\nAnswer: 42",
    "Compute 7 * 6 - 5. Give the final answer as 'Answer: N'.",
    "<think>\n</think>\nAnswer: 37",
] * 8


@pytest.fixture(scope="session")
def pico_tokenizer():
    from l2s.embedded.tokenizer import build_tokenizer

    return build_tokenizer(PICO_CORPUS)


@pytest.fixture(scope="session")
def pico_ckpt(tmp_path_factory, pico_tokenizer):
    """A random pico Llama checkpoint folder with tokenizer and chat template (untrained: output is noise)."""
    from l2s.embedded.model import save_random_model

    return save_random_model(tmp_path_factory.mktemp("pico") / "model", pico_tokenizer)
