"""Merge: mergekit's linear average checked against the parents' tensors, the task-vector methods, the
sweep layout, provenance, and the one-line errors for parents that cannot be merged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from l2s.errors import UserError
from l2s.methods.merge import MergeConfig, run


@pytest.fixture(scope="module")
def family(tmp_path_factory, pico_tokenizer):
    """long / short / base: random pico Llamas with one tokenizer and layout, different seeds."""
    from l2s.embedded.model import save_random_model

    root = tmp_path_factory.mktemp("family")
    return {name: save_random_model(root / name, pico_tokenizer, seed=seed) for name, seed in
            [("long", 1), ("short", 2), ("base", 3)]}  # fmt: skip


def tensors(path):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def derive(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "derive", "--method", "merge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("l2s derive: error:") and "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.slow
def test_linear_sweep_is_the_weighted_average_of_the_parents(family, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = run(
        MergeConfig(
            long=str(family["long"]),
            short=str(family["short"]),
            sweep=[0.0, 0.5, 1.0],
            out=str(tmp_path / "sw"),
        )
    )
    assert sorted(p.name for p in out.iterdir()) == ["alpha-0.00", "alpha-0.50", "alpha-1.00"]
    long, short = tensors(family["long"]), tensors(family["short"])
    for alpha in (0.0, 0.5, 1.0):
        merged = tensors(out / f"alpha-{alpha:.2f}")
        assert merged.keys() == long.keys()
        for k in long:
            torch.testing.assert_close(merged[k], alpha * long[k] + (1 - alpha) * short[k])
        prov = json.loads((out / f"alpha-{alpha:.2f}" / "l2s.json").read_text())
        assert prov["method"] == "merge" and prov["config"]["alpha"] == alpha
        assert prov["config"]["merge_method"] == "linear"
        assert set(prov["parents"]) == {"long", "short"}
    # the midpoint really differs from both parents
    mid = tensors(out / "alpha-0.50")["model.layers.0.mlp.up_proj.weight"]
    assert not torch.equal(mid, long["model.layers.0.mlp.up_proj.weight"])
    # transformers loads the merged folder unchanged, chat template and generation config included
    ckpt = out / "alpha-0.50"
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.apply_chat_template(
        [{"role": "user", "content": "1+1"}], tokenize=False, add_generation_prompt=True
    )
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert (ckpt / "generation_config.json").is_file()
    assert not list(tmp_path.glob(".sw.tmp-*"))  # the temp dir was renamed into place


@pytest.mark.slow
@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties"])
def test_task_vector_methods_run_with_a_base(family, tmp_path, method):
    import torch

    cfg = MergeConfig(
        long=str(family["long"]), short=str(family["short"]), base=str(family["base"]),
        merge_method=method, alpha=0.7, out=str(tmp_path / method),
    )  # fmt: skip
    out = run(cfg)
    merged, long, short, base = (tensors(p) for p in (out, family["long"], family["short"], family["base"]))
    k = "model.layers.1.self_attn.q_proj.weight"
    assert merged[k].shape == long[k].shape and torch.isfinite(merged[k]).all()
    if method == "task_arithmetic":  # base + 0.7 (long - base) + 0.3 (short - base)
        torch.testing.assert_close(
            merged[k], base[k] + 0.7 * (long[k] - base[k]) + 0.3 * (short[k] - base[k])
        )
    assert json.loads((out / "l2s.json").read_text())["parents"].keys() == {"long", "short", "base"}


def test_config_rejects_bad_alphas():
    with pytest.raises(ValueError, match="sweep values must be in"):
        MergeConfig(sweep=[0.1, 1.5])
    with pytest.raises(ValueError):
        MergeConfig(alpha=-0.1)
    with pytest.raises(ValueError, match="either alpha or sweep"):
        MergeConfig(alpha=0.5, sweep=[0.5])
    assert MergeConfig().alphas() == [0.5]


def test_task_arithmetic_without_base_is_a_user_error(family, tmp_path):
    cfg = MergeConfig(
        long=str(family["long"]), short=str(family["short"]), merge_method="ties", out=str(tmp_path / "o")
    )
    with pytest.raises(UserError, match="needs --base"):
        run(cfg)
    assert not (tmp_path / "o").exists()


# --- bad input through the CLI: exit 2, one line, no traceback ----------------------------------


@pytest.fixture(scope="module")
def misfits(tmp_path_factory, pico_tokenizer):
    """Checkpoints that cannot be merged with `family['long']`."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("misfits")
    other_tok = build_tokenizer(
        ["Sum 4 and 5. Answer: 9", "<think>\nx + y\n</think>\nAnswer: z"] * 8, vocab_size=300
    )
    qwen = Qwen2ForCausalLM(
        Qwen2Config(vocab_size=len(pico_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    )  # fmt: skip
    qwen.save_pretrained(root / "qwen")
    pico_tokenizer.save_pretrained(root / "qwen")
    GenerationConfig(eos_token_id=pico_tokenizer.eos_token_id).save_pretrained(root / "qwen")
    wide = dict(
        hidden_size=96,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=3,
    )
    return {
        "vocab": save_random_model(root / "vocab", other_tok, seed=4),
        "arch": root / "qwen",
        "shape": save_random_model(root / "shape", pico_tokenizer, size=wide, seed=5),
    }


@pytest.mark.parametrize(
    "misfit, needle",
    [
        ("arch", "different architectures"),
        ("vocab", "different tokenizers"),
        ("shape", "differ in tensor shape"),
    ],
)
def test_unmergeable_parents_are_named_in_one_line(family, misfits, tmp_path, misfit, needle):
    r = derive("--long", family["long"], "--short", misfits[misfit], "--out", tmp_path / "o")
    assert_one_line_error(r, needle, "--long and --short")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "merge needs --short"),
        (["--short", "{short}", "--sweep", "0.1,1.5"], "sweep values must be in [0, 1]"),
        (["--short", "{short}", "--sweep", "0.1,abc"], "comma-separated numbers"),
        (["--short", "{short}", "--alpha", "2"], "alpha"),
        (["--short", "{short}", "--merge-method", "dare_ties"], "needs --base"),
        (["--short", "{short}", "--beta", "0.1"], "--beta does not apply to --method merge"),
    ],
)
def test_bad_merge_arguments_are_one_line_errors(family, tmp_path, args, needle):
    args = [a.format(short=family["short"]) for a in args]
    r = derive("--long", family["long"], *args, "--out", tmp_path / "o")
    assert_one_line_error(r, needle)


