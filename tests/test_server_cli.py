"""`l2s serve` as a user runs it: one-line errors, fast import, and a real server process (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import openai
import pytest

L2S = [sys.executable, "-m", "l2s.cli"]


def _run(args, env=None, timeout=120):
    return subprocess.run(
        [*L2S, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_no_embedded_family_is_one_line_pointing_at_init(tmp_path):
    r = _run(["serve"], env={"L2S_CACHE": str(tmp_path / "empty")})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "l2s init" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--long", "/nonexistent/long"], "both --long and --short"),
        (["--long", "/nonexistent/long", "--short", "/nonexistent/short"], "checkpoint not found"),
        (["--models", "oops"], "key=value"),
        (["--engine", "tgi"], "engine"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
        (["--auto-threshold", "2"], "--auto-threshold"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message, capsys):
    from l2s.cli import main

    try:
        code = main(["serve", *args])
    except SystemExit as e:  # argparse's own errors (a bad choice or format) exit with 2 too
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_importing_the_server_does_not_import_torch():
    code = (
        "import sys, l2s.server.app, l2s.server.cli, l2s.server.runner; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules and 'vllm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_flags_override_yaml(tmp_path):
    from l2s.cli import build_parser
    from l2s.config import load_config
    from l2s.flags import flag_values
    from l2s.server.settings import ServeSettings

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("port: 9000\nmax_batch: 4\nmodels: {a: /ckpt/a}\n")
    argv = ["serve", "--config", str(cfg), "--port", "9100", "--models", "b=/ckpt/b"]
    args = build_parser(argv).parse_args(argv)
    s = load_config(ServeSettings, args.config, flag_values(args, ServeSettings.model_fields))
    assert (s.port, s.max_batch, s.models) == (9100, 4, {"b": "/ckpt/b"})


@pytest.mark.slow
def test_l2s_serve_process(tmp_path, pico_tokenizer, serve_cli):
    """The real command: start, answer the openai client, refuse a bad key, stop cleanly on SIGINT."""
    from l2s.embedded.model import save_random_model

    long = save_random_model(tmp_path / "long", pico_tokenizer, seed=1)
    short = save_random_model(tmp_path / "short", pico_tokenizer, seed=2)
    proc, port = serve_cli("--long", long, "--short", short, "--api-key", "k")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(
            model="l2s-short", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert r.model == "l2s-short" and r.usage.completion_tokens <= 4
        # no calibration given: auto is off and a request naming no model gets the long model
        r = client.chat.completions.create(
            model="", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert r.model == "l2s-long"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bad", max_retries=0).models.list()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


@pytest.mark.slow
def test_l2s_serve_with_no_flags_serves_the_last_quickstart_run(
    tmp_path, pico_tokenizer, serve_cli, monkeypatch
):
    """After a quickstart, plain `l2s serve` serves long + the run's best short model, and auto works."""
    import httpx
    from test_quickstart import fake_run

    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    choose_served(run, family, ["rl", "dpo"])
    monkeypatch.setenv("L2S_CACHE", str(family))  # the default family folder, where the pointer is
    proc, port = serve_cli()
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["auto_threshold"] == 0.9
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        r = client.chat.completions.create(
            model="l2s-auto", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert r.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"l2s-short = {run / 'models' / 'rl'} from the last quickstart run {run}" in out
    assert "auto threshold 0.900" in out
