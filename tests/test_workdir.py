"""l2s.workdir: one work-dir layout, one weights fingerprint, one settings guard for every long job."""

import json
import os
import shutil
from pathlib import Path

import pytest

from l2s.errors import UserError
from l2s.workdir import (
    SETTINGS_FILE,
    check_same_settings,
    discard,
    resume_or_start,
    weights_fingerprint,
    work_dir,
)


def test_every_job_keeps_its_work_beside_its_output(tmp_path):
    from l2s.embedded.build import StageContext
    from l2s.embedded.presets import get_preset
    from l2s.rl import run_state

    out = tmp_path / "runs" / "srs"
    assert work_dir(out) == tmp_path / "runs" / "srs.work"
    assert work_dir(str(out)) == work_dir(out)
    assert work_dir("~/x") == Path.home() / "x.work"
    assert run_state.work_dir(tmp_path / "rl") == tmp_path / "rl.work"
    family = StageContext(tmp_path / "family", get_preset("tiny"))
    assert family.work_dir("long-sft") == tmp_path / "family" / "long-sft.work"


def _weights(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(bytes(64))
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    return folder


def _touch(file: Path, seconds_later: float) -> None:
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds_later * 1e9)))


def test_the_weights_fingerprint_changes_when_the_weights_are_written_again(tmp_path):
    ckpt = _weights(tmp_path / "ckpt")
    first = weights_fingerprint(ckpt)
    assert first is not None and len(first) == 16 and weights_fingerprint(ckpt) == first
    assert weights_fingerprint(str(ckpt)) == first
    # the same bytes written again (a retrained model of the same size): a new fingerprint, even within
    # the second, as modification times count in nanoseconds
    _touch(ckpt / "model.safetensors", 1e-6)
    second = weights_fingerprint(ckpt)
    assert second != first
    (ckpt / "model.safetensors").write_bytes(bytes(65))
    assert weights_fingerprint(ckpt) not in (first, second)
    # pickled weights count too; config and tokenizer edits do not
    third = weights_fingerprint(ckpt)
    (ckpt / "pytorch_model.bin").write_bytes(bytes(8))
    assert weights_fingerprint(ckpt) != third
    fourth = weights_fingerprint(ckpt)
    _touch(ckpt / "config.json", 5)
    (ckpt / "tokenizer_config.json").write_text("{}")
    assert weights_fingerprint(ckpt) == fourth
    # a folder without weights, or no folder, has none
    assert weights_fingerprint(tmp_path) is None
    assert weights_fingerprint(tmp_path / "missing") is None


def test_the_settings_guard_resumes_the_same_run_and_refuses_another(tmp_path):
    state = work_dir(tmp_path / "out") / "trainer"
    settings = {"epochs": 2.0, "long": tmp_path / "long", "engine_options": {"dtype": "bf16"}}
    assert resume_or_start(state, settings) is False  # fresh: the folder is made, the settings saved
    assert json.loads((state / SETTINGS_FILE).read_text())["long"] == str(tmp_path / "long")
    assert resume_or_start(state, dict(settings)) is True  # a rerun with the same settings resumes
    other = {**settings, "epochs": 3.0, "engine_options": {"dtype": "fp32"}}
    with pytest.raises(UserError) as e:
        resume_or_start(state, other)
    assert str(e.value) == (
        f"{state} holds an unfinished run with other settings (engine_options.dtype, epochs); "
        "rerun it unchanged to resume, or pass --force to discard it"
    )
    assert json.loads((state / SETTINGS_FILE).read_text())["epochs"] == 2.0  # refused: nothing changed
    # --force discards the work dir; the run then starts fresh with its own settings
    discard(work_dir(tmp_path / "out"))
    assert not work_dir(tmp_path / "out").exists()
    discard(work_dir(tmp_path / "out"))  # nothing there: nothing to do
    assert resume_or_start(state, other) is False and resume_or_start(state, other) is True


def test_a_corrupted_settings_file_is_one_line(tmp_path):
    state = tmp_path / "out.work" / "trainer"
    state.mkdir(parents=True)
    (state / SETTINGS_FILE).write_text('{"epochs": 2')
    with pytest.raises(UserError, match=r"corrupted; pass --force"):
        resume_or_start(state, {"epochs": 2})


def test_a_setting_added_later_with_no_value_does_not_block_a_resume():
    check_same_settings("out.work", {"epochs": 2}, {"epochs": 2, "budget_min": None})
    with pytest.raises(UserError, match=r"other settings \(budget_min\)"):
        check_same_settings("out.work", {"epochs": 2}, {"epochs": 2, "budget_min": 64})


def test_rl_uses_the_same_guard_and_fingerprint(tmp_path, pico_ckpt):
    from l2s.rl.config import RLConfig
    from l2s.rl.run_state import _resume_state, run_fingerprint

    cfg = RLConfig(init=str(pico_ckpt), out=str(tmp_path / "out"), tau=0.1)
    assert run_fingerprint(cfg, Path(pico_ckpt))["init_weights"] == weights_fingerprint(pico_ckpt)
    work = work_dir(tmp_path / "out")
    shutil.copytree(pico_ckpt, work / "checkpoint")
    state = {"iteration": 3, "fingerprint": run_fingerprint(cfg, Path(pico_ckpt))}
    (work / "checkpoint" / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(UserError) as e:
        _resume_state(cfg.model_copy(update={"tau": 0.2}), Path(pico_ckpt), work)
    assert str(e.value) == (
        f"{work} holds an unfinished run with other settings (config.tau); "
        "rerun it unchanged to resume, or pass --force to discard it"
    )
