"""The CLI: fast help, examples in every subcommand's help, one-line errors with exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_command_closes_the_process_group_a_launcher_opened(tmp_path):
    """A command run under torchrun tears its process group down before the interpreter exits (left to
    interpreter shutdown, gloo's threads can abort a finished process), error or not."""
    import torch.distributed as dist

    from l2s.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        code = main(["sample", "--model", str(tmp_path / "missing"), "--task", "nope", "--out", "s.jsonl"])
        assert code == 2 and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


HEAVY = ("torch", "transformers", "trl", "vllm", "mergekit", "matplotlib", "datasets", "pydantic")


def help_run(name: str, cache: Path, **env: str) -> tuple[str, list[str]]:
    """`l2s NAME --help` in a fresh interpreter with its help cache under `cache`: (stdout, heavy
    libraries it imported; pydantic counts as one here, as the cached help should not need it)."""
    probe = (
        f"import sys, runpy; sys.argv = ['l2s', {name!r}, '--help']\n"
        "try:\n    runpy.run_module('l2s.cli', run_name='__main__')\nexcept SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        f"print('\\nIMPORTED', *sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    full_env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "100", **env}
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=full_env
    )
    assert r.returncode == 0, r.stderr
    text, _, imported = r.stdout.rpartition("\nIMPORTED")
    return text, imported.split()


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_is_cached_and_unchanged(name, tmp_path, monkeypatch):
    first, heavy_first = help_run(name, tmp_path)
    assert not set(heavy_first) - {"pydantic"}, heavy_first  # no torch & co, even uncached
    assert (tmp_path / "l2s" / "help" / f"{name}.json").is_file()
    again, heavy_again = help_run(name, tmp_path)
    assert again == first and heavy_again == []  # replayed: same text, without pydantic
    monkeypatch.setenv("COLUMNS", "100")
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[name]
    assert first == sub.format_help()  # the help of the parser every other command line gets


def test_help_cache_follows_sources_and_environment(tmp_path):
    first, _ = help_run("init", tmp_path, L2S_CACHE="/family-one")
    assert "(default: /family-one)" in first
    # Another environment: the defaults it changes are not taken from the cache.
    other, _ = help_run("init", tmp_path, L2S_CACHE="/family-two")
    assert "(default: /family-two)" in other
    entry_file = tmp_path / "l2s" / "help" / "init.json"
    entry = json.loads(entry_file.read_text())
    entry["flags"]["calls"][-1]["kwargs"]["help"] = "FROM THE CACHE"
    entry_file.write_text(json.dumps(entry))
    assert "FROM THE CACHE" in help_run("init", tmp_path, L2S_CACHE="/family-two")[0]
    # A source file that changed since (here: its recorded size no longer matches) rebuilds the flags.
    source = next(f for f in entry["sources"] if f.endswith(os.path.join("l2s", "flags.py")))
    entry["sources"][source][1] += 1
    entry_file.write_text(json.dumps(entry))
    assert "FROM THE CACHE" not in help_run("init", tmp_path, L2S_CACHE="/family-two")[0]


def test_a_cache_warmed_under_make_serves_the_first_help_in_the_shell(tmp_path):
    """`make setup` runs `warm_help_cache` with make's variables in the environment; the shell that ran
    make, without them, then replays every subcommand's flags on its first `--help`."""
    shell = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "100"}  # as help_run sets it
    warm = {**shell, "MAKELEVEL": "1", "MAKEFLAGS": "w"}
    code = "from l2s.cli import warm_help_cache; warm_help_cache()"
    subprocess.run([sys.executable, "-c", code], check=True, env=warm, timeout=120)
    assert sorted(p.stem for p in (tmp_path / "l2s" / "help").glob("*.json")) == sorted(SUBCOMMANDS)
    text, heavy = help_run("derive", tmp_path)
    assert heavy == [] and "--method" in text  # replayed from the cache: pydantic never imported