def test_existing_output_needs_force(family, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = derive("--long", family["long"], "--short", family["short"], "--out", out)
    assert_one_line_error(r, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"
    run(
        MergeConfig(
            long=str(family["long"]), short=str(family["short"]), alpha=0.25, out=str(out), force=True
        )
    )
    assert not (out / "keep.txt").exists()
    assert json.loads((out / "l2s.json").read_text())["config"]["alpha"] == 0.25


@pytest.mark.slow
def test_yaml_sweep_and_flag_alpha(family, tmp_path):
    """defaults < YAML < flags: the YAML's sweep runs as is; --alpha on the command line replaces it."""
    from l2s.cli import main

    yml = tmp_path / "merge.yaml"
    yml.write_text(f"long: {family['long']}\nshort: {family['short']}\nsweep: [0.2, 0.8]\n")
    assert main(["derive", "--method", "merge", "--config", str(yml), "--out", str(tmp_path / "sw")]) == 0
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["alpha-0.20", "alpha-0.80"]
    assert (
        main(
            [
                "derive",
                "--method",
                "merge",
                "--config",
                str(yml),
                "--alpha",
                "0.3",
                "--out",
                str(tmp_path / "one"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "one" / "l2s.json").read_text())["config"]["alpha"] == 0.3
    assert (
        main(
            [
                "derive",
                "--method",
                "merge",
                "--config",
                str(yml),
                "--alpha",
                "0.3",
                "--sweep",
                "0.1",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
