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
    with pytest.raises(UserError, match="has no config.json: not a Hugging Face checkpoint folder"):
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


# ---- torn checkpoints: what a kill -9 mid-save leaves ------------------------------------------------


@pytest.fixture(scope="module")
def trainer_ckpt(tmp_path_factory, pico_ckpt):
    """checkpoint-2 as transformers' Trainer writes it (weights, optimizer, scheduler, rng state, trainer
    state, training args, config and tokenizer files), from two real steps on the pico model."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    out = tmp_path_factory.mktemp("trainer")
    args = TrainingArguments(
        output_dir=str(out), max_steps=2, save_steps=2, per_device_train_batch_size=2, use_cpu=True,
        report_to="none", save_strategy="steps", disable_tqdm=True,
    )  # fmt: skip
    rows = Dataset.from_list([{"input_ids": [1, 5, 6, 7], "labels": [1, 5, 6, 7]}] * 4)
    model = AutoModelForCausalLM.from_pretrained(pico_ckpt)
    tokenizer = AutoTokenizer.from_pretrained(pico_ckpt)
    Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer).train()
    return out / "checkpoint-2"


def _cuts(data: bytes, name: str) -> list[int]:
    """Byte offsets to cut a file at: inside its header, through its data, its last byte."""
    size = len(data)
    if name.endswith(".json"):
        size = len(data.rstrip())  # a JSON file without its final newline is still whole
    cuts = {
        0,
        1,
        4,
        7,
        8,
        9,
        20,
        100,
        size // 3,
        size // 2,
        size - 100,
        size - 23,
        size - 22,
        size - 2,
        size - 1,
    }
    if name.endswith(".safetensors"):
        header = 8 + int.from_bytes(data[:8], "little")
        cuts |= {header // 2, header - 1, header, header + 1}
    cuts |= set(range(0, size, max(1, size // 40)))
    return sorted(c for c in cuts if 0 <= c < size)


STATE_FILES = (
    "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
    "training_args.bin", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
)  # fmt: skip


def test_a_checkpoint_the_trainer_wrote_is_complete(trainer_ckpt):
    from l2s.checkpoint import checkpoint_is_complete

    assert {p.name for p in trainer_ckpt.iterdir()} >= set(STATE_FILES)
    assert checkpoint_is_complete(trainer_ckpt) == (True, "")


@pytest.mark.parametrize("name", STATE_FILES)
def test_every_file_cut_at_any_offset_makes_the_checkpoint_torn(trainer_ckpt, tmp_path, name):
    """As a kill -9 leaves a file mid-write: every prefix of every file the Trainer wrote is caught
    from the headers alone, and the reason names the file."""
    from l2s.checkpoint import checkpoint_is_complete

    ck = _copy(trainer_ckpt, tmp_path / "checkpoint-2")
    whole = (ck / name).read_bytes()
    cuts = _cuts(whole, name)
    assert len(cuts) >= 20
    for cut in cuts:
        (ck / name).write_bytes(whole[:cut])
        complete, why = checkpoint_is_complete(ck)
        assert not complete and name in why, (cut, why)
    (ck / name).write_bytes(whole)
    assert checkpoint_is_complete(ck) == (True, "")


@pytest.mark.parametrize(
    "name", ["trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "config.json"]
)
def test_a_missing_file_the_resume_reads_makes_the_checkpoint_torn(trainer_ckpt, tmp_path, name):
    """The Trainer's rotation deletes old checkpoints file by file, in any order; a kill can stop it halfway."""
    from l2s.checkpoint import checkpoint_is_complete

    ck = _copy(trainer_ckpt, tmp_path / "checkpoint-2")
    (ck / name).unlink()
    complete, why = checkpoint_is_complete(ck)
    assert not complete and why.startswith("no ") and name.split(".")[0] in why, why


