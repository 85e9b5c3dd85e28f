"""The two Dockerfiles, checked without a Docker engine (none runs on this machine or on CI).

What can be checked here is checked for real: every instruction is parsed; the image's CMD is parsed by
the real `l2s` argument parser (so a renamed flag breaks this test, not a user's deployment); the
extras it installs exist; the files it COPYs are enough to build and install l2s (a wheel is built from
exactly those files, in a folder holding nothing else, and installed apart from this checkout); and that
install serves, with the image's own HEALTHCHECK command answering 0 while the server is up and non-zero
once it is gone. What cannot be checked here is the image build itself (apt, the CUDA base, vLLM's CUDA
wheel).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"gpu": ROOT / "Dockerfile", "cpu": ROOT / "Dockerfile.cpu"}


def parse(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, `\\` continuations joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: a continuation runs off the end"
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def first(instructions, name):
    hits = [a for i, a in instructions if i == name]
    assert hits, f"no {name}"
    return hits[-1]


def copied(instructions) -> list[str]:
    """The context paths the image COPYs (sources of every COPY; the destination is dropped)."""
    paths = []
    for ins, args in instructions:
        if ins == "COPY":
            parts = shlex.split(args)
            assert not any(p.startswith("--from") for p in parts), "multi-stage COPY: update this test"
            paths += parts[:-1]
    return paths


def ignored(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p.lstrip("./")) or fnmatch.fnmatch(rel, p) for p in patterns)


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_shape(kind, pyproject):
    ins = parse(DOCKERFILES[kind])
    base = first(ins, "FROM")
    assert base.startswith("nvidia/cuda:" if kind == "gpu" else "python:3.1"), base

    # runs as a named non-root user, and switches before the entrypoint runs anything
    order = [i for i, _ in ins]
    user = first(ins, "USER")
    assert user not in ("root", "0") and order.index("USER") < order.index("ENTRYPOINT")
    assert any(i == "RUN" and "useradd" in a and user in a for i, a in ins)

    # the entrypoint is the console script pyproject installs; the CMD parses with the real CLI
    entry = exec_form(first(ins, "ENTRYPOINT"))
    assert entry == ["l2s"] and "l2s" in pyproject["project"]["scripts"]
    cmd = exec_form(first(ins, "CMD"))
    from l2s.cli import build_parser

    args = build_parser().parse_args(cmd)
    assert args.command == "serve" and args.host == "0.0.0.0"
    if kind == "gpu":
        assert args.engine == "vllm"

    # the port the server binds is the one exposed and the one the health check asks
    port = str(args.port)
    assert first(ins, "EXPOSE").split() == [port]
    health = first(ins, "HEALTHCHECK")
    assert re.search(rf"CMD .*127\.0\.0\.1:{port}/health(\s|$)", health), health

    # extras asked for exist; the GPU image takes the CUDA vLLM, the CPU image needs no GPU package
    installs = " ".join(a for i, a in ins if i == "RUN" and "pip install" in a)
    extras = installs.split('".[', 1)[1].split("]", 1)[0].split(",")
    assert set(extras) <= set(pyproject["project"]["optional-dependencies"]), extras
    assert ("vllm" in extras) == (kind == "gpu") and {"serve", "ui"} <= set(extras)

    # the embedded family's cache lives in the image user's home (the CPU image builds it as that user)
    env = " ".join(a for i, a in ins if i == "ENV")
    assert f"L2S_CACHE=/home/{user}/.cache/l2s/embedded" in env
    if kind == "cpu":
        runs_after_user = [a for i, a in ins[order.index("USER") :] if i == "RUN"]
        assert "l2s init" in runs_after_user


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_copied_paths_exist_cover_the_package_and_are_not_dockerignored(kind, pyproject):
    paths = copied(parse(DOCKERFILES[kind]))
    for p in paths:
        assert (ROOT / p).exists(), f"{DOCKERFILES[kind].name} copies {p}, which is not in the repository"
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in paths if ignored(p, patterns)], "a COPY source is excluded by .dockerignore"
    # every folder setuptools maps into the package is copied, and the readme pyproject names
    package_dirs = {d.split("/")[0] for d in pyproject["tool"]["setuptools"]["package-dir"].values()}
    assert package_dirs | {"pyproject.toml", pyproject["project"]["readme"]} <= set(paths)
    # the build context leaves out what would make it huge or leak local state
    for heavy in (".venv", ".venv-vllm", ".git", "runs"):
        assert ignored(heavy, patterns), f".dockerignore should exclude {heavy}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="the image's HEALTHCHECK uses curl")
def test_what_the_cpu_image_copies_installs_and_serves_with_a_passing_healthcheck(
    tmp_path, pico_tokenizer, free_port
):
    from l2s.embedded.model import save_random_model

    ins = parse(DOCKERFILES["cpu"])
    context = tmp_path / "context"
    context.mkdir()
    for p in copied(ins):
        src = ROOT / p
        if src.is_dir():
            shutil.copytree(src, context / p, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, context / p)
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # no build isolation and no deps: the build must work from the copied files alone, offline
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, context], check=True)
    (wheel,) = dist.glob("l2s-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)

    env = {**os.environ, "PYTHONPATH": str(site), "L2S_CACHE": str(tmp_path / "cache")}
    where = subprocess.run(
        [sys.executable, "-c", "import l2s, l2s.server.app, l2s.ui; print(l2s.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(site)), f"imported l2s from {where}, not from the wheel"

    long = save_random_model(tmp_path / "long", pico_tokenizer, seed=1)
    short = save_random_model(tmp_path / "short", pico_tokenizer, seed=2)
    port = free_port()
    cmd = exec_form(first(ins, "CMD"))
    cmd = [*cmd[: cmd.index("--port") + 1], str(port), "--long", str(long), "--short", str(short)]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    health = first(ins, "HEALTHCHECK").split(" CMD ", 1)[1].replace(":8000/", f":{port}/")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from l2s.cli import main; sys.exit(main())", *cmd],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.2)
        # listening is not ready (models load after bind in some servers): give the check a few tries
        checks = [subprocess.run(["sh", "-c", health], capture_output=True)]
        while checks[-1].returncode != 0 and len(checks) < 10:
            time.sleep(1)
            checks.append(subprocess.run(["sh", "-c", health], capture_output=True))
        assert checks[-1].returncode == 0, f"HEALTHCHECK failed: {health}: {checks[-1].stderr!r}"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert subprocess.run(["sh", "-c", health], capture_output=True).returncode != 0
