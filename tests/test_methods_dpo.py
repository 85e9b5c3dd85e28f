"""DPO: pairs by the 1.5x rule, a real DPOTrainer run on a pico model that prefers the chosen answers
more than before, and the one-line errors."""

from __future__ import annotations

import json

import pytest
from test_methods_shortest_rs import assert_one_line_error as one_line
from test_methods_shortest_rs import derive, make_records, nll, write_samples

from l2s.errors import UserError
from l2s.methods.dpo import DPOMethodConfig, run


def cfg_for(pico_ckpt, samples, out, **kw):
    base = dict(long=str(pico_ckpt), samples=str(samples), out=str(out), epochs=3, batch_size=4,
                learning_rate=3e-3, beta=0.1, save_steps=50, max_length=128)  # fmt: skip
    return DPOMethodConfig(**{**base, **kw})


@pytest.mark.slow
def test_dpo_prefers_the_shortest_correct_over_wrong_and_long_answers(pico_ckpt, tmp_path):
    from safetensors.torch import load_file

    from l2s.selection import preference_pairs

    records = make_records()
    samples = write_samples(tmp_path / "samples.jsonl", records)
    pairs = preference_pairs([r for r in records if r["finish_reason"] == "stop"], ratio=1.5)
    chosen = [dict(prompt=p["prompt"], completion=p["chosen"]) for p in pairs]
    rejected = [dict(prompt=p["prompt"], completion=p["rejected"]) for p in pairs]
    margin_before = nll(pico_ckpt, rejected) - nll(pico_ckpt, chosen)

    out = run(cfg_for(pico_ckpt, samples, tmp_path / "dpo", epochs=2))

    m = json.loads((out / "l2s.json").read_text())["metrics"]
    # 5 prompts with a correct answer; each rejects the long correct one (24 >= 1.5 x 6), the wrong one
    # and the truncated one (not finished, so not correct); the last prompt has no chosen answer.
    assert (m["pairs"], m["rejected_long_correct"], m["rejected_wrong"]) == (15, 5, 10)
    assert (m["prompts_with_pairs"], m["prompts_without_correct"]) == (5, 1)
    w0, w1 = load_file(pico_ckpt / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not w0[k].equal(w1[k]) for k in w0)
    assert nll(out, rejected) - nll(out, chosen) > margin_before + 0.1
    assert (out / "chat_template.jinja").read_bytes() == (pico_ckpt / "chat_template.jinja").read_bytes()


@pytest.mark.slow
def test_max_pairs_per_prompt_and_loss_type_reach_trl(pico_ckpt, tmp_path, monkeypatch):
    import trl

    seen, trainer = [], trl.DPOTrainer

    def recording(*args, **kwargs):
        seen.append((list(kwargs["args"].loss_type), kwargs["args"].loss_weights))
        return trainer(*args, **kwargs)

    monkeypatch.setattr(trl, "DPOTrainer", recording)
    samples = write_samples(tmp_path / "samples.jsonl", make_records())
    out = run(
        cfg_for(
            pico_ckpt, samples, tmp_path / "dpo", max_pairs_per_prompt=1, loss_type="ipo,sft",
            loss_weights=[1.0, 20.0], epochs=1,
        )
    )  # fmt: skip
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["metrics"]["pairs"] == 5 and prov["config"]["loss_type"] == "ipo,sft"
    assert seen == [(["ipo", "sft"], [1.0, 20.0])]


def test_config_checks_loss_type_and_ratio():
    with pytest.raises(ValueError, match="unknown DPO loss type 'nope'"):
        DPOMethodConfig(loss_type="sigmoid,nope")
    with pytest.raises(ValueError):
        DPOMethodConfig(ratio=0.9)
    assert DPOMethodConfig(loss_type="sigmoid,sft").loss_type == "sigmoid,sft"
    with pytest.raises(ValueError, match="--loss-weights has 1 values for 2 loss type"):
        DPOMethodConfig(loss_type="sigmoid,sft", loss_weights=[1.0])


def test_no_pairs_and_no_correct_samples_are_user_errors(pico_ckpt, tmp_path):
    recs = make_records()
    none_correct = write_samples(tmp_path / "a.jsonl", [dict(r, correct=False) for r in recs])
    with pytest.raises(UserError, match="no correct samples.*raise n or check the grader"):
        run(cfg_for(pico_ckpt, none_correct, tmp_path / "o"))
    all_short_correct = write_samples(
        tmp_path / "b.jsonl", [dict(r, correct=True, finish_reason="stop", completion_tokens=6) for r in recs]
    )
    with pytest.raises(UserError, match="no preference pairs"):
        run(cfg_for(pico_ckpt, all_short_correct, tmp_path / "o"))


def test_cli_bad_dpo_arguments(pico_ckpt, tmp_path):
    one_line(
        derive("--method", "dpo", "--long", pico_ckpt, "--loss-type", "nope", "--out", tmp_path / "o"),
        "unknown DPO loss type",
    )
    one_line(
        derive("--method", "dpo", "--long", pico_ckpt, "--student", "x", "--out", tmp_path / "o"),
        "--student does not apply",
    )
