"""`l2s` — the one console entry point. A thin list of subcommands.

Each subcommand is a Config class and a `run(cfg)`: its flags are generated from the Config's fields
(`l2s.flags`), `--config FILE.yaml` sets any of them, and flags override the YAML. Only the chosen
subcommand's module is imported, and heavy imports (torch, transformers, TRL, vLLM) happen inside the
`run` functions, so `l2s --help` stays fast. A `UserError` anywhere becomes one line on stderr and
exit code 2.

`l2s COMMAND --help` keeps the flags it generated in `~/.cache/l2s/help/` (under `$XDG_CACHE_HOME`
when set) and replays them while nothing they came from has changed: not one of the source files
imported to generate them (l2s's, pydantic's, Python's), nor the environment, the working directory
or the Python. Importing pydantic alone takes most of 0.1 s, so the cached help skips the Config and
pydantic altogether; it prints the same text. `make setup` fills the cache for every subcommand
(`warm_help_cache`), so even the first `--help` in the repository folder replays it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from l2s import __version__
from l2s.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Command:
    """A subcommand: its Config class and `run(cfg)` ("module:name"), and a runnable example."""

    name: str
    example: str
    help: str
    config: str
    run: str
    positional: tuple[str, ...] = ()  # fields taken as positional arguments
    yaml: bool = True  # accepts --config FILE.yaml


COMMANDS: list[Command] = [
    Command(
        "init",
        "l2s init --preset tiny --out /tmp/l2s-tiny",
        "Build the embedded workload's model family (tokenizer, base, short, long-sft, long).",
        "l2s.embedded.build:InitConfig",
        "l2s.embedded.build:run",
    ),
    Command(
        "sample",
        "l2s sample --model ~/.cache/l2s/embedded/long --task arith --n 8 --limit 50 --out samples.jsonl",
        "Sample n completions per prompt through an engine into a resumable samples.jsonl.",
        "l2s.sampling:SampleConfig",
        "l2s.sampling:run",
    ),
    Command(
        "eval",
        "l2s eval --models long=~/.cache/l2s/embedded/long,short=~/.cache/l2s/embedded/short --n 1000 --out runs/eval",
        "Evaluate models on a task's held-out split; writes samples, report.json, report.md and pareto.png.",
        "l2s.evaluate:EvalConfig",
        "l2s.evaluate:run",
    ),
    Command(
        "report",
        "l2s report runs/eval",
        "Re-render report.json, report.md and pareto.png from an eval run folder.",
        "l2s.report:ReportConfig",
        "l2s.report:run",
        positional=("run_dir",),
        yaml=False,
    ),
    Command(
        "calibrate",
        "l2s calibrate runs/eval --tolerance 0.01",
        "Map reasoning_effort levels to measured models and thinking budgets; writes effort.json.",
        "l2s.effort:CalibrateConfig",
        "l2s.effort:run",
        positional=("run_dir",),
        yaml=False,
    ),
    Command(
        "rl",
        "l2s rl --init ~/.cache/l2s/embedded/long-sft --task arith --config configs/rl_full.yaml --out runs/long",
        "Kimi k1.5 RL (online policy mirror descent); the full stage, or long2short with the length penalty.",
        "l2s.rl.config:RLConfig",
        "l2s.rl.trainer:run",
    ),
    Command(
        "derive",
        "l2s derive --method merge --long ~/.cache/l2s/embedded/long --short ~/.cache/l2s/embedded/short --alpha 0.5 --out runs/merge-0.5",
        "Derive a short-CoT model: merge | shortest-rs | dpo | rl | budget.",
        "l2s.methods:method_configs",
        "l2s.methods:run_method",
    ),
    Command(
        "serve",
        "l2s serve --port 8000   # serves the quickstart's models, or the embedded family",
        "OpenAI-compatible server for the whole family with mode=short|long|auto.",
        "l2s.server.settings:ServeSettings",
        "l2s.server.cli:run",
    ),
    Command(
        "ui",
        "l2s ui --server http://127.0.0.1:8000",
        "Gradio demo comparing short, long and auto side by side.",
        "l2s.ui.app:UISettings",
        "l2s.ui.app:run",
        yaml=False,
    ),
    Command(
        "quickstart",
        "l2s quickstart --out runs/quickstart",
        "Build (or reuse) the embedded family, derive short models, evaluate and report.",
        "l2s.quickstart:QuickstartConfig",
        "l2s.quickstart:run_cli",
    ),
    Command(
        "convert-gguf",
        "l2s convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2",
        "Convert a GGUF file into an ordinary Hugging Face checkpoint folder (de-quantized).",
        "l2s.gguf:ConvertConfig",
        "l2s.gguf:run",
        positional=("gguf",),
        yaml=False,
    ),
]
BY_NAME = {c.name: c for c in COMMANDS}


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _config_of(cmd: Command):
    """The Config class of a command, or {method: Config} for derive (a function that builds it)."""
    target = _load(cmd.config)
    return target if isinstance(target, type) else target()


def _add_flags(p: argparse.ArgumentParser, cmd: Command) -> None:
    """The chosen subcommand's flags, generated from its Config (derive: one group per method). `p` may
    be a `l2s.flags.FlagRecorder` standing in for the parser."""
    from l2s.flags import add_config_flags, add_field

    if cmd.yaml:
        p.add_argument("--config", default=None, help="YAML file of settings; flags override it")
    target = _config_of(cmd)
    if isinstance(target, dict):  # derive: {method: Config}
        p.add_argument("--method", required=True, help=" | ".join(target))
        owners: dict[str, list[str]] = {}
        for method, cls in target.items():
            for field in cls.model_fields:
                owners.setdefault(field, []).append(method)
        groups: dict[tuple[str, ...], list[str]] = {}
        for field, methods in owners.items():
            groups.setdefault(tuple(methods), []).append(field)
        for methods, fields in groups.items():
            title = "every method" if len(methods) == len(target) else ", ".join(methods)
            g = p.add_argument_group(title)
            for field in fields:
                infos = [target[m].model_fields[field] for m in methods]
                same = len({repr(i.default) for i in infos}) == 1
                add_field(g, field, infos[0], show_default=same)
        return
    for name in cmd.positional:
        info = target.model_fields[name]
        p.add_argument(name, help=info.description)
    add_config_flags(p, target.model_fields, skip=cmd.positional)


# Shell bookkeeping that changes with every `cd` or nested shell, and the variables make sets for its
# recipes (so `make setup` can warm the cache for the shell that ran it); no Config reads them.
_VOLATILE_ENV = frozenset(
    {"PWD", "OLDPWD", "SHLVL", "_", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
)


def _help_context() -> str:
    """A digest of what a Config's defaults may depend on besides source code (no values are stored)."""
    import hashlib
    import json

    env = sorted((k, v) for k, v in os.environ.items() if k not in _VOLATILE_ENV)
    text = json.dumps([env, os.getcwd(), sys.version, sys.executable, str(Path(__file__).parent)])
    return hashlib.sha256(text.encode()).hexdigest()


