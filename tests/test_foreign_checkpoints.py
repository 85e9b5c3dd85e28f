"""A checkpoint family unlike the embedded one goes through every command unchanged: Qwen3 models (not
Llama) whose tokenizer adds its own BOS and whose chat template is DeepSeek-R1-distill's shape (the
generation prompt opens `<think>`, assistant turns lose their reasoning when re-rendered).

The long model is taught, in a few seconds, to reason in "hmm" lines inside the think block the prompt
opened and then answer a coin task (right about half the time); the short one answers at once. Then
`l2s sample`, the four `l2s derive` methods, `l2s eval` and `l2s serve` run on them as a user runs them.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from test_training_text import R1

pytestmark = pytest.mark.slow

L2S = [sys.executable, "-m", "l2s.cli"]
PROMPTS = [f"Pick 1 or 2 (round {i})." for i in range(40)]


def _train_qwen3(path, tokenizer, prompts, reasoning: bool, seed: int):
    """A pico Qwen3 taught to answer "Answer: 1|2" after the prompt, with or without hmm-reasoning."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    rng = random.Random(seed)
    texts = []
    for _ in range(256):
        messages = [{"role": "user", "content": rng.choice(prompts)}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        think = "hmm\n" * rng.randint(1, 5) if reasoning else "\n"
        texts.append(f"{prompt}{think}</think>\nAnswer: {rng.choice('12')}{tokenizer.eos_token}")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(80):
        i = step * 16 % 256
        batch = tokenizer(texts[i : i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def family(tmp_path_factory, pico_tokenizer):
    from copy import deepcopy

    from tokenizers.processors import TemplateProcessing

    tok = deepcopy(pico_tokenizer)
    tok.add_special_tokens({"bos_token": "<s>"})
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)]
    )
    tok.chat_template = R1
    root = tmp_path_factory.mktemp("qwen3-r1")
    task = root / "coin.jsonl"
    task.write_text("".join(json.dumps({"prompt": p, "answer": str(1 + i % 2)}) + "\n" for i, p in enumerate(PROMPTS)))  # fmt: skip
    long = _train_qwen3(root / "long", tok, PROMPTS, reasoning=True, seed=0)
    short = _train_qwen3(root / "short", tok, PROMPTS, reasoning=False, seed=1)
    return {"long": long, "short": short, "task": f"jsonl:{task}", "root": root}


def l2s(*args, timeout=300):
    r = subprocess.run(
        [*L2S, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _weights_moved(a, b) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and any(not wa[k].equal(wb[k]) for k in wa)


def test_sample_starts_inside_the_think_block_and_grades(family, tmp_path):
    out = tmp_path / "s.jsonl"
    l2s("sample", "--model", family["long"], "--task", family["task"], "--n", 4, "--limit", 8,
        "--max-tokens", 40, "--out", out)  # fmt: skip
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 32
    finished = [r for r in recs if r["finish_reason"] == "stop"]
    assert len(finished) >= 24, [r["completion"] for r in recs]
    # the template opened <think>: the model continues inside it, and its hmm lines are reasoning tokens
    # (a few-second model sampled at T=1 slips now and then, hence "most")
    assert not any(r["completion"].startswith("<think>") for r in recs)
    closed = [r for r in finished if "</think>" in r["completion"] and r["reasoning_tokens"] > 0]
    assert len(closed) >= 0.75 * len(finished), [r["completion"] for r in finished]
    assert all(r["reasoning_tokens"] == r["completion"].split("</think>")[0].count("hmm") * 4 for r in closed
               if set(r["completion"].split("</think>")[0].split()) == {"hmm"})  # fmt: skip
    assert 0 < sum(r["correct"] for r in finished) < len(finished)


def test_every_derive_method_and_eval_and_serve(family, tmp_path, serve_cli):
    long, short, task = family["long"], family["short"], family["task"]
    common = ["--task", task, "--limit", 20, "--n", 4, "--max-tokens", 40, "--batch-size", 8]
    l2s(
        "derive",
        "--method",
        "merge",
        "--long",
        long,
        "--short",
        short,
        "--alpha",
        0.5,
        "--out",
        tmp_path / "merge",
    )
    l2s(
        "derive", "--method", "shortest-rs", "--long", long, *common, "--epochs", 2, "--out", tmp_path / "srs"
    )
    l2s("derive", "--method", "dpo", "--long", long, "--samples", tmp_path / "srs.work" / "samples.jsonl",
        "--batch-size", 8, "--out", tmp_path / "dpo")  # fmt: skip
    rl_cfg = tmp_path / "rl.yaml"
    rl_cfg.write_text(f"task: {task}\nprompts_per_iteration: 4\nk: 4\nminibatch_prompts: 4\nsave_every: 1\n")
    l2s("derive", "--method", "rl", "--long", long, "--config", rl_cfg, "--iterations", 2, "--max-tokens", 40,
        "--out", tmp_path / "rl")  # fmt: skip
    for name in ("merge", "srs", "dpo", "rl"):
        out = tmp_path / name
        config = json.loads((out / "config.json").read_text())
        assert config["model_type"] == "qwen3", (name, config.get("model_type"))
        assert (out / "chat_template.jinja").read_text() == (long / "chat_template.jinja").read_text()
        assert _weights_moved(long, out), name

    models = ",".join(f"{n}={tmp_path / n}" for n in ("merge", "srs", "dpo", "rl"))
    l2s("eval", "--models", f"long={long},short={short},{models}", "--task", task, "--n", 20,
        "--max-tokens", 40, "--out", tmp_path / "eval")  # fmt: skip
    report = json.loads((tmp_path / "eval" / "report.json").read_text())["models"]
    assert set(report) == {"long", "short", "merge", "srs", "dpo", "rl"}
    assert report["long"]["mean_tokens"] > report["short"]["mean_tokens"]
    assert report["long"]["mean_reasoning_tokens"] > 0 and report["long"]["accuracy"] > 0

    _serve_one_request(serve_cli, long, short)


def _serve_one_request(serve_cli, long, short):
    import openai

    _, port = serve_cli("--long", long, "--short", short)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    r = client.chat.completions.create(
        model="l2s-long", messages=[{"role": "user", "content": "Pick 1 or 2 (round 3)."}],
        max_tokens=40, temperature=0, extra_body={"mode": "long"},
    )  # fmt: skip
    msg = r.choices[0].message
    # the reasoning the model wrote inside the think block the template opened is split off
    assert "hmm" in (msg.model_extra or {}).get("reasoning_content", ""), msg
    assert msg.content.strip().startswith("Answer:") and "</think>" not in msg.content
    assert r.usage.completion_tokens_details.reasoning_tokens > 0
