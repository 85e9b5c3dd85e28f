"""The pinned installs: requirements/lock*.txt must fit what `make setup` and `make setup-vllm` install, and
a lock that does not makes `make` stop before installing, naming each package (requirements/check_lock.py)."""

from __future__ import annotations

import doctest
import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "requirements" / "check_lock.py"

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _check_command(target: str, venv_var: str, tmp_path: Path) -> list[str]:
    """The check_lock command `make TARGET` runs for a venv that does not exist yet (`make -n`)."""
    dry = subprocess.run(
        ["make", "-n", target, f"{venv_var}={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if "check_lock.py" in line]
    assert len(lines) == 1, dry.stdout
    args = shlex.split(lines[0])
    assert args[1] == "requirements/check_lock.py"
    return args[1:]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


@needs_make
@pytest.mark.parametrize(("target", "venv_var", "lock"), [
    ("setup", "VENV", "requirements/lock.txt"),
    ("setup-vllm", "VVENV", "requirements/lock-vllm.txt"),
])  # fmt: skip
def test_the_committed_locks_fit_what_setup_installs(target, venv_var, lock, tmp_path):
    args = _check_command(target, venv_var, tmp_path)
    assert args[1] == lock
    done = _run(args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@needs_make
def test_a_pin_outside_pyprojects_range_or_a_missing_pin_is_named(tmp_path):
    args = _check_command("setup", "VENV", tmp_path)
    text = (ROOT / "requirements" / "lock.txt").read_text()
    bad = tmp_path / "lock.txt"
    lines = [line for line in text.splitlines() if not line.lower().startswith("gguf==")]
    bad.write_text("\n".join("fastapi==0.100.0" if line.startswith("fastapi==") else line for line in lines))
    done = _run([args[0], str(bad), *args[2:]])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "it pins fastapi==0.100.0 where pyproject.toml needs fastapi>=0.110" in done.stderr
    assert "it pins no version of gguf, which pyproject.toml needs (gguf>=0.10)" in done.stderr
    assert "run `make lock`" in done.stderr


def test_a_requirement_the_makefile_adds_is_checked_too(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text((ROOT / "requirements" / "lock.txt").read_text())
    done = _run([str(CHECK), str(lock), "torch==2.12.0"])
    assert done.returncode == 2
    assert "it pins torch==2.13.0 where the Makefile needs torch==2.12.0" in done.stderr


@pytest.mark.parametrize(("content", "says"), [
    ("# a comment\nnumpy>=2\n", "line 2 'numpy>=2' is not NAME==VERSION"),
    ("numpy==two\n", "line 1 'numpy==two' is not NAME==VERSION"),
])  # fmt: skip
def test_a_line_that_is_not_a_pin_is_one_line_with_its_number(content, says, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(content)
    done = _run([str(CHECK), str(lock)])
    assert done.returncode == 2
    assert says in done.stderr and done.stderr.count("\n") == 1


def test_a_missing_lock_or_an_unknown_extra(tmp_path):
    done = _run([str(CHECK), str(tmp_path / "nope.txt")])
    assert done.returncode == 2 and "nope.txt not found" in done.stderr
    done = _run([str(CHECK), "requirements/lock.txt", "--extras", "train,gpus"])
    assert done.returncode == 2 and "has no extra 'gpus'" in done.stderr


@needs_make
def test_make_setup_stops_before_installing_with_a_lock_that_does_not_fit(tmp_path):
    """The real `make setup` with a broken lock: the check runs after creating the venv and installing
    `packaging` (seconds), and nothing else is installed."""
    bad = tmp_path / "lock.txt"
    bad.write_text(
        (ROOT / "requirements" / "lock.txt").read_text().replace("\nfastapi==", "\nfastapi==0.1.0\n#")
    )
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "setup", f"LOCK={bad}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    assert "it pins fastapi==0.1.0 where pyproject.toml needs fastapi>=0.110" in done.stderr
    assert not (venv / ".installed").exists()
    assert not list(venv.glob("lib/python*/site-packages/torch"))


def test_doctests():
    spec = importlib.util.spec_from_file_location("check_lock", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