def _help_cache_file(name: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return root / "l2s" / "help" / f"{name}.json"


def _source_stamps() -> dict[str, list[int]]:
    """{file: [mtime_ns, size]} of every imported module that has a file."""
    stamps = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and file not in stamps:
            try:
                st = os.stat(file)
            except OSError:
                continue
            stamps[file] = [st.st_mtime_ns, st.st_size]
    return stamps


def _read_help_cache(path: Path, context: str) -> dict | None:
    """The cached flags at `path`, if they were made in this `context` from unchanged sources and
    replay cleanly (a hand-edited file is regenerated, never trusted)."""
    import json

    from l2s.flags import replay

    try:
        cached = json.loads(path.read_text())
        if cached["context"] != context:
            return None
        for file, stamp in cached["sources"].items():
            st = os.stat(file)
            if [st.st_mtime_ns, st.st_size] != stamp:
                return None
        replay(cached["flags"], argparse.ArgumentParser(add_help=False))
        return cached["flags"]
    except Exception:  # unreadable, stale or malformed: generate the flags instead
        return None


def _add_help_flags(p: argparse.ArgumentParser, cmd: Command) -> None:
    """`_add_flags` for `l2s COMMAND --help`: replayed from the cache, else generated and cached."""
    from l2s.flags import FlagRecorder, replay

    try:
        path, context = _help_cache_file(cmd.name), _help_context()
    except (OSError, RuntimeError):  # no working directory, or no home folder: no cache
        _add_flags(p, cmd)
        return
    flags = _read_help_cache(path, context)
    if flags is not None:
        replay(flags, p)
        return
    recorder = FlagRecorder(p)
    _add_flags(recorder, cmd)
    if recorder.book["portable"]:
        import json

        from l2s.checkpoint import atomic_write_text

        entry = {"context": context, "sources": _source_stamps(), "flags": recorder.book}
        with contextlib.suppress(OSError):  # a read-only cache folder only costs speed
            atomic_write_text(path, json.dumps(entry))


def warm_help_cache() -> None:
    """Generate and cache every subcommand's flags, as its first `--help` would, so that first call
    already replays them (`make setup` runs this in the repository folder after installing)."""
    for cmd in COMMANDS:
        build_parser([cmd.name, "--help"])


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With `argv`, only the subcommand it names gets its flags (and imports its Config)."""
    parser = _Parser(
        prog="l2s", description="long2short: derive, measure and serve token-efficient reasoning models."
    )
    parser.add_argument("--version", action="version", version=f"l2s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # `argv=None` (tests, introspection): every subcommand gets its flags.
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    help_only = argv is not None and len(argv) == 2 and argv[1] in ("-h", "--help")
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=f"example:\n  {cmd.example}\n\n{cmd.help}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if help_only and cmd.name == chosen:
            _add_help_flags(p, cmd)  # nothing to parse but the help: the flags' text is all it needs
        elif argv is None or cmd.name == chosen:
            _add_flags(p, cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    cmd = BY_NAME[args.command]
    try:
        from l2s.config import load_config
        from l2s.flags import flag_values

        target = _config_of(cmd)
        if isinstance(target, dict):
            result = _load(cmd.run)(args)
        else:
            cfg = load_config(target, getattr(args, "config", None), flag_values(args, target.model_fields))
            result = _load(cmd.run)(cfg)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except UserError as e:
        print(f"l2s {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"l2s {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Tear down torch.distributed's process group, when a launcher (torchrun, accelerate) started one,
    while the interpreter is still whole: left to interpreter shutdown, gloo's worker threads can abort
    a process whose work is done ("terminate called without an active exception", SIGABRT; seen on a
    loaded machine at the end of a two-process `l2s rl`). Torch is not imported for this."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
