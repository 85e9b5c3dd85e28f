"""Tests of the UI's pure parts and its HTTP side (l2s.ui.client, view, report_view, app helpers).

Error mapping is tested with the openai client's real exceptions, raised by real HTTP: a closed port,
a plain HTTP server answering 401/429/500 with OpenAI-shaped bodies, and (slow) the l2s server itself
refusing a wrong API key. The browser test is tests/test_ui_browser.py.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from l2s.errors import UserError
from l2s.ui.app import UISettings, api_base, make_client
from l2s.ui.client import ColumnResult, RequestParams, error_message, request_kwargs, stream_mode
from l2s.ui.report_view import latest_report_dir, load_report
from l2s.ui.view import add_round, answer_markdown, stats_markdown, tally_markdown


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Canned(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with whatever the test put in `server.reply`."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status, headers, body = self.server.reply
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        data = body.encode()
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _error(status: int, message: str, kind: str) -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


def _raise(url: str, api_key: str | None = None) -> openai.OpenAIError:
    client = make_client(url, api_key, timeout_s=10)
    with pytest.raises(openai.OpenAIError) as info:
        client.chat.completions.create(
            **{**request_kwargs("short", "2+2?", RequestParams()), "stream": False}
        )
    return info.value


def _no_traceback(message: str) -> None:
    assert "Traceback" not in message and "\n" not in message


# ---- error -> message, with real exceptions -----------------------------------------------------------


def test_server_down_is_a_readable_message():
    url = f"http://127.0.0.1:{_free_port()}"  # bound then closed: nothing listens there
    exc = _raise(url)
    assert isinstance(exc, openai.APIConnectionError)
    msg = error_message(exc, url)
    assert msg.startswith(f"Cannot reach the l2s server at {url}")
    assert "l2s serve" in msg and "--server" in msg
    _no_traceback(msg)


def test_401_names_the_api_key_and_keeps_the_server_detail(canned):
    canned.reply = (
        401,
        {"content-type": "application/json"},
        _error(401, "invalid API key", "authentication_error"),
    )
    exc = _raise(_url(canned))
    assert isinstance(exc, openai.AuthenticationError)
    msg = error_message(exc, _url(canned))
    assert "refused the API key (401)" in msg and "--api-key" in msg and "invalid API key" in msg
    _no_traceback(msg)


def test_429_says_busy_and_when_to_retry(canned):
    canned.reply = (
        429,
        {"content-type": "application/json", "retry-after": "3"},
        _error(429, "too many requests in flight", "rate_limit_error"),
    )
    exc = _raise(_url(canned))
    assert isinstance(exc, openai.RateLimitError)
    msg = error_message(exc, _url(canned))
    assert "too many requests (429)" in msg and "Retry after 3 s" in msg
    _no_traceback(msg)


def test_422_shows_what_the_server_said(canned):
    detail = "mode 'auto' needs a calibrated threshold; start the server with --calibration FILE"
    canned.reply = (422, {"content-type": "application/json"}, _error(422, detail, "invalid_request_error"))
    msg = error_message(_raise(_url(canned)), _url(canned))
    assert msg == f"The l2s server at {_url(canned)} rejected the request (422). The server said: {detail}."


def test_5xx_and_non_json_bodies(canned):
    canned.reply = (
        500,
        {"content-type": "text/html"},
        "<html><pre>Traceback (most recent call last):</pre></html>",
    )
    exc = _raise(_url(canned))
    assert isinstance(exc, openai.InternalServerError)
    msg = error_message(exc, _url(canned))
    assert msg.startswith(f"The l2s server at {_url(canned)} failed while answering (500)")
    _no_traceback(msg)  # the HTML body (with its traceback) is not shown


def test_unexpected_exception_is_one_line():
    msg = error_message(RuntimeError("boom\nline two"), "http://x")
    assert msg == "Unexpected error talking to the l2s server at http://x: RuntimeError: boom"


# ---- streaming: SSE parsed by the openai client and folded into a column -------------------------------


def _sse(*events: dict) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def _chunk(delta=None, finish=None, usage=None, l2s=None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    out = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "l2s-short",
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    if l2s is not None:
        out["l2s"] = l2s
    return out


def test_stream_mode_folds_reasoning_answer_usage_and_routing(canned):
    routing = {"mode": "auto", "model": "l2s-long", "escalated": True, "confidence": 0.4, "threshold": 0.7}
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 14,
        "total_tokens": 23,
        "completion_tokens_details": {"reasoning_tokens": 11},
    }
    canned.reply = (
        200,
        {"content-type": "text/event-stream"},
        _sse(
            _chunk({"role": "assistant", "reasoning_content": "2+2"}, l2s=routing),
            _chunk({"reasoning_content": "=4"}),
            _chunk({"content": "Answer: 4"}),
            _chunk({}, finish="stop"),
            _chunk(usage=usage, l2s=routing),
        ),
    )
    snaps = list(stream_mode(make_client(_url(canned), None), "auto", "2+2?", RequestParams()))
    last = snaps[-1]
    assert last.done and last.error is None
    assert (last.reasoning, last.content) == ("2+2=4", "Answer: 4")
    assert (last.completion_tokens, last.reasoning_tokens) == (14, 11)
    assert (last.model, last.escalated, last.finish_reason) == ("l2s-long", True, "stop")
    assert last.extra == {"confidence": 0.4, "threshold": 0.7}
    assert not snaps[0].done and snaps[0].reasoning == "2+2"  # it streams: partial snapshots first
    assert "**14** completion tokens · **11** reasoning" in stats_markdown(last)
    assert "escalated to long: **yes**" in stats_markdown(last)


def test_stream_mode_turns_a_mid_stream_error_into_the_column_message(canned):
    canned.reply = (
        200,
        {"content-type": "text/event-stream"},
        "data: "
        + json.dumps(_chunk({"content": "Ans"}))
        + "\n\n"
        + "data: "
        + json.dumps({"error": {"message": "engine crashed", "type": "server_error"}})
        + "\n\n",
    )
    last = list(stream_mode(make_client(_url(canned), None), "long", "x", RequestParams()))[-1]
    assert last.done and last.content == "Ans"
    assert last.error is not None and "engine crashed" in last.error
    assert answer_markdown(last).startswith("⚠ ")


@pytest.mark.parametrize("sequential", [False, True])
def test_run_modes_streams_every_mode_to_the_end(canned, sequential):
    from l2s.ui.app import run_modes

    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    canned.reply = (
        200,
        {"content-type": "text/event-stream"},
        _sse(_chunk({"content": "Answer: 4"}, finish="stop"), _chunk(usage=usage)),
    )
    snapshots = list(
        run_modes(
            make_client(_url(canned), None),
            ["short", "long"],
            "2+2?",
            RequestParams(),
            _url(canned),
            sequential,
            threading.Event(),
        )
    )
    final = snapshots[-1]
    assert sorted(final) == ["long", "short"]
    assert all(r.done and r.error is None and r.completion_tokens == 2 for r in final.values())
    assert final["short"].content == "Answer: 4"


def test_request_kwargs_rejects_unknown_modes():
    with pytest.raises(ValueError, match="unknown mode"):
        request_kwargs("medium", "x", RequestParams())


# ---- tally and marks ------------------------------------------------------------------------------------


def _done(
    mode: str, tokens: int | None, content: str = "Answer: 4", error: str | None = None
) -> ColumnResult:
    return ColumnResult(mode, content=content, completion_tokens=tokens, done=True, error=error)


def test_tally_counts_savings_only_against_long_on_the_same_prompts():
    t = add_round({}, {"short": _done("short", 10), "long": _done("long", 100)}, "4")
    t = add_round(t, {"short": _done("short", 20, "Answer: 5")}, "4")  # long not run: no saving counted
    t = add_round(t, {"short": _done("short", 5), "long": _done("long", None, error="down")}, "4")
    s = t["short"]
    assert (s.prompts, s.tokens, s.vs_long_prompts, s.vs_long_tokens, s.long_tokens) == (3, 35, 1, 10, 100)
    assert (s.correct, s.graded) == (2, 3)
    assert "| short | 3 | 35 | **90** of 100 (90%) | 2/3 |" in tally_markdown(t)
    assert "| long | 1 | 100 | — | 1/1 |" in tally_markdown(t)


def test_no_reference_means_no_mark():
    r = _done("short", 3)
    assert "correct" not in answer_markdown(r, "")
    assert "✓ **correct**" in answer_markdown(r, "4")
    assert "✗ **incorrect**" in answer_markdown(r, "5")


# ---- report tab -----------------------------------------------------------------------------------------


def test_report_missing_folder_says_what_to_run(tmp_path):
    view = load_report(tmp_path / "nope")
    assert view.folder is None and view.pareto is None
    assert "l2s quickstart" in view.markdown


def model_record(accuracy: float, mean_tokens: float, method: str) -> dict:
    """One model's entry in report.json, with every field the report contract of docs/DESIGN.md names."""
    return {
        "accuracy": accuracy,
        "accuracy_ci95": [accuracy - 0.05, accuracy + 0.05],
        "mean_tokens": mean_tokens,
        "p50_tokens": mean_tokens,
        "p90_tokens": mean_tokens * 1.5,
        "tokens_per_correct": mean_tokens / accuracy,
        "token_ratio_vs_long": mean_tokens / 100.0,
        "path": f"/ckpt/{method}",
        "method": method,
    }


