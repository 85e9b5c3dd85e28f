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


@pytest.fixture(autouse=True)
def _hub_env_restored(monkeypatch):
    """run() sets HF_HUB_OFFLINE=1 for its process; the test session gets its own value back after each test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


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


# --- tokenizers: R1-style special tokens at the same ids, other vocabulary sizes, no hub -----------

# DeepSeek-R1-Distill-Qwen keeps Qwen2.5's vocabulary but puts its own special tokens at Qwen's special
# ids; the sibling below does the same to the pico tokenizer (4 ids renamed) and ships R1's template.
R1_NAMES = {
    "<|endoftext|>": "<｜begin▁of▁sentence｜>",
    "<|im_start|>": "<｜User｜>",
    "<|im_end|>": "<｜end▁of▁sentence｜>",
    "<|pad|>": "<｜Assistant｜>",
}
R1_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}{%- if m['role'] == 'user' %}{{- '<｜User｜>' + m['content'] }}"
    "{%- else %}{{- '<｜Assistant｜>' + m['content'] + '<｜end▁of▁sentence｜>' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def siblings(tmp_path_factory, pico_tokenizer):
    """r1: the pico layout with R1's special tokens and template; wide: the pico vocabulary plus 3 tokens."""
    from copy import deepcopy

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from l2s.embedded.model import save_random_model

    text = pico_tokenizer.backend_tokenizer.to_str()
    for old, new in R1_NAMES.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    r1 = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(text), bos_token="<｜begin▁of▁sentence｜>",
        eos_token="<｜end▁of▁sentence｜>", pad_token="<｜end▁of▁sentence｜>", clean_up_tokenization_spaces=False,
    )  # fmt: skip
    r1.chat_template = R1_TEMPLATE
    assert len(r1) == len(pico_tokenizer) and r1.convert_tokens_to_ids("<｜User｜>") == 1
    wide = deepcopy(pico_tokenizer)
    wide.add_tokens(["<tool_call>", "</tool_call>", "<|fim_prefix|>"], special_tokens=True)
    root = tmp_path_factory.mktemp("siblings")
    return {
        "r1": save_random_model(root / "r1", r1, seed=7),
        "wide": save_random_model(root / "wide", wide, seed=8),
    }


def vocab(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)


