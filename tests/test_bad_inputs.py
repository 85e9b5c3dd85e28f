"""The bad-input catalog: bad CLI and API inputs, the exact error each gets, and a test per row.

One table (`CLI_CASES` + `API_CASES`) drives both the tests and docs/BAD_INPUTS.md. Each test checks the
contract (CLI: exit code 2, exactly one line on stderr, no traceback; API: a 4xx whose body is OpenAI's
`{"error": {"message", "type", "param", "code"}}`) and that the doc shows the row with the message
observed now, so the doc cannot drift from the code. After changing a message, regenerate the doc:

    .venv/bin/python tests/test_bad_inputs.py --write-doc

Every input lives in one scratch folder (`$W` in the doc): copies of a pico checkpoint, broken variants
of it, bad YAML and task files. The API rows run against a real server (uvicorn on 127.0.0.1) on pico
models, as tests/test_server_api.py does, with small caps so the limits are reachable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BAD_INPUTS.md"
KEY = "catalog-key"
MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]
# The server the API rows run against: caps small enough to reach (see server/settings.py).
SERVER_CAPS = dict(max_tokens_cap=64, default_max_tokens=8, max_n=4, max_prompts=4, max_body_bytes=4096)


@dataclass(frozen=True)
class CliCase:
    id: str
    what: str  # what is wrong, in words
    argv: tuple[str, ...]  # after `l2s`; "$W" is the scratch folder
    needle: str  # must appear in the error line (the doc holds the whole line)


@dataclass(frozen=True)
class ApiCase:
    id: str
    what: str
    path: str
    body: Any  # a dict is sent as JSON, bytes as they are, None: no body
    status: int
    param: str | None = None
    code: str | None = None
    method: str = "POST"
    auth: str | None = KEY  # the Bearer key sent (None: no Authorization header)
    headers: dict[str, str] = field(default_factory=dict)
    show: str | None = None  # how the doc shows the body, when the body itself is too long


def _chat(**kw) -> dict:
    return {"model": "l2s-short", "messages": MSG, **kw}


S = "$W/out/s.jsonl"  # an output path that never exists
CLI_CASES = [
    CliCase("unknown-command", "no such subcommand", ("frobnicate",), "invalid choice: 'frobnicate'"),
    CliCase("missing-flag", "a required flag left out", ("sample", "--out", S), "--model"),
    CliCase("flag-type", "a number flag given a word", ("sample", "--model", "$W/ckpt", "--n", "ten", "--out", S), "invalid int value: 'ten'"),
    CliCase("unknown-task", "task name not in the registry", ("sample", "--model", "$W/ckpt", "--task", "gsm9k", "--out", S), "unknown task 'gsm9k'"),
    CliCase("unknown-engine", "engine name not in the registry", ("sample", "--model", "$W/ckpt", "--engine", "tensorrt", "--out", S), "unknown engine 'tensorrt'"),
    CliCase("n-below-1", "n < 1 samples per prompt", ("sample", "--model", "$W/ckpt", "--n", "0", "--out", S), "--n"),
    CliCase("checkpoint-missing", "checkpoint folder does not exist", ("sample", "--model", "$W/nope", "--out", S), "checkpoint not found"),
    CliCase("not-a-model", "folder without config.json", ("sample", "--model", "$W/not-a-model", "--out", S), "has no config.json"),
    CliCase("gguf-as-checkpoint", "a GGUF file passed as a checkpoint", ("sample", "--model", "$W/model.gguf", "--out", S), "convert it with `l2s convert-gguf"),
    CliCase("no-tokenizer", "checkpoint without tokenizer files", ("sample", "--model", "$W/no-tokenizer", "--out", S), "has no tokenizer"),
    CliCase("no-chat-template", "checkpoint without a chat template", ("sample", "--model", "$W/no-template", "--out", S), "has no chat template"),
    CliCase("corrupted-weights", "model.safetensors cut to half its size", ("sample", "--model", "$W/corrupted", "--out", S), "are corrupted"),
    CliCase("pickled-weights", "only pickled pytorch_model.bin weights", ("sample", "--model", "$W/pickled", "--out", S), "safetensors only"),
    CliCase("jsonl-missing-field", "task line without 'answer'", ("sample", "--model", "$W/ckpt", "--task", "jsonl:$W/missing-field.jsonl", "--out", S), "missing field 'answer'"),
    CliCase("jsonl-not-json", "task line that is not JSON", ("sample", "--model", "$W/ckpt", "--task", "jsonl:$W/not-json.jsonl", "--out", S), "not valid JSON"),
    CliCase("data-no-prompt-field", "data file without a prompt-like column", ("sample", "--model", "$W/ckpt", "--task", "$W/no-fields.jsonl", "--out", S), "its columns: text, label"),
    CliCase("data-ambiguous-field", "data file with two prompt-like columns", ("sample", "--model", "$W/ckpt", "--task", "$W/ambiguous.jsonl", "--out", S), "several prompt columns (prompt, question)"),
    CliCase("data-no-final-answer", "a worked solution without a final answer", ("sample", "--model", "$W/ckpt", "--task", "$W/no-final.jsonl", "--test-fraction", "1", "--out", S), "row 1 of no-final.jsonl"),
    CliCase("template-no-slot", "a prompt template without {prompt}", ("sample", "--model", "$W/ckpt", "--prompt-template", "Solve it.", "--out", S), "must contain {prompt}"),
    CliCase("unknown-grader", "grader not flexible/strict", ("sample", "--model", "$W/ckpt", "--grader", "lenient", "--out", S), "invalid choice: 'lenient'"),
    CliCase("sample-out-exists", "--out holds samples of unknown origin", ("sample", "--model", "$W/ckpt", "--out", "$W/existing.jsonl"), "pass --force"),
    CliCase("unknown-method", "derive method not in the registry", ("derive", "--method", "prune", "--out", "$W/out/d"), "unknown method 'prune'"),
    CliCase("foreign-flag", "a flag of another method", ("derive", "--method", "merge", "--beta", "0.1", "--out", "$W/out/d"), "--beta does not apply"),
    CliCase("unknown-config-key", "misspelt key in the YAML", ("derive", "--method", "merge", "--config", "$W/typo.yaml", "--long", "$W/ckpt", "--short", "$W/ckpt", "--out", "$W/out/d"), "unknown config key 'alpah'"),
    CliCase("yaml-does-not-parse", "YAML syntax error", ("rl", "--init", "$W/ckpt", "--config", "$W/broken.yaml", "--out", "$W/out/rl"), "is not valid YAML"),
    CliCase("yaml-not-a-mapping", "YAML holding a list", ("rl", "--init", "$W/ckpt", "--config", "$W/list.yaml", "--out", "$W/out/rl"), "must hold a mapping"),
    CliCase("config-missing", "--config file does not exist", ("rl", "--init", "$W/ckpt", "--config", "$W/nope.yaml", "--out", "$W/out/rl"), "config file not found"),
    CliCase("derive-out-exists", "--out exists and --force not given", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/ckpt", "--out", "$W/existing-out"), "pass --force"),
    CliCase("merge-vocab-mismatch", "parents with different tokenizers", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/other-vocab", "--out", "$W/out/d"), "different tokenizers"),
    CliCase("merge-tokenizer-base", "--tokenizer-source base without --base", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/ckpt", "--tokenizer-source", "base", "--out", "$W/out/d"), "needs --base"),
    CliCase("merge-arch-mismatch", "parents with different architectures", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/other-arch", "--out", "$W/out/d"), "different architectures"),
    CliCase("merge-alpha-range", "alpha outside [0, 1]", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/ckpt", "--alpha", "1.5", "--out", "$W/out/d"), "alpha"),
    CliCase("merge-sweep-range", "a sweep value outside [0, 1]", ("derive", "--method", "merge", "--long", "$W/ckpt", "--short", "$W/ckpt", "--sweep", "0.5,1.5", "--out", "$W/out/d"), "sweep values must be in [0, 1]"),
    CliCase("merge-sweep-words", "a sweep that is not numbers", ("derive", "--method", "merge", "--sweep", "0.1,half", "--out", "$W/out/d"), "comma-separated numbers"),
    CliCase("merge-needs-base", "ties merge without --base", ("derive", "--method", "merge", "--merge-method", "ties", "--long", "$W/ckpt", "--short", "$W/ckpt", "--out", "$W/out/d"), "needs --base"),
    CliCase("rl-tau", "tau <= 0", ("rl", "--init", "$W/ckpt", "--tau", "0", "--out", "$W/out/rl"), "tau must be > 0"),
    CliCase("rl-k", "k < 2 samples per prompt", ("rl", "--init", "$W/ckpt", "--k", "1", "--out", "$W/out/rl"), "k must be >= 2"),
    CliCase("unknown-preset", "init preset not in the registry", ("init", "--preset", "huge", "--out", "$W/out/fam"), "unknown preset 'huge'"),
    CliCase("init-foreign-folder", "init --out is a folder that is not an l2s cache", ("init", "--preset", "tiny", "--out", "$W/not-a-cache"), "is not an l2s cache"),
    CliCase("eval-models-spec", "--models entry without name=", ("eval", "--models", "long", "--out", "$W/out/eval"), "expected name=PATH"),
    CliCase("serve-threshold-range", "auto threshold outside [0, 1]", ("serve", "--long", "$W/ckpt", "--short", "$W/ckpt", "--auto-threshold", "1.5"), "--auto-threshold"),
    CliCase("serve-long-only", "--long without --short", ("serve", "--long", "$W/ckpt"), "pass both --long and --short"),
    CliCase("report-no-run", "report on a folder without report.json", ("report", "$W/not-a-cache"), "no report.json"),
]  # fmt: skip

API_CASES = [
    ApiCase("malformed-json", "body is not valid JSON", "/v1/chat/completions", b'{"model": "l2s-short", "messages": [', 400),
    ApiCase("no-body", "no body at all", "/v1/chat/completions", None, 400),
    ApiCase("body-not-object", "body is a JSON list", "/v1/chat/completions", b"[1, 2]", 422),
    ApiCase("wrong-type", "max_tokens is a string", "/v1/chat/completions", _chat(max_tokens="ten"), 422, "max_tokens"),
    ApiCase("messages-not-list", "messages is a string", "/v1/chat/completions", _chat(messages="hi"), 422, "messages"),
    ApiCase("empty-messages", "messages is empty", "/v1/chat/completions", _chat(messages=[]), 422, "messages"),
    ApiCase("message-no-role", "a message without role", "/v1/chat/completions", _chat(messages=[{"content": "hi"}]), 422, "messages.0.role"),
    ApiCase("unknown-role", "role 'robot'", "/v1/chat/completions", _chat(messages=[{"role": "robot", "content": "x"}]), 422, "messages.0.role"),
    ApiCase("image-part", "a non-text content part", "/v1/chat/completions", _chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 422),
    ApiCase("unknown-mode", "mode not short/long/auto", "/v1/chat/completions", {"messages": MSG, "mode": "medium"}, 422, "mode"),
    ApiCase("unknown-model", "model not served", "/v1/chat/completions", _chat(model="gpt-4o"), 404, "model", "model_not_found"),
    ApiCase("mode-conflict", "mode disagrees with model", "/v1/chat/completions", _chat(model="l2s-long", mode="short"), 422, "mode"),
    ApiCase("auto-uncalibrated", "mode auto on a server without a threshold", "/v1/chat/completions", {"messages": MSG, "mode": "auto"}, 422, "mode", "auto_not_calibrated"),
    ApiCase("unknown-effort", "reasoning_effort 'extreme'", "/v1/chat/completions", {"messages": MSG, "reasoning_effort": "extreme"}, 400, "reasoning_effort", "unsupported_value"),
    ApiCase("negative-max-tokens", "max_tokens = -1", "/v1/chat/completions", _chat(max_tokens=-1), 422, "max_tokens"),
    ApiCase("huge-max-tokens", "max_tokens above the server's cap", "/v1/chat/completions", _chat(max_tokens=10**9), 422, "max_tokens", "max_tokens_too_large"),
    ApiCase("negative-budget", "max_thinking_tokens = -5", "/v1/chat/completions", _chat(max_thinking_tokens=-5), 422, "max_thinking_tokens"),
    ApiCase("n-zero", "n = 0", "/v1/chat/completions", _chat(n=0), 422, "n"),
    ApiCase("n-above-cap", "n above the server's cap", "/v1/chat/completions", _chat(n=99), 422, "n"),
    ApiCase("temperature-range", "temperature = 5", "/v1/chat/completions", _chat(temperature=5), 422, "temperature"),
    ApiCase("too-many-stops", "five stop strings", "/v1/chat/completions", _chat(stop=list("abcde")), 422, "stop"),
    ApiCase("top-logprobs", "top_logprobs = 5 (only the sampled token's is returned)", "/v1/chat/completions", _chat(logprobs=True, top_logprobs=5), 422, "top_logprobs"),
    ApiCase("missing-key", "no Authorization header", "/v1/chat/completions", _chat(), 401, None, "invalid_api_key", auth=None),
    ApiCase("wrong-key", "wrong Bearer key", "/v1/chat/completions", _chat(), 401, None, "invalid_api_key", auth="not-the-key"),
    ApiCase("basic-auth", "Basic instead of Bearer", "/v1/models", None, 401, None, "invalid_api_key", method="GET", auth=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    ApiCase("body-too-large", "a 5000-byte message on a 4096-byte limit", "/v1/chat/completions", _chat(messages=[{"role": "user", "content": "x" * 5000}]), 413, show='{"model": "l2s-short", "messages": [{"role": "user", "content": "x" * 5000}]}'),
    ApiCase("context-too-long", "prompt + max_tokens beyond the model's 1024-token context", "/v1/chat/completions", _chat(messages=[{"role": "user", "content": "7 * 6 " * 600}]), 400, "messages", "context_length_exceeded", show='{"model": "l2s-short", "messages": [{"role": "user", "content": "7 * 6 " * 600}]}'),
    ApiCase("prompt-missing", "completions without prompt", "/v1/completions", {"model": "l2s-short"}, 422, "prompt"),
    ApiCase("prompt-empty-list", "completions with prompt []", "/v1/completions", {"model": "l2s-short", "prompt": []}, 422, "prompt"),
    ApiCase("too-many-prompts", "more prompts than the server's cap", "/v1/completions", {"model": "l2s-short", "prompt": ["1+1="] * 5}, 422, "prompt"),
    ApiCase("unknown-route", "no such route", "/v1/embeddings", {"input": "hi"}, 404),
    ApiCase("wrong-method", "GET on a POST route", "/v1/chat/completions", None, 405, method="GET"),
]  # fmt: skip


# ---- the inputs ---------------------------------------------------------------------------------------


def build_world(root: Path, pico_ckpt: Path) -> Path:
    """The scratch folder every case points into (`$W`): checkpoints, broken variants, bad files."""
    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    ckpt = root / "ckpt"
    shutil.copytree(pico_ckpt, ckpt)

    def variant(name: str) -> Path:
        shutil.copytree(ckpt, root / name)
        return root / name

    (variant("no-tokenizer") / "tokenizer.json").unlink()
    no_template = variant("no-template")
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((no_template / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(tc))
    weights = variant("corrupted") / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    pickled = variant("pickled")
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"PK\x03\x04 never unpickled by l2s")
    other_arch = variant("other-arch")
    cfg = json.loads((other_arch / "config.json").read_text())
    cfg.update(architectures=["MistralForCausalLM"], model_type="mistral")
    (other_arch / "config.json").write_text(json.dumps(cfg))
    other_tok = build_tokenizer(["an entirely different corpus for another vocabulary", "zebra quartz"] * 4)
    save_random_model(root / "other-vocab", other_tok)
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "README.md").write_text("not a checkpoint\n")
    (root / "not-a-cache").mkdir()
    (root / "not-a-cache" / "notes.txt").write_text("my own files\n")
    (root / "existing-out").mkdir()
    (root / "existing-out" / "model.safetensors").write_bytes(b"an earlier result")
    (root / "existing.jsonl").write_text('{"prompt_id": "x", "sample_idx": 0}\n')
    (root / "typo.yaml").write_text("alpah: 0.5\n")
    (root / "broken.yaml").write_text("tau: [0.1\nk: 8\n")
    (root / "list.yaml").write_text("- tau\n- k\n")
    good = json.dumps({"prompt": "Compute 1 + 1.", "answer": "2"})
    (root / "missing-field.jsonl").write_text(good + "\n" + json.dumps({"prompt": "Compute 2 + 2."}) + "\n")
    (root / "not-json.jsonl").write_text(good + "\n{prompt: 'Compute 2 + 2.'}\n")
    (root / "model.gguf").write_bytes(b"GGUF" + bytes(60))  # a GGUF header's magic, then nothing
    (root / "no-fields.jsonl").write_text(json.dumps({"text": "1+1?", "label": "2"}) + "\n")
    (root / "ambiguous.jsonl").write_text(
        json.dumps({"prompt": "1+1?", "question": "1+1?", "answer": "2"}) + "\n"
    )
    worked = "Tom starts with 3 apples.\nHe buys 5 more, so he has 3 + 5 = 8 apples."
    (root / "no-final.jsonl").write_text(
        json.dumps({"question": "Tom has 3 apples...", "answer": worked}) + "\n"
    )
    return root


def run_cli(case: CliCase, world: Path) -> subprocess.CompletedProcess:
    argv = [a.replace("$W", str(world)) for a in case.argv]
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=world,
        env={**os.environ, "L2S_CACHE": str(world / "no-cache")},
    )


def call_api(case: ApiCase, base_url: str):
    import httpx

    headers = {"content-type": "application/json", **case.headers}
    if case.auth is not None:
        headers["Authorization"] = f"Bearer {case.auth}"
    kw: dict[str, Any] = {}
    if isinstance(case.body, bytes):
        kw["content"] = case.body
    elif case.body is not None:
        kw["content"] = json.dumps(case.body).encode()
    return httpx.request(case.method, base_url + case.path, headers=headers, timeout=60, **kw)


def serve_settings(ckpt: Path):
    from l2s.server.settings import ServeSettings

    # No auto threshold: the catalog's "auto-uncalibrated" row needs a server that has none.
    return ServeSettings(long=str(ckpt), short=str(ckpt), api_key=KEY, port=0, **SERVER_CAPS)


# ---- the doc ------------------------------------------------------------------------------------------


def _scrub(text: str, world: Path) -> str:
    for p in sorted({str(world.resolve()), str(world)}, key=len, reverse=True):
        text = text.replace(p, "$W")
    return text


def _code(text: str) -> str:
    """A markdown code span that survives backticks and table pipes inside `text`."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cli_row(case: CliCase, line: str) -> str:
    command = "l2s " + " ".join(case.argv)
    return f"| {case.id} | {case.what} | {_code(command)} | exit 2 | {_code(line)} |"


