import json

import pytest

from l2s.errors import UserError
from l2s.tasks import get_task


def test_jsonl_task_reads_splits(tmp_path):
    f = tmp_path / "t.jsonl"
    rows = [
        {"prompt": "1+1?", "answer": "2"},
        {"prompt": "2+2?", "answer": 4, "difficulty": 2, "split": "train"},
        {"prompt": "3+3?", "answer": "6", "id": "x", "split": "test"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = get_task(f"jsonl:{f}")
    assert [p.answer for p in task.problems("train")] == ["2", "4"]
    test = task.problems("test")
    assert [p.id for p in test] == ["t-1", "x"]
    assert get_task(str(f)).problems("test", n=1)[0].prompt == "1+1?"


@pytest.mark.parametrize(
    "line,msg",
    [
        ('{"prompt": "a"}', r":2: missing field 'answer'"),
        ('{"answer": "1"}', r":2: missing field 'prompt'"),
        ("{not json", r":2: not valid JSON"),
        ("[1, 2]", r":2: each line must be a JSON object"),
        ('{"prompt": "a", "answer": "1", "difficulty": "hard"}', r":2: 'difficulty' must be an integer"),
    ],
)
def test_jsonl_bad_line_names_line(tmp_path, line, msg):
    f = tmp_path / "t.jsonl"
    f.write_text('{"prompt": "ok", "answer": "1"}\n' + line + "\n")
    with pytest.raises(UserError, match=msg):
        get_task("jsonl", path=f)


def test_unknown_task_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown task 'gsm9k'"):
        get_task("gsm9k")
    with pytest.raises(UserError, match="task file not found"):
        get_task(f"jsonl:{tmp_path / 'none.jsonl'}")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="holds no records"):
        get_task("jsonl", path=tmp_path / "e.jsonl")
