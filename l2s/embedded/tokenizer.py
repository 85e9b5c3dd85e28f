"""The embedded family's tokenizer: a small byte-level BPE with a Qwen-style chat template.

Built with the `tokenizers` library (trained on the workload's own text, so it needs no hub) and saved
as an ordinary `PreTrainedTokenizerFast` (tokenizer.json + tokenizer_config.json + chat_template.jinja)
that transformers and vLLM load unchanged. Digits are split one per token, so numbers have a regular
shape for a tiny model, while each arith operation (`+5`, `-2`) is one token (an added token, matched
before BPE): the trace's step "which operation comes next" is then one token's lookup, which a tiny model
learns far faster than a two-token one. Byte-level coverage means any text round-trips, not just the
workload's.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<think>", "</think>"]
EOS, PAD, BOS = "<|im_end|>", "<|pad|>", "<|im_start|>"
OPERATION_TOKENS = [f"{op}{d}" for op in "+-" for d in range(10)]

# Qwen/ChatML layout. The assistant turn is left open for generation; reasoning goes in <think>…</think>.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 384):
    """Train a byte-level BPE on `corpus` and wrap it as a `PreTrainedTokenizerFast`.

    >>> tok = build_tokenizer(["<think>\\n12 + 30 = 42\\n</think>\\nAnswer: 42"] * 4)
    >>> ids = tok("<think>\\n12 + 30 = 42\\n</think>\\nAnswer: 42")["input_ids"]
    >>> tok.decode(ids) == "<think>\\n12 + 30 = 42\\n</think>\\nAnswer: 42"
    True
    >>> tok.convert_ids_to_tokens(tok("123")["input_ids"])
    ['1', '2', '3']
    >>> tok.decode(tok("héllo wörld ✓")["input_ids"])
    'héllo wörld ✓'
    >>> tok.convert_ids_to_tokens(tok("3+5-2=6")["input_ids"])
    ['3', '+5', '-2', '=', '6']
    >>> tok.decode(tok("3+5-20")["input_ids"])
    '3+5-20'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS, PAD)],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        padding_side="left",
    )
    tok.add_tokens(OPERATION_TOKENS)
    tok.chat_template = CHAT_TEMPLATE
    return tok