def api_row(case: ApiCase, error: dict[str, Any]) -> str:
    if case.show is not None:
        body = case.show
    elif isinstance(case.body, bytes):
        body = case.body.decode()
    else:
        body = "" if case.body is None else json.dumps(case.body)
    auth = {None: "", KEY: ""}.get(case.auth, f" (Bearer {case.auth})")
    if case.headers.get("Authorization"):
        auth = f" (Authorization: {case.headers['Authorization']})"
    elif case.auth is None and not case.headers:
        auth = " (no Authorization)"
    request = f"{case.method} {case.path}{auth} {body}".strip()
    extra = ", ".join(f"{k} {error[k]}" for k in ("type", "param", "code") if error.get(k))
    return f"| {case.id} | {case.what} | {_code(request)} | {case.status} | {_code(error['message'])} ({extra}) |"


HEADER = """# Bad inputs and the errors they get

Every row is a real input and the exact error l2s answers it with, observed by running it.
CLI rows exit with code 2 and print exactly one line on stderr, never a traceback; API rows answer a
4xx whose body is OpenAI's error object `{{"error": {{"message", "type", "param", "code"}}}}`.

Each row is a test in `tests/test_bad_inputs.py` (one table drives the tests and this page; a test
fails when this page shows another message than the code gives). After changing a message:

    .venv/bin/python tests/test_bad_inputs.py --write-doc

`$W` is a scratch folder holding the inputs: `ckpt` a pico checkpoint; `no-tokenizer`, `no-template`,
`corrupted` (model.safetensors cut to half), `pickled` (pytorch_model.bin only), `other-arch`
(config.json says Mistral) and `other-vocab` (another tokenizer) its broken or mismatched variants;
`not-a-cache`, `existing-out` and `existing.jsonl` folders and files that already hold something else;
`typo.yaml` (`alpah: 0.5`), `broken.yaml` (unclosed `[`), `list.yaml` (a YAML list), and task files
with a line missing `answer` or not JSON. The API server serves that pico checkpoint as `l2s-long` and
`l2s-short` with an API key, no auto threshold, and these caps: {caps}.

## CLI ({n_cli} rows)

| id | what is wrong | command | result | error (stderr) |
|---|---|---|---|---|
"""


