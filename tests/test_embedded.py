"""`l2s init`: the embedded family, built for real with the tiny preset (pico models, a few steps)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from l2s.checkpoint import read_provenance, validate_checkpoint
from l2s.embedded.build import MANIFEST, STAGES, init_family
from l2s.embedded.presets import PRESETS, get_preset
from l2s.errors import UserError

FAMILY = ("base", "short", "long-sft", "long")


def _init(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "init", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "family"
    run = _init("--preset", "tiny", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    return out, run


@pytest.mark.slow
def test_init_tiny_builds_a_loadable_family(tiny_family):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, run = tiny_family
    assert list(STAGES) == list(FAMILY)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["preset"] == "tiny" and set(manifest["stages"]) == set(FAMILY)
    assert not list(out.glob("*.work"))  # finished stages leave no Trainer checkpoints behind
    vocab = None
    for name in FAMILY:
        path = validate_checkpoint(out / name)
        prov = read_provenance(path)
        assert prov["method"] == {"base": "pretrain", "long": "rl"}.get(name, "sft")
        if name in ("short", "long-sft"):
            assert prov["parents"]["base"] == str(out / "base")
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        assert type(model).__name__ == "LlamaForCausalLM"
        assert model.config.head_dim >= 32
        vocab = vocab or tok.get_vocab()
        assert tok.get_vocab() == vocab  # one tokenizer shared by the family
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "Compute 12 + 5. End with 'Answer: N'."}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
        assert gen.shape[1] > ids["input_ids"].shape[1]
    assert "[4/4] long: done" in run.stdout
    # long is the full RL stage on long-sft, run by the same engine as `l2s rl`.
    prov = read_provenance(out / "long")
    assert prov["parents"]["init"] == str(out / "long-sft") and prov["config"]["length_penalty_weight"] == 0
    assert (out / "long" / "training_curve.png").is_file() and manifest["stages"]["long"]["metrics"][
        "iterations"
    ]


@pytest.mark.slow
def test_second_run_reuses_every_stage(tiny_family):
    out, _ = tiny_family
    before = {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in FAMILY}
    run = _init("--preset", "tiny", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    for name in FAMILY:
        assert f"{name}: reused" in run.stdout
    assert before == {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in FAMILY}
    # Same folder, other preset: refused (it would silently mix two families).
    other = _init("--preset", "default", "--out", str(out))
    assert other.returncode == 2 and "holds the 'tiny' family" in other.stderr


def test_a_family_built_with_older_preset_settings_names_what_changed(tiny_family, tmp_path):
    out = tmp_path / "family"
    out.mkdir()
    manifest = json.loads((tiny_family[0] / MANIFEST).read_text())
    del manifest["config"]["instruction_share"]  # as written before the preset had this field
    (out / MANIFEST).write_text(json.dumps(manifest))
    run = _init("--preset", "tiny", "--out", str(out))
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "built with other preset settings than this l2s's (instruction_share)" in run.stderr
    assert "pass --force to rebuild it" in run.stderr


@pytest.mark.slow
def test_killed_stage_leaves_nothing_half_written_and_resumes(tiny_family, tmp_path, monkeypatch, capsys):
    """Interrupt the short SFT right after its first Trainer checkpoint; the rerun resumes from it."""
    from transformers import Trainer

    out = tmp_path / "family"
    shutil.copytree(tiny_family[0], out)
    manifest = json.loads((out / MANIFEST).read_text())
    monkeypatch.setitem(PRESETS, "tiny", get_preset("tiny").model_copy(deep=True))
    PRESETS["tiny"].short.steps, PRESETS["tiny"].short.save_steps = 3, 1
    manifest["config"] = PRESETS["tiny"].model_dump()
    for name in ("short", "long-sft", "long"):
        del manifest["stages"][name]
        shutil.rmtree(out / name)
    (out / MANIFEST).write_text(json.dumps(manifest))

    original = Trainer._save_checkpoint

    def save_then_die(self, *a, **kw):
        original(self, *a, **kw)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-stage

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        init_family(out, preset="tiny")
    assert not (out / "short").exists()  # the stage was never renamed into place
    assert list((out / "short.work").glob("checkpoint-*"))  # OUT.work beside the stage's folder
    monkeypatch.setattr(Trainer, "_save_checkpoint", original)

    init_family(out, preset="tiny")
    printed = capsys.readouterr().out
    assert "base: reused" in printed and "resuming from" in printed
    for name in ("short", "long-sft", "long"):
        validate_checkpoint(out / name)


def test_out_that_is_not_an_l2s_cache_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run = _init("--preset", "tiny", "--out", str(tmp_path))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "is not an l2s cache" in run.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"  # untouched, even with --force
    assert _init("--preset", "tiny", "--out", str(tmp_path), "--force").returncode == 2


def test_unknown_preset_is_one_line(tmp_path):
    run = _init("--preset", "huge", "--out", str(tmp_path / "x"))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "unknown preset 'huge'; choose one of: default, tiny" in run.stderr
    assert not (tmp_path / "x").exists()


def test_presets_are_valid():
    from l2s.embedded.model import SIZES

    for name, preset in PRESETS.items():
        assert preset.name == name and preset.size in SIZES
        assert SIZES[preset.size]["hidden_size"] // SIZES[preset.size]["num_attention_heads"] >= 32
    with pytest.raises(UserError, match="unknown preset"):
        init_family("/nonexistent-l2s-test", preset="nope")


def test_long_stage_reuses_a_finished_rl_run_killed_before_its_move(tiny_family, tmp_path, monkeypatch):
    """A kill between RL's end and the move into the family must not rerun RL."""
    import l2s.rl.trainer
    from l2s.embedded.build import StageContext, build_long

    ctx = StageContext(tmp_path / "family", get_preset("tiny"))
    shutil.copytree(tiny_family[0] / "long-sft", ctx.path("long-sft"))
    finished = ctx.work_dir("long") / "out"
    shutil.copytree(tiny_family[0] / "long", finished)  # what a finished run_rl leaves there
    monkeypatch.setattr(l2s.rl.trainer, "run_rl", lambda cfg: pytest.fail("RL ran again"))
    dest = tmp_path / "dest"
    dest.mkdir()
    metrics = build_long(ctx, dest)
    validate_checkpoint(dest)
    assert metrics["iterations"] == 2
    assert not any(finished.iterdir())  # everything moved into dest


