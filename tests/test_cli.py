"""The CLI: fast help, examples in every subcommand's help, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from l2s.cli import build_parser

SUBCOMMANDS = [
    "init",
    "sample",
    "eval",
    "report",
    "calibrate",
    "rl",
    "derive",
    "serve",
    "ui",
    "quickstart",
    "convert-gguf",
]


def run(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_subcommands_without_importing_torch():
    probe = "import sys, runpy; sys.argv=['l2s','--help']\ntry:\n    runpy.run_module('l2s.cli', run_name='__main__')\nexcept SystemExit: pass\nprint('TORCH' if 'torch' in sys.modules else 'NOTORCH')"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in SUBCOMMANDS:
        assert name in r.stdout
    assert r.stdout.strip().endswith("NOTORCH")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_help_starts_with_example(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    assert sub.description.startswith("example:\n  l2s ")


def test_bad_flag_is_one_line_exit_2():
    r = run("sample", "--model")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_user_error_is_one_line_exit_2(tmp_path):
    r = run(
        "sample", "--model", str(tmp_path / "missing"), "--task", "nope", "--out", str(tmp_path / "s.jsonl")
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2s sample: error:") and "Traceback" not in r.stderr