def render_doc(cli_lines: dict[str, str], api_errors: dict[str, dict]) -> str:
    caps = ", ".join(f"`{k}={v}`" for k, v in SERVER_CAPS.items())
    text = HEADER.format(caps=caps, n_cli=len(CLI_CASES))
    text += "".join(cli_row(c, cli_lines[c.id]) + "\n" for c in CLI_CASES)
    text += f"\n## API ({len(API_CASES)} rows)\n\n"
    text += "| id | what is wrong | request | status | error message (type, param, code) |\n|---|---|---|---|---|\n"
    text += "".join(api_row(c, api_errors[c.id]) + "\n" for c in API_CASES)
    return text


def _doc_text() -> str:
    return DOC.read_text() if DOC.is_file() else ""


REGENERATE = "docs/BAD_INPUTS.md is out of date; run `.venv/bin/python tests/test_bad_inputs.py --write-doc`"


# ---- the tests ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, pico_ckpt):
    return build_world(tmp_path_factory.mktemp("catalog") / "w", pico_ckpt)


@pytest.fixture(scope="module")
def server(world):
    from l2s.server.runner import serve_in_thread

    with serve_in_thread(serve_settings(world / "ckpt")) as running:
        yield running


def one_error_line(r: subprocess.CompletedProcess, world: Path) -> str:
    assert r.returncode == 2, f"exit {r.returncode}; stderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr[-3000:]}"
    return _scrub(lines[0], world)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(case: CliCase, world):
    line = one_error_line(run_cli(case, world), world)
    # argparse's own errors and UserErrors alike name the command: "l2s sample: error: ...", "l2s: error: ..."
    prefix = "l2s: error: " if case.id == "unknown-command" else f"l2s {case.argv[0]}: error: "
    assert line.startswith(prefix), line
    assert case.needle in line, line
    assert cli_row(case, line) in _doc_text(), REGENERATE
    assert not (world / "out").exists(), "a failed command must not leave output behind"


