import json

import pytest

from l2s.checkpoint import (
    atomic_dir,
    atomic_write_text,
    ensure_writable,
    read_provenance,
    validate_checkpoint,
    write_provenance,
)
from l2s.errors import UserError


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_valid_checkpoint_and_provenance(pico_ckpt, tmp_path):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    assert validate_checkpoint(ck) == ck
    write_provenance(ck, method="merge", parents={"long": "/a"}, config={"alpha": 0.5})
    prov = read_provenance(ck)
    assert prov["method"] == "merge" and prov["parents"] == {"long": "/a"} and prov["config"]["alpha"] == 0.5


def test_missing_tokenizer(pico_ckpt, tmp_path):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    (ck / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer"):
        validate_checkpoint(ck)


def test_missing_chat_template(pico_ckpt, tmp_path):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    (ck / "chat_template.jinja").unlink()
    cfg = json.loads((ck / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (ck / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="no chat template"):
        validate_checkpoint(ck)
    assert validate_checkpoint(ck, need_chat_template=False) == ck


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_safetensors(pico_ckpt, tmp_path, damage):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    w = ck / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    with pytest.raises(UserError, match="corrupted") as e:
        validate_checkpoint(ck)
    assert "\n" not in str(e.value)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        validate_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json is missing"):
        validate_checkpoint(tmp_path / "empty")


def test_atomic_dir_commits_on_success_and_cleans_on_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(UserError, match="already exists"), atomic_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_dir(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left behind
    assert (out / "a.txt").read_text() == "1"
    with atomic_dir(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_atomic_write_text_and_ensure_writable(tmp_path):
    f = tmp_path / "x" / "f.json"
    atomic_write_text(f, "{}")
    assert f.read_text() == "{}"
    with pytest.raises(UserError):
        ensure_writable(f)
    assert ensure_writable(f, force=True) == f
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ensure_writable(empty) == empty
