"""Shortest rejection sampling: selection of the shortest correct answer, a real SFT run on a pico model
that makes those answers more likely, resuming after a kill, and the one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from l2s.errors import UserError
from l2s.methods import shortest_rs
from l2s.methods.shortest_rs import ShortestRSConfig, run

LONG = "<think>\n{a} + {b} = {s}\nwait, check: {s} - {b} = {a}\n</think>\nAnswer: {s}"
SHORT = "<think>\n</think>\nAnswer: {s}"


def make_records(n_prompts: int = 6) -> list[dict]:
    """Sample records as l2s.sampling writes them: per prompt a long correct, a short correct, a wrong
    one and a short correct one cut off by max_tokens; the last prompt has no correct sample."""
    recs = []
    for p in range(n_prompts):
        a, b = 10 + p, 30 + p
        s = a + b
        rows = [
            (LONG.format(a=a, b=b, s=s), 24, True, "stop"),
            (SHORT.format(s=s), 6, True, "stop"),
            (SHORT.format(s=s + 1), 6, False, "stop"),
            (SHORT.format(s=s)[:-1], 5, True, "length"),
        ]
        if p == n_prompts - 1:
            rows = [(c, t, False, f) for c, t, _, f in rows]
        for i, (completion, tokens, correct, finish) in enumerate(rows):
            recs.append(
                dict(prompt_id=f"p{p}", sample_idx=i, prompt=f"Compute {a} + {b}. End with 'Answer: N'.",
                     completion=completion, completion_tokens=tokens, reasoning_tokens=0,
                     finish_reason=finish, correct=correct)
            )  # fmt: skip
    return recs


def write_samples(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def nll(model_path, records):
    """Mean per-token NLL of the completions under the model at `model_path` (chat template applied)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    losses = []
    for r in records:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": r["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(prompt + r["completion"] + tok.eos_token, add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ]
        labels = ids.clone()
        labels[:, : len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
        with torch.no_grad():
            losses.append(model(ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


def cfg_for(pico_ckpt, samples, out, **kw):
    base = dict(long=str(pico_ckpt), samples=str(samples), out=str(out), epochs=3, batch_size=4,
                learning_rate=3e-3, save_steps=2, max_length=128)  # fmt: skip
    return ShortestRSConfig(**{**base, **kw})


@pytest.mark.slow
def test_sft_on_shortest_correct_makes_them_likelier(pico_ckpt, tmp_path):
    from safetensors.torch import load_file

    records = make_records()
    samples = write_samples(tmp_path / "samples.jsonl", records)
    chosen = [r for r in records if r["sample_idx"] == 1 and r["correct"]]
    before = nll(pico_ckpt, chosen)

    out = run(cfg_for(pico_ckpt, samples, tmp_path / "srs"))

    prov = json.loads((out / "l2s.json").read_text())
    assert prov["method"] == "shortest-rs"
    m = prov["metrics"]
    assert (m["prompts"], m["prompts_with_correct"], m["prompts_without_correct"]) == (6, 5, 1)
    assert m["chosen_mean_tokens"] == 6  # the short correct answer, never the truncated 5-token one
    assert m["train_steps"] > 0
    # the weights changed, and the shortest correct answers became more likely
    w0, w1 = load_file(pico_ckpt / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not w0[k].equal(w1[k]) for k in w0)
    assert nll(out, chosen) < before - 0.5
    # tokenizer, chat template and generation config are the parent's, byte for byte
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (pico_ckpt / name).read_bytes()
    assert not (out / "training_args.bin").exists()  # no pickles in the checkpoint
    assert not (tmp_path / "srs.work" / "trainer").exists()


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(pico_ckpt, tmp_path, monkeypatch):
    import trl

    samples = write_samples(tmp_path / "samples.jsonl", make_records())
    cfg = cfg_for(pico_ckpt, samples, tmp_path / "srs", epochs=2, batch_size=2, save_steps=2)

    real_step, calls = trl.SFTTrainer.training_step, {"n": 0}

    def dies_at_step_4(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if killed after the step-2 checkpoint
        return real_step(self, *a, **kw)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert not (tmp_path / "srs").exists()  # nothing half-written at the output
    assert (tmp_path / "srs.work" / "trainer" / "checkpoint-2").is_dir()
    monkeypatch.setattr(trl.SFTTrainer, "training_step", real_step)

    # other settings cannot resume the unfinished run
    with pytest.raises(UserError, match="unfinished run with other settings \\(learning_rate\\)"):
        run(cfg.model_copy(update={"learning_rate": 1e-2}))

    resumed_from = []
    real_resume = shortest_rs.resume_point
    monkeypatch.setattr(
        shortest_rs, "resume_point", lambda *a: resumed_from.append(real_resume(*a)) or resumed_from[-1]
    )
    out = run(cfg)
    assert resumed_from[0].endswith("checkpoint-2")
    assert json.loads((out / "l2s.json").read_text())["metrics"]["train_steps"] == 6  # 5 rows / 2 x 2 epochs


def test_no_correct_sample_at_all_is_a_user_error(pico_ckpt, tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [dict(r, correct=False) for r in make_records()])
    with pytest.raises(UserError, match="no correct samples .*raise n or check the grader"):
        run(cfg_for(pico_ckpt, samples, tmp_path / "o"))


def test_samples_of_another_model_are_refused(pico_ckpt, tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", make_records())
    (tmp_path / "s.jsonl.meta.json").write_text(json.dumps({"model": str(tmp_path / "other")}))
    with pytest.raises(UserError, match="was sampled from"):
        run(cfg_for(pico_ckpt, samples, tmp_path / "o"))


def test_finished_only_never_imitates_a_truncated_sample():
    recs = shortest_rs.finished_only(make_records(1))
    assert [r["correct"] for r in recs] == [False, False, False, False]  # the last prompt has none
    recs = shortest_rs.finished_only(make_records(2))[:4]
    assert [r["correct"] for r in recs] == [True, True, False, False]


# --- through the CLI: exit 2, one line, no traceback --------------------------------------------


def derive(*args, timeout=180):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "derive", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(r, needle):
    """Exit 2 and one error line, no traceback. Progress bars of the sampling before it are not errors
    (tqdm draws them on stderr; the core does not switch them off for pipes)."""
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if not re.search(r"\d+%\|", ln)]
    assert len(lines) == 1 and lines[0].startswith("l2s derive: error:") and "Traceback" not in r.stderr, (
        r.stderr
    )
    assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_cli_samples_for_real_and_reports_no_correct_samples(pico_ckpt, tmp_path):
    """A random pico model answers nothing right: sampling runs through the core, then a clean error."""
    task = tmp_path / "task.jsonl"
    task.write_text(
        "".join(json.dumps({"prompt": f"Compute {i} + 1.", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    r = derive("--method", "shortest-rs", "--long", pico_ckpt, "--task", f"jsonl:{task}", "--n", "2",
               "--max-tokens", "8", "--out", tmp_path / "o")  # fmt: skip
    assert_one_line_error(r, "no correct samples")
    samples = (tmp_path / "o.work" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 6 and not (tmp_path / "o").exists()


def test_cli_missing_long_and_foreign_flags(tmp_path):
    assert_one_line_error(
        derive("--method", "shortest-rs", "--out", tmp_path / "o"), "shortest-rs needs --long"
    )
    r = derive("--method", "shortest-rs", "--long", "x", "--short", "y", "--out", tmp_path / "o")
    assert_one_line_error(r, "--short does not apply to --method shortest-rs")


def test_cli_existing_output_needs_force(pico_ckpt, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    r = derive("--method", "shortest-rs", "--long", pico_ckpt, "--out", tmp_path / "o")
    assert_one_line_error(r, "already exists; pass --force")


@pytest.mark.slow
def test_student_is_trained_instead_of_the_long_model(pico_ckpt, pico_tokenizer, tmp_path):
    """--student distils the long model's shortest answers into another model (DeepSeek-R1 style)."""
    from safetensors.torch import load_file

    from l2s.embedded.model import save_random_model

    student = save_random_model(tmp_path / "student", pico_tokenizer, seed=7)
    samples = write_samples(tmp_path / "samples.jsonl", make_records())
    out = run(cfg_for(pico_ckpt, samples, tmp_path / "srs", student=str(student), epochs=1))
    prov = json.loads((out / "l2s.json").read_text())
    assert set(prov["parents"]) == {"long", "student"}
    k = "model.layers.0.self_attn.q_proj.weight"
    trained, s0, l0 = (load_file(p / "model.safetensors")[k] for p in (out, student, pico_ckpt))
    assert not trained.equal(s0)
    assert (trained - s0).norm() < (trained - l0).norm()  # it moved from the student, not from long