def openai_error(r, case: ApiCase) -> dict[str, Any]:
    assert r.status_code == case.status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
    assert err["param"] == case.param and err["code"] == case.code, err
    return err


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_bad_input(case: ApiCase, server):
    err = openai_error(call_api(case, server.url), case)
    assert api_row(case, err) in _doc_text(), REGENERATE


def test_server_still_serves_after_the_catalog(server):
    import httpx

    r = httpx.post(
        f"{server.base_url}/chat/completions",
        json=_chat(max_tokens=2),
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_catalog_is_big_enough_and_ids_are_unique():
    ids = [c.id for c in CLI_CASES] + [c.id for c in API_CASES]
    assert len(ids) == len(set(ids)) and len(CLI_CASES) >= 25 and len(API_CASES) >= 25


# ---- `--write-doc` ------------------------------------------------------------------------------------


def write_doc() -> Path:
    """Run every row for real and write docs/BAD_INPUTS.md from what was observed."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import PICO_CORPUS
    from l2s.checkpoint import atomic_write_text
    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.server.runner import serve_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        pico = save_random_model(Path(tmp) / "pico", build_tokenizer(PICO_CORPUS))
        world = build_world(Path(tmp) / "w", pico)
        cli_lines = {}
        for case in CLI_CASES:
            cli_lines[case.id] = one_error_line(run_cli(case, world), world)
            print(f"{case.id}: {cli_lines[case.id]}", flush=True)
        with serve_in_thread(serve_settings(world / "ckpt")) as running:
            api_errors = {c.id: openai_error(call_api(c, running.url), c) for c in API_CASES}
    DOC.parent.mkdir(exist_ok=True)
    atomic_write_text(DOC, render_doc(cli_lines, api_errors))
    print(f"wrote {DOC} ({len(CLI_CASES)} CLI rows, {len(API_CASES)} API rows)")
    return DOC


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-doc"]:
        sys.exit("usage: python tests/test_bad_inputs.py --write-doc")
    write_doc()