def test_decay_steps_selects_warmup_stable_decay(tmp_path):
    """`decay_steps` keeps the lr constant after warm-up and decays over the last N steps only."""
    import torch
    from transformers import TrainingArguments
    from transformers.optimization import get_scheduler

    from l2s.embedded.presets import TrainSpec
    from l2s.embedded.pretrain import training_args

    spec = TrainSpec(problems=1, steps=100, batch_size=1, lr=1.0, warmup_steps=10, decay_steps=20)
    args = TrainingArguments(**training_args(spec, tmp_path, seed=0))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = get_scheduler(
        args.lr_scheduler_type,
        opt,
        spec.warmup_steps,
        spec.steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert lrs[10:80] == [1.0] * 70 and lrs[99] < 0.05
    plain = TrainingArguments(
        **training_args(spec.model_copy(update={"decay_steps": None}), tmp_path, seed=0)
    )
    assert plain.lr_scheduler_type == "cosine"


def test_long_traces_follow_the_length_instructions_only_when_the_preset_says_so():
    from l2s.embedded.corpus import InstructionMix, sft_examples
    from l2s.grading import split_reasoning
    from l2s.tasks.arith import ArithTask

    problems = ArithTask().problems("train", 400)
    on = sft_examples(problems, "long", seed=0, mix=InstructionMix(share=1.0, length=0.5))
    off = sft_examples(problems, "long", seed=0, mix=InstructionMix(share=1.0, length=0.0))
    brief = limited = 0
    for p, ex in zip(problems, on, strict=True):
        said = " ".join(m["content"] for m in ex["prompt"])
        lines = split_reasoning(ex["completion"][0]["content"])[0].splitlines()
        chain = 1 + sum(p.prompt.count(c) for c in "+-")
        if "Be brief." in said:
            brief += 1
            assert len(lines) == chain, lines
        elif m := re.search(r"at most (\d+) lines", said):
            limited += 1
            assert len(lines) <= max(int(m.group(1)), chain)
    assert brief > 20 and limited > 20
    # Off: the same prompts' traces carry optional parts whatever the prompt says.
    assert any("Be brief." in " ".join(m["content"] for m in ex["prompt"])
               and "check:" in ex["completion"][0]["content"] for ex in off)  # fmt: skip