def test_report_from_json_only_and_latest_of_nested_runs(tmp_path):
    import os

    old, new = tmp_path / "a", tmp_path / "b"
    for i, d in enumerate((old, new)):
        d.mkdir()
        report = {"task": "arith", "n": 10, "models": {"long": model_record(0.5 + i / 10, 100.0, "rl")}}
        (d / "report.json").write_text(json.dumps(report))
        os.utime(d / "report.json", (1000 + i, 1000 + i))
    assert latest_report_dir(tmp_path) == new
    view = load_report(tmp_path)
    assert view.folder == new and view.pareto is None
    assert "| long | rl | 0.600 | [0.550, 0.650] | 100.0 |" in view.markdown


def test_report_prefers_report_md_and_finds_the_plot(tmp_path):
    from PIL import Image

    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "report.md").write_text("| model | accuracy |\n|---|---|\n| long | 0.9 |\n")
    Image.new("RGB", (4, 4)).save(tmp_path / "pareto.png")
    view = load_report(tmp_path)
    assert "| long | 0.9 |" in view.markdown
    assert view.pareto == tmp_path / "pareto.png"


def test_broken_report_json_is_a_message(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    assert "is not an l2s report" in load_report(tmp_path).markdown
    (tmp_path / "report.json").write_text(json.dumps({"task": "arith", "n": 1, "models": {"long": {}}}))
    assert "missing models.long.accuracy" in load_report(tmp_path).markdown


# ---- settings / CLI -------------------------------------------------------------------------------------


def test_api_base_and_settings():
    assert api_base("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/v1"
    from l2s.config import load_config

    with pytest.raises(UserError, match="port"):
        load_config(UISettings, overrides={"port": 70000})


def test_cli_rejects_bad_flags():
    from l2s.cli import main

    with pytest.raises(SystemExit) as info:
        main(["ui", "--port", "abc"])
    assert info.value.code == 2


def test_cli_busy_port_is_one_line(capsys):
    from l2s.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["ui", "--server", "http://127.0.0.1:9", "--port", str(busy.getsockname()[1])])
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("l2s ui: error: cannot serve the UI on 127.0.0.1:") and "--port" in err
    )
    assert err.count("\n") == 1


