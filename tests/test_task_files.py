"""Tasks read from data files in the formats they are published in (l2s.tasks.files, l2s.tasks.load_task)."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from l2s.config import load_config
from l2s.errors import UserError
from l2s.tasks import DEFAULT_TEMPLATE, TaskOptions, get_task, load_task

GSM8K = [
    {
        "question": f"Tom has {i} apples and buys 2 more. How many?",
        "answer": f"He has {i}+2={i + 2}.\n#### {i + 2}",
    }
    for i in range(40)
]
MATH500 = [
    {
        "problem": f"What is $\\frac{{{i}}}{{2}}$ doubled?",
        "solution": f"Doubling gives $\\boxed{{{i}}}$.",
        "answer": f"{i}",
        "subject": "Algebra",
        "level": 1 + i % 5,
        "unique_id": f"test/algebra/{i}.json",
    }
    for i in range(30)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def task(path, **kw):
    return load_task(TaskOptions(task=str(path), **kw))


def both(t):
    return t.problems("train"), t.problems("test")


def user_error(fn) -> str:
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_gsm8k_as_published(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    train, test = both(task(path))
    assert train and test and len(train) + len(test) == len(GSM8K)
    assert not {p.id for p in train} & {p.id for p in test}
    by_id = {p.id: p for p in train + test}
    p = by_id["gsm8k-4"]  # row 4 is GSM8K[3]
    assert p.answer == "5"
    assert (
        p.prompt
        == GSM8K[3]["question"] + "\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    assert p.prompt == DEFAULT_TEMPLATE.replace("{prompt}", GSM8K[3]["question"])
    assert p.messages() == [{"role": "user", "content": p.prompt}] and p.system is None


def test_split_is_stable_and_ignores_the_seed(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    ids = [[p.id for p in load_task(TaskOptions(task=str(path)), seed=s).problems("test")] for s in (0, 0, 7)]
    assert ids[0] == ids[1] == ids[2]
    # prefix-stable, and a copy under another name splits the same rows the same way
    assert [p.id for p in task(path).problems("test", 3)] == ids[0][:3]
    copy = write_jsonl(tmp_path / "copy.jsonl", GSM8K)
    assert [p.id.replace("copy", "gsm8k") for p in task(copy).problems("test")] == ids[0]
    # a larger held-out fraction holds out a superset
    more = {p.id for p in task(path, test_fraction=0.9).problems("test")}
    assert set(ids[0]) < more
    assert {p.id for p in task(path, test_fraction=1.0).problems("test")} == {
        f"gsm8k-{i}" for i in range(1, 41)
    }


def test_held_out_share_follows_test_fraction(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(2000)])
    n_test = len(task(path, test_fraction=0.2).problems("test"))
    assert 300 < n_test < 500


def test_math500_parquet_prefers_answer_column(tmp_path):
    path = tmp_path / "math500.parquet"
    pq.write_table(pa.Table.from_pylist(MATH500), path)
    problems = task(path, test_fraction=1.0).problems("test")
    assert len(problems) == 30
    p = problems[7]
    assert (p.id, p.answer, p.difficulty) == ("test/algebra/7.json", "7", 3)
    assert p.prompt.startswith("What is $\\frac{7}{2}$ doubled?\nPlease reason step by step")


def test_math_json_solution_is_reduced_to_its_boxed_answer(tmp_path):
    rows = [
        {k: r[k] for k in ("problem", "solution", "level")} | {"level": f"Level {r['level']}"}
        for r in MATH500
    ]
    listed = tmp_path / "math.json"
    listed.write_text(json.dumps(rows))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": rows}))
    for path in (listed, wrapped):
        problems = task(path, test_fraction=1.0).problems("test")
        assert [p.answer for p in problems] == [str(i) for i in range(30)]
        assert problems[4].difficulty == 5 and problems[0].id == f"{path.stem}-1"


def test_csv_with_integer_answers_and_named_fields(tmp_path):
    path = tmp_path / "aime.csv"
    path.write_text("ID,Problem,Answer,Note\nA1,Find x.,12,-\nA2,Find y.,7,-\n")
    problems = task(path, test_fraction=1.0).problems("test")
    assert [(p.prompt.split("\n")[0], p.answer) for p in problems] == [("Find x.", "12"), ("Find y.", "7")]
    named = task(path, test_fraction=1.0, prompt_field="Note", answer_field="Answer").problems("test")
    assert named[0].prompt.startswith("-\n")


def test_split_column(tmp_path):
    rows = [
        {"prompt": f"q{i}", "answer": str(i), "split": s}
        for i, s in enumerate(["train", "test", "validation", "Train"])
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    train, test = both(task(path))
    assert [p.answer for p in train] == ["0", "3"] and [p.answer for p in test] == ["1", "2"]
    # another column, or none at all
    rows = [dict(r, fold="train") for r in rows]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    assert len(task(path, split_field="fold").problems("train")) == 4
    assert len(task(path, split_field="", test_fraction=1.0).problems("test")) == 4


def test_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [
        {"question": r["problem"], "final_answer": r["answer"], "solution": r["solution"]}
        for r in MATH500[:10]
    ]
    one = tmp_path / "one"
    datasets.Dataset.from_list(rows).save_to_disk(str(one))
    problems = task(one, test_fraction=1.0).problems("test")
    assert [p.answer for p in problems] == [str(i) for i in range(10)] and problems[0].id == "one-1"

    two = tmp_path / "two"
    parts = {"train": rows[:6], "validation": rows[6:8], "test": rows[8:]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in parts.items()}).save_to_disk(str(two))
    train, test = both(task(two))
    assert [p.answer for p in train] == ["0", "1", "2", "3", "4", "5"]
    assert [p.answer for p in test] == ["6", "7", "8", "9"]
    assert [p.id for p in test] == ["two-validation-1", "two-validation-2", "two-test-1", "two-test-2"]

    only_test = tmp_path / "only_test"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(only_test))
    assert len(task(only_test).problems("test")) == 10
    msg = user_error(lambda: task(only_test).problems("train"))
    assert "only_test has no train problems" in msg and "--split-field" in msg


def test_template_and_system_prompt(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", GSM8K[:3])
    t = task(path, test_fraction=1.0, prompt_template="Q: {prompt}\nA:", system_prompt="Think briefly.")
    p = t.problems("test")[0]
    assert p.prompt == f"Q: {GSM8K[0]['question']}\nA:" and p.system == "Think briefly."
    assert p.messages() == [
        {"role": "system", "content": "Think briefly."},
        {"role": "user", "content": p.prompt},
    ]
    assert (
        task(path, test_fraction=1.0, prompt_template="{prompt}").problems("test")[0].prompt
        == GSM8K[0]["question"]
    )
    msg = user_error(lambda: load_config(TaskOptions, overrides={"prompt_template": "Solve it."}))
    assert "prompt_template must contain {prompt}" in msg
    with pytest.raises(ValidationError, match=r"must contain \{prompt\}"):
        TaskOptions(prompt_template="no slot")
    with pytest.raises(ValidationError):
        TaskOptions(test_fraction=0)


def test_jsonl_prefix_and_arith_keep_their_meaning(tmp_path):
    rows = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?", "answer": "4", "split": "train"}]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    legacy = load_task(TaskOptions(task=f"jsonl:{path}"))
    assert [p.prompt for p in legacy.problems("train")] == ["1+1?", "2+2?"]
    assert [p.prompt for p in legacy.problems("test")] == ["1+1?"]
    assert legacy.problems("test") == get_task(f"jsonl:{path}").problems("test")
    templated = load_task(TaskOptions(task=f"jsonl:{path}", prompt_template="Q: {prompt}", system_prompt="S"))
    assert templated.problems("test")[0].messages() == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q: 1+1?"},
    ]
    assert load_task(TaskOptions(), seed=3).problems("test", 5) == get_task("arith", seed=3).problems(
        "test", 5
    )
    assert "--prompt-field applies to data files" in user_error(
        lambda: load_task(TaskOptions(task=f"jsonl:{path}", prompt_field="q"))
    )


def test_get_task_reads_other_data_files(tmp_path):
    path = tmp_path / "math500.parquet"
    pq.write_table(pa.Table.from_pylist(MATH500), path)
    assert get_task(str(path)).problems("test") == task(path).problems("test")


def test_reading_writes_nothing_beside_the_data_or_in_the_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "g.jsonl", GSM8K)
    (data / "g.csv").write_text("question,answer\nq,1\n")
    pq.write_table(pa.Table.from_pylist(MATH500), data / "m.parquet")
    datasets.Dataset.from_list(GSM8K).save_to_disk(str(data / "saved"))
    before = sorted(str(p) for p in data.rglob("*"))
    user_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", user_cache)
    offline = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    online = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    for name in ("g.jsonl", "g.csv", "m.parquet", "saved"):
        task(data / name, test_fraction=1.0)
    assert sorted(str(p) for p in data.rglob("*")) == before
    assert not user_cache.exists()
    assert {k: os.environ.get(k) for k in offline} == offline
    assert online == (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)


@pytest.mark.parametrize(
    "rows,kw,expected",
    [
        (
            [{"prompt": "a", "question": "b", "answer": "1"}],
            {},
            "has several prompt columns (prompt, question); pass --prompt-field",
        ),
        (
            [{"text": "a", "answer": "1"}],
            {},
            "has no prompt column (prompt, problem, question, input or instruction); its columns: text, answer; pass --prompt-field",
        ),
        (
            [{"question": "a", "label": "1"}],
            {},
            "has no answer column (answer, final_answer or solution); its columns: question, label; pass --answer-field",
        ),
        (
            [{"question": "a", "answer": "1"}],
            {"prompt_field": "q"},
            "has no column 'q' (--prompt-field); its columns: question, answer",
        ),
        (
            [{"question": "a", "answer": "1"}],
            {"split_field": "fold"},
            "has no column 'fold' (--split-field); its columns: question, answer",
        ),
        (
            [{"question": "a", "answer": "1"}, {"question": "b", "answer": "He had 1.\nThen 2 more."}],
            {},
            "row 2 of bad.jsonl: the answer field 'answer' holds no final answer (no '#### N' or \\boxed{}); pass --answer-field with a column that does",
        ),
        (
            [{"question": "a", "answer": "1"}, {"question": "", "answer": "1"}],
            {},
            "row 2 of bad.jsonl: the prompt field 'question' is empty",
        ),
        (
            [{"question": "a", "answer": "1"}, {"question": "b", "answer": None}],
            {},
            "row 2 of bad.jsonl: the answer field 'answer' is empty",
        ),
        (
            [{"question": ["a"], "answer": "1"}],
            {},
            "row 1 of bad.jsonl: the field 'question' holds list, not text; pass --prompt-field",
        ),
        (
            [{"question": "a", "answer": "1", "split": "holdout"}],
            {},
            "row 1 of bad.jsonl: split column 'split' holds 'holdout', not train or test",
        ),
        (
            [{"id": "x", "question": "a", "answer": "1"}, {"id": "x", "question": "b", "answer": "2"}],
            {},
            "row 2 of bad.jsonl: id 'x' repeats row 1 of bad.jsonl; ids must be unique",
        ),
    ],
)
def test_bad_records_are_one_line_errors(tmp_path, rows, kw, expected):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert expected in user_error(lambda: task(path, **kw).problems("test"))


def test_empty_split_names_the_flag(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", GSM8K[:5])
    msg = user_error(lambda: task(path, test_fraction=1.0).problems("train"))
    assert (
        msg
        == "g.jsonl has no train problems: --test-fraction 1.0 held out all 5 rows; lower --test-fraction or add a split column"
    )
    assert "raise --test-fraction" in user_error(lambda: task(path, test_fraction=1e-9).problems("test"))
    split = write_jsonl(tmp_path / "s.jsonl", [dict(r, split="train") for r in GSM8K[:5]])
    assert "its split column 'split' names none; pass --split-field" in user_error(
        lambda: task(split).problems("test")
    )
    assert "unknown split 'dev'" in user_error(lambda: task(path).problems("dev"))


def test_unreadable_inputs(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"question": "a", "answer": "1"}\n{broken\n')
    assert "cannot read" in user_error(lambda: task(tmp_path / "broken.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    assert "holds no records" in user_error(lambda: task(tmp_path / "empty.jsonl"))
    (tmp_path / "t.txt").write_text("hello")
    assert "cannot read t.txt as a task" in user_error(lambda: task(tmp_path / "t.txt"))
    (tmp_path / "plain").mkdir()
    assert "not one written by datasets' save_to_disk" in user_error(lambda: task(tmp_path / "plain"))
    assert "task file not found" in user_error(lambda: task(tmp_path / "none.parquet"))
    assert "unknown task 'gsm9k'" in user_error(lambda: task("gsm9k"))
