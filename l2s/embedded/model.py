"""Model shapes of the embedded family: small `LlamaForCausalLM`s that train in minutes on 2 CPU cores.

Head size is 32 so vLLM's CPU backend can serve them (it needs a head size of 32, 64, …).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, int]] = {
    # For tests: builds in seconds.
    "pico": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    ),
    # The default embedded family (`l2s init`): about 0.5M parameters; trains in minutes on 2 cores.
    # Two layers, not three: the trace's step needs one induction lookup (two layers) and a table of
    # sums. Measured from scratch on the arith running-total traces (batch 16, lr 5e-3, 300 held-out,
    # greedy): 2 layers reached 90% at step 854 (165 s) and 97% at step 1137, at 8.1k tokens/s; 3 layers
    # 36% at step 1056 and 98% at step 1774, at 5.5k tokens/s.
    "nano": dict(
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    ),
}


def llama_config(
    vocab_size: int, size: str | dict[str, int] = "pico", tokenizer: Any = None, max_positions: int = 1024
):
    from transformers import LlamaConfig

    dims = SIZES[size] if isinstance(size, str) else size
    ids = {}
    if tokenizer is not None:
        ids = dict(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        head_dim=dims["hidden_size"] // dims["num_attention_heads"],
        **dims,
        **ids,
    )


def save_random_model(
    path: str | Path, tokenizer: Any, size: str | dict[str, int] = "pico", seed: int = 0
) -> Path:
    """Save a randomly initialised Llama with `tokenizer` as a complete HF checkpoint folder."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(len(tokenizer), size, tokenizer))
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
