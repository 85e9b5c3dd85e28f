"""Shortest-rs and DPO train on exactly the text the model reads and writes at inference, whatever its
chat template does to assistant turns: checked on what TRL's own trainers tokenize, for a ChatML
template, an R1-distill style one (opens <think> in the prompt, drops the reasoning from assistant
turns, BOS in the template) and a Qwen3 style one (re-renders the think block)."""

from __future__ import annotations

import shutil

import pytest

from l2s.engines.completion import render_prompt
from l2s.methods.dpo import dpo_rows
from l2s.methods.shortest_rs import sft_rows
from l2s.methods.training_text import TrainingText

R1 = (
    "{{- bos_token }}{%- for m in messages %}{%- if m['role'] == 'assistant' %}{%- set c = m['content'] %}"
    "{%- if '</think>' in c %}{%- set c = c.split('</think>')[-1] %}{%- endif %}"
    "{{- '<|im_start|>assistant\\n' + c + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)
QWEN3 = (
    "{%- for m in messages %}{%- if m['role'] == 'assistant' %}{%- set c = m['content'] %}{%- set r = '' %}"
    "{%- if '</think>' in c %}{%- set r = c.split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{%- set c = c.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + r + '\\n</think>\\n\\n' + c + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
PROMPT = "Compute 12 + 30. Give the final answer as 'Answer: N'."
# What the model generates after each template's generation prompt (R1: already inside <think>).
REASONING = "12 + 30 = 42\nwait, check: 42 - 30 = 12\n</think>\nAnswer: 42"
GENERATED = {"chatml": "<think>\n" + REASONING, "r1": REASONING, "qwen3": "<think>\n" + REASONING}
WRONG = {
    "chatml": "<think>\n</think>\nAnswer: 37",
    "r1": "</think>\nAnswer: 37",
    "qwen3": "<think>\n</think>\nAnswer: 37",
}


def _with_template(src, dest, template: str | None, bos: bool):
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    shutil.copytree(src, dest)
    tok = AutoTokenizer.from_pretrained(dest)
    if bos:  # a Llama-style tokenizer: adds BOS itself, and the template writes it too
        tok.add_special_tokens({"bos_token": "<s>"})
        tok._tokenizer.post_processor = TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)]
        )
    if template is not None:
        tok.chat_template = template
    (dest / "chat_template.jinja").unlink(missing_ok=True)
    tok.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module", params=["chatml", "r1", "qwen3"])
def model(request, pico_ckpt, tmp_path_factory):
    """(template name, checkpoint folder, tokenizer); the R1 one's tokenizer adds a BOS of its own."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = request.param
    template = {"chatml": None, "r1": R1, "qwen3": QWEN3}[name]
    path = _with_template(pico_ckpt, tmp_path_factory.mktemp(name) / "model", template, bos=name == "r1")
    tok = AutoTokenizer.from_pretrained(path)
    m = AutoModelForCausalLM.from_pretrained(pico_ckpt)
    m.resize_token_embeddings(len(tok))
    m.save_pretrained(path)
    return name, path, tok


def _inference_prompt_ids(tok):
    return render_prompt(tok, [{"role": "user", "content": PROMPT}]).ids


def _args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_length=256, **kw)


def test_sft_trains_on_the_prompt_and_completion_as_at_inference(model, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    name, path, tok = model
    rows = sft_rows({"p0": {"prompt": PROMPT, "completion": GENERATED[name]}}, TrainingText(tok))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=_args(SFTConfig, tmp_path, completion_only_loss=True),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]  # labels: -100 where no loss is taken
    start = next(i for i, label in enumerate(labels) if label != -100)
    assert ids[:start] == _inference_prompt_ids(tok)  # one BOS, <think> opened where the template opens it
    assert tok.decode(ids[start:]) == GENERATED[name] + tok.eos_token  # reasoning kept, spacing kept
    assert labels[start:] == ids[start:]


def test_dpo_pairs_are_the_generated_texts_after_the_inference_prompt(model, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    name, path, tok = model
    pairs = [{"prompt": PROMPT, "chosen": GENERATED[name], "rejected": WRONG[name]}]
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        ref_model=AutoModelForCausalLM.from_pretrained(path),
        args=_args(DPOConfig, tmp_path),
        train_dataset=Dataset.from_list(dpo_rows(pairs, TrainingText(tok))),
        processing_class=tok,
    )
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == _inference_prompt_ids(tok)
    assert tok.decode(row["chosen_ids"]) == GENERATED[name] + tok.eos_token
    assert tok.decode(row["rejected_ids"]) == WRONG[name] + tok.eos_token


def test_a_student_with_another_template_gets_the_completion_moved_across(pico_tokenizer):
    from copy import deepcopy

    r1 = deepcopy(pico_tokenizer)
    r1.chat_template = R1
    # sampled from a ChatML long model, trained into an R1-style student: its prompt already opened <think>
    to_r1 = TrainingText(r1, source_tokenizer=pico_tokenizer)
    assert to_r1.prompt(PROMPT).endswith("<|im_start|>assistant\n<think>\n")
    assert to_r1.completion(PROMPT, GENERATED["chatml"]) == GENERATED["r1"]
    # and the other way round
    assert (
        TrainingText(pico_tokenizer, source_tokenizer=r1).completion(PROMPT, GENERATED["r1"])
        == (GENERATED["chatml"])
    )