def test_cli_serve_without_a_family_says_run_init(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "L2S_CACHE": str(tmp_path / "empty")}
    cmd = [sys.executable, "-m", "l2s.cli", "ui", "--serve", "--port", "0"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"l2s ui: error: no embedded family in {tmp_path / 'empty'}; run `l2s init` first, or pass --long and --short"
    ]
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.slow
def test_ui_shows_server_down_in_every_column_without_a_traceback():
    """The built Blocks app, driven through Gradio's own client, against a closed port."""
    from gradio_client import Client

    from l2s.ui.app import build_ui, launch

    url = f"http://127.0.0.1:{_free_port()}"
    demo = build_ui(url)
    _, local, _ = launch(demo, port=_free_port(), block=False)
    try:
        out = Client(local, verbose=False).predict(
            "Compute 2 + 3. End with 'Answer: N'.",
            "5",
            ["short", "long"],
            0.0,
            32,
            None,
            False,
            api_name="/compare",
        )
    finally:
        demo.close()
    text = "\n".join(str(x) for x in out)
    assert text.count("Cannot reach the l2s server") == 2
    assert "short, long failed" in out[0]
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def guarded_server(pico_ckpt):
    """The real l2s server on a pico checkpoint, with an API key and room for one request at a time."""
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    settings = ServeSettings(
        long=str(pico_ckpt), short=str(pico_ckpt), api_key="right-key", max_concurrent=1, port=0
    )
    with serve_in_thread(settings) as running:
        yield running


@pytest.mark.slow
def test_real_server_401_and_429_become_readable_messages(guarded_server):
    url = guarded_server.url
    exc = _raise(url, api_key="wrong-key")
    assert isinstance(exc, openai.AuthenticationError)
    msg = error_message(exc, url)
    assert "refused the API key (401)" in msg and "incorrect API key" in msg
    _no_traceback(msg)

    # Take the server's only admission slot the way a running request does (a request of an untrained
    # model would end at its first random EOS, so it cannot hold the slot reliably).
    admission = guarded_server.app.state.endpoint.admission
    assert admission.try_enter()
    try:
        exc = _raise(url, api_key="right-key")
    finally:
        admission.leave()
    assert isinstance(exc, openai.RateLimitError)
    msg = error_message(exc, url)
    assert "too many requests (429)" in msg and "Retry after 1 s" in msg and "capacity" in msg
    _no_traceback(msg)

    client = make_client(url, "right-key")
    ok = list(stream_mode(client, "short", "Compute 2 + 3.", RequestParams(max_tokens=8)))[-1]
    assert ok.error is None and ok.completion_tokens == 8 and ok.model == "l2s-short"