def test_sharded_weights_need_every_shard_whole(trainer_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    from l2s.checkpoint import checkpoint_is_complete

    ck = _copy(trainer_ckpt, tmp_path / "checkpoint-2")
    tensors = load_file(ck / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k].contiguous() for k in keys}, ck / shard)
    (ck / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (ck / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_is_complete(ck) == (True, "")
    second = ck / "model-00002-of-00002.safetensors"
    data = second.read_bytes()
    second.write_bytes(data[: len(data) - 10])
    assert checkpoint_is_complete(ck) == (
        False,
        f"{second.name} holds {len(data) - 10} of its {len(data)} bytes",
    )
    second.unlink()
    complete, why = checkpoint_is_complete(ck)
    assert not complete and "names model-00002-of-00002.safetensors, which is not there" in why


def test_resume_skips_torn_checkpoints_with_one_line_each(trainer_ckpt, tmp_path, capsys):
    from l2s.checkpoint import last_complete_checkpoint

    runs = tmp_path / "trainer"
    for step in (2, 4, 6, 8):
        _copy(trainer_ckpt, runs / f"checkpoint-{step}")
    (runs / "checkpoint-8" / "optimizer.pt").write_bytes(b"PK\x03\x04")  # cut inside its first record
    (runs / "checkpoint-6" / "trainer_state.json").write_text("")  # killed as it was written
    (runs / "checkpoint-2" / "model.safetensors").unlink()  # rotation stopped halfway
    assert last_complete_checkpoint(runs) == str(runs / "checkpoint-4")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert f"checkpoint {runs / 'checkpoint-8'} (optimizer.pt is cut short" in lines[0]
    assert lines[0].endswith("; resuming from checkpoint-4")
    assert f"{runs / 'checkpoint-6'} (trainer_state.json is cut short or not valid JSON)" in lines[1]
    assert f"{runs / 'checkpoint-2'} (no *.safetensors" in lines[2] and lines[2].endswith("; removed")
    assert sorted(p.name for p in runs.iterdir()) == ["checkpoint-4"]  # the Trainer never sees them
    assert last_complete_checkpoint(runs) == str(runs / "checkpoint-4")
    assert capsys.readouterr().err == ""

    (runs / "checkpoint-4" / "rng_state.pth").write_bytes(b"")
    assert last_complete_checkpoint(runs) is None
    assert capsys.readouterr().err.strip().endswith("; starting over")
    assert last_complete_checkpoint(tmp_path / "never-made") is None


@pytest.mark.parametrize("cut", ["header", "data", "last byte"])
def test_validate_checkpoint_checks_sizes_before_mapping_the_weights(pico_ckpt, tmp_path, cut):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    w = ck / "model.safetensors"
    data = w.read_bytes()
    at = {
        "header": 8 + int.from_bytes(data[:8], "little") // 2,
        "data": len(data) // 2,
        "last byte": len(data) - 1,
    }
    w.write_bytes(data[: at[cut]])
    with pytest.raises(UserError, match="model.safetensors are corrupted .*re-create the checkpoint") as e:
        validate_checkpoint(ck)
    assert "\n" not in str(e.value)


def test_a_gguf_file_gets_the_command_that_converts_it(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "model.Q8_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    import numpy as np

    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError) as e:
        validate_checkpoint(path)
    assert str(e.value) == (
        f"{path} is a GGUF file; convert it with `l2s convert-gguf {path} --out DIR` (needs the gguf package)"
    )
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UserError, match="is a file, not a checkpoint folder"):
        validate_checkpoint(other)


def test_a_folder_without_config_json_says_what_it_is_not(pico_ckpt, tmp_path):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    (ck / "config.json").unlink()
    with pytest.raises(UserError) as e:
        validate_checkpoint(ck)
    assert str(e.value) == (
        f"{ck} has no config.json: not a Hugging Face checkpoint folder "
        "(a GGUF file converts with `l2s convert-gguf FILE --out DIR`)"
    )


def test_an_index_naming_a_missing_shard_is_refused(pico_ckpt, tmp_path):
    ck = _copy(pico_ckpt, tmp_path / "ck")
    (ck / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(UserError, match="names model-00002-of-00002.safetensors, which is missing"):
        validate_checkpoint(ck)


def test_tensor_shapes_match_what_safetensors_reads_across_shards(pico_ckpt, tmp_path):
    """The shapes a merge compares come from the headers alone and agree with safetensors' own reader."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from l2s.checkpoint import tensor_shapes

    ck = _copy(pico_ckpt, tmp_path / "ck")
    tensors = load_file(ck / "model.safetensors")
    names = sorted(tensors)
    with safe_open(str(ck / "model.safetensors"), framework="pt") as f:
        want = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118 (not iterable)
    (ck / "model.safetensors").unlink()
    save_file({k: tensors[k].contiguous() for k in names[::2]}, ck / "model-00001-of-00002.safetensors")
    save_file({k: tensors[k].contiguous() for k in names[1::2]}, ck / "model-00002-of-00002.safetensors")
    assert tensor_shapes(ck) == want and len(want) == len(names) > 1