def assert_loads_and_generates(ckpt, template_ends: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "1+1"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith(template_ends), prompt
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4 and int(out.max()) < model.config.vocab_size
    assert torch.isfinite(model(out).logits).all()
    return tok


@pytest.mark.slow
@pytest.mark.parametrize("source", ["long", "short", "base"])
@pytest.mark.parametrize("r1_is", ["short", "long"])
def test_r1_style_sibling_merges_by_id_with_the_chosen_tokenizer(
    family, siblings, tmp_path, capsys, source, r1_is
):
    import torch

    parents = {"long": family["long"], "short": siblings["r1"]}
    if r1_is == "long":
        parents = {"long": siblings["r1"], "short": family["long"]}
    parents["base"] = family["base"]  # the pico tokenizer and ChatML template
    out = run(
        MergeConfig(
            **{k: str(v) for k, v in parents.items()}, tokenizer_source=source, out=str(tmp_path / "m")
        )
    )

    chosen = parents[source]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tokenizer"))
    assert line.startswith(f"tokenizer and chat template from --{source} (4 of 326 token strings differ"), (
        line
    )
    assert ("0 of 326" in line) == (source == "base" and r1_is == "short"), line  # base vs a pico long
    assert vocab(out) == vocab(chosen)
    assert (out / "chat_template.jinja").read_text() == (chosen / "chat_template.jinja").read_text()
    for f in ("generation_config.json", "tokenizer_config.json"):
        assert json.loads((out / f).read_text()) == json.loads((chosen / f).read_text()), f
    # config.json is long's (the architecture), with the chosen tokenizer's token ids (pico pads with 3, r1 with 2)
    config, own = (json.loads((p / "config.json").read_text()) for p in (out, chosen))
    assert config["pad_token_id"] == own["pad_token_id"] and config["eos_token_id"] == own["eos_token_id"]
    # the weights are averaged id by id: the renamed special tokens' rows included
    merged, long, short = (tensors(p) for p in (out, parents["long"], parents["short"]))
    for k in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.down_proj.weight"):
        torch.testing.assert_close(merged[k], 0.5 * long[k] + 0.5 * short[k])
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["config"]["tokenizer_source"] == source and prov["metrics"]["tokenizer_from"] == source
    assert prov["metrics"]["token_strings_differ_from_long"]["short"] == 4
    assert set(prov["parents"]) == ({"long", "short", "base"} if source == "base" else {"long", "short"})
    r1_side = chosen == siblings["r1"]
    tok = assert_loads_and_generates(
        out, "<｜Assistant｜><think>\n" if r1_side else "<|im_start|>assistant\n"
    )
    assert tok.eos_token == ("<｜end▁of▁sentence｜>" if r1_side else "<|im_end|>")


def test_tokenizer_source_base_needs_base(family, siblings, tmp_path):
    r = derive("--long", family["long"], "--short", siblings["r1"], "--tokenizer-source", "base",
               "--out", tmp_path / "o")  # fmt: skip
    assert_one_line_error(r, "--tokenizer-source base needs --base")
    assert not (tmp_path / "o").exists()


def test_other_vocabulary_sizes_need_union(family, siblings, misfits, tmp_path):
    for short in (siblings["wide"], misfits["vocab"]):
        r = derive("--long", family["long"], "--short", short, "--out", tmp_path / "o")
        assert_one_line_error(r, "different tokenizers (vocabulary sizes 326 vs", "--tokenizer-source union")
    assert not (tmp_path / "o").exists()


def test_same_size_but_other_regular_tokens_need_union(family, tmp_path):
    """One size, but ordinary tokens differ too: not one vocabulary with renamed special tokens."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(family["short"], other)
    data = json.loads((other / "tokenizer.json").read_text())
    a, b = sorted(t for t in data["model"]["vocab"] if t.isalpha() and len(t) > 1)[:2]
    v = data["model"]["vocab"]
    v[a], v[b] = v[b], v[a]
    (other / "tokenizer.json").write_text(json.dumps(data))
    r = derive("--long", family["long"], "--short", other, "--out", tmp_path / "o")
    assert_one_line_error(
        r, "2 of 326 token strings differ, not only special tokens", "--tokenizer-source union"
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["linear", "task_arithmetic"])
def test_union_merges_other_vocabulary_sizes(family, siblings, tmp_path, capsys, method):
    """mergekit's union vocabulary, built on long's tokenizer (on --base's for the task-vector methods):
    its 326 tokens keep their ids, wide's 3 new ones are appended with wide's embedding rows (the only
    parent that has them), and the result loads and generates."""
    import torch

    long, wide, base = family["long"], siblings["wide"], family["base"]
    cfg = MergeConfig(long=str(long), short=str(wide), base=str(base), merge_method=method, alpha=0.3,
                      tokenizer_source="union", out=str(tmp_path / "u"))  # fmt: skip
    out = run(cfg)
    side = "long" if method == "linear" else "base"
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tokenizer"))
    assert f"union vocabulary, built on --{side}'s" in line and "(326 vs 329 tokens)" in line, line
    v_out, v_long, v_wide = vocab(out), vocab(long), vocab(wide)
    assert len(v_out) == 329 and all(v_out[t] == i for t, i in v_long.items())
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 329
    assert (out / "chat_template.jinja").read_text() == (long / "chat_template.jinja").read_text()
    assert json.loads((out / "generation_config.json").read_text()) == json.loads(
        (long / "generation_config.json").read_text()
    )
    merged, a, b, c = tensors(out), tensors(long), tensors(wide), tensors(base)
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        assert merged[k].shape[0] == 329
        expected = 0.3 * a[k] + 0.7 * b[k][:326]
        if method == "task_arithmetic":
            expected = c[k] + 0.3 * (a[k] - c[k]) + 0.7 * (b[k][:326] - c[k])
        torch.testing.assert_close(merged[k][:326], expected)
        torch.testing.assert_close(merged[k][v_out["<tool_call>"]], b[k][v_wide["<tool_call>"]])
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["config"]["tokenizer_source"] == "union" and prov["metrics"]["merged_vocab_size"] == 329
    assert prov["metrics"]["tokenizer_from"] == f"union on {side}"
    assert_loads_and_generates(out, "<|im_start|>assistant\n")


@pytest.mark.slow
def test_config_json_is_long_s_whatever_order_mergekit_lists_the_models(family, tmp_path):
    """mergekit takes config.json from the first model of an unordered set; l2s pins it to long's
    (R1-distill and Qwen2.5 differ in context length and rope). Six differently named parent pairs: a
    random pick would give short's config in at least one of them with probability 63/64."""
    import shutil

    for i in range(6):
        long, short = shutil.copytree(family["long"], tmp_path / f"long{i}"), tmp_path / f"short{i}"
        shutil.copytree(family["short"], short)
        config = json.loads((short / "config.json").read_text())
        (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
        out = run(MergeConfig(long=str(long), short=str(short), out=str(tmp_path / f"m{i}")))
        assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 1024


@pytest.mark.slow
def test_relative_paths_never_reach_the_hub(family, siblings, tmp_path, monkeypatch, capsys):
    """`--short sib` is a folder in the cwd, not a hub repo id: with every hub call failing, it merges."""
    import importlib
    import importlib.util

    import huggingface_hub

    from l2s.cli import main

    def no_hub(*args, **kwargs):
        raise AssertionError("merge asked the Hugging Face Hub")

    for name in ("repo_exists", "list_repo_files", "snapshot_download", "hf_hub_download", "model_info",
                 "file_exists", "get_session"):  # fmt: skip
        monkeypatch.setattr(huggingface_hub, name, no_hub, raising=False)
    for client in ("httpx", "httpx2"):  # the HTTP clients huggingface_hub has used: any request fails
        if importlib.util.find_spec(client):
            monkeypatch.setattr(importlib.import_module(client).Client, "send", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "long").symlink_to(family["long"])
    (tmp_path / "sib").symlink_to(siblings["r1"])
    args = ["derive", "--method", "merge", "--long", "long", "--short", "sib", "--out", "m1"]
    assert main([*args, "--tokenizer-source", "short"]) == 0
    assert vocab(tmp_path / "m1") == vocab(siblings["r1"])
    prov = json.loads((tmp_path / "m1" / "l2s.json").read_text())
    assert prov["parents"] == {"long": str(family["long"].resolve()), "short": str(siblings["r1"].resolve())}
    assert "tokenizer and chat template from --short (4 of 326" in capsys.readouterr().out
    assert not (tmp_path / "m1" / "README.md").exists()  # no mergekit model card (it looks models up)