# ---- reasoning effort: the `l2s` model's levels as columns -------------------------------------------------


@pytest.fixture(scope="module")
def effort_ui_server(pico_ckpt, tmp_path_factory):
    """The real l2s server on a pico checkpoint with an effort map: every level on the one model, low
    and medium under thinking budgets 2 and 4."""
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    def level(budget, accuracy, tokens):
        return {"model": "long", "path": str(pico_ckpt), "thinking_budget": budget, "accuracy": accuracy,
                "accuracy_ci95": [accuracy - 0.02, accuracy + 0.01], "mean_tokens": tokens}  # fmt: skip

    run = tmp_path_factory.mktemp("effort-run")
    levels = {"minimal": level(0, 0.2, 9.0), "low": level(2, 0.8, 14.0), "medium": level(4, 0.95, 20.0),
              "high": level(None, 0.99, 60.0)}  # fmt: skip
    (run / "effort.json").write_text(json.dumps({"levels": levels}))
    settings = ServeSettings(long=str(pico_ckpt), short=str(pico_ckpt), calibration=str(run), port=0)
    with serve_in_thread(settings) as running:
        yield running


def test_effort_map_and_lanes_through_the_real_server(effort_ui_server):
    from l2s.ui.client import fetch_effort_map

    client = make_client(effort_ui_server.url, None)
    efforts = fetch_effort_map(client)
    assert list(efforts) == ["minimal", "low", "medium", "high"]
    assert efforts["low"]["thinking_budget"] == 2 and efforts["high"]["mean_tokens"] == 60.0
    last = list(stream_mode(client, "effort-low", "Compute 2 + 3.", RequestParams(max_tokens=12)))[-1]
    assert last.error is None and last.done
    assert (last.model, last.effort, last.thinking_budget) == ("l2s-long", "low", 2)
    assert "effort **low** · thinking budget 2" in stats_markdown(last)
    own = RequestParams(max_tokens=12, max_thinking_tokens=3)  # the box's budget replaces the level's
    assert list(stream_mode(client, "effort-low", "x", own))[-1].thinking_budget == 3


def test_effort_map_of_a_server_without_one_or_down_is_empty(guarded_server):
    from l2s.ui.client import fetch_effort_map

    assert fetch_effort_map(make_client(guarded_server.url, "right-key")) == {}
    assert fetch_effort_map(make_client(f"http://127.0.0.1:{_free_port()}", None, timeout_s=2)) == {}


def test_effort_lanes_are_compared_like_modes():
    from l2s.ui.view import effort_choice_label, lane_header

    with pytest.raises(ValueError, match="unknown mode 'effort-extreme'"):
        request_kwargs("effort-extreme", "x", RequestParams())
    t = add_round({}, {"long": _done("long", 100), "effort-low": _done("effort-low", 30)}, "4")
    rows = tally_markdown(t).splitlines()
    assert rows[2].startswith("| long |") and rows[3] == "| effort-low | 1 | 30 | **70** of 100 (70%) | 1/1 |"
    assert lane_header("effort-high").startswith("### effort: high\nmost accurate measured")
    assert effort_choice_label("minimal", {"model": "short", "accuracy": 0.142, "mean_tokens": 9.0}) == (
        "minimal · 14.2% · 9.0 tok · short"
    )


@pytest.mark.slow
def test_ui_compares_effort_levels_side_by_side(effort_ui_server):
    """The built Blocks app through Gradio's own client: two effort levels and long in one comparison."""
    from gradio_client import Client

    from l2s.ui.app import build_ui, launch

    demo = build_ui(effort_ui_server.url)
    _, local, _ = launch(demo, port=_free_port(), block=False)
    try:
        out = Client(local, verbose=False).predict(
            "Compute 2 + 3.", "5", ["long"], 0.0, 16, "none", False, ["low", "high"], api_name="/compare"
        )
    finally:
        demo.close()
    text = "\n".join(str(x) for x in out)
    assert out[0].startswith("Done") and "failed" not in out[0]
    assert "effort **low** · thinking budget 2" in text and "effort **high**" in text
    assert "| effort-low | 1 |" in text and "| effort-high | 1 |" in text  # the tally counts them
