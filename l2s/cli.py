"""`l2s` — the one console entry point. A thin list of subcommands.

Each subcommand only parses flags and hands them to the module that does the work; heavy imports
(torch, transformers, TRL, vLLM) happen inside those modules, so `l2s --help` stays fast. A `UserError`
anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from l2s import __version__
from l2s.errors import UserError

DEFAULT_CACHE = os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded"))


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd(sub, name: str, example: str, help_: str, handler: str) -> argparse.ArgumentParser:
    """Add a subcommand whose help starts with a runnable example; `handler` is 'module:function'."""
    p = sub.add_parser(
        name,
        help=help_,
        description=f"example:\n  {example}\n\n{help_}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(_handler=handler)
    return p


def _add_init(sub) -> None:
    p = _cmd(
        sub,
        "init",
        "l2s init --preset tiny --out /tmp/l2s-tiny",
        "Build the embedded workload's model family (tokenizer, base, short, long-sft, long).",
        "l2s.embedded.build:cli",
    )
    p.add_argument(
        "--out", default=DEFAULT_CACHE, help=f"cache folder for the family (default {DEFAULT_CACHE})"
    )
    p.add_argument(
        "--preset", default="default", help="tiny (seconds, for tests) | default (the real workload)"
    )
    p.add_argument("--seed", type=int, default=None, help="training seed (default from the preset)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished family")


def _add_sample(sub) -> None:
    p = _cmd(
        sub,
        "sample",
        "l2s sample --model ~/.cache/l2s/embedded/long --task arith --n 8 --limit 50 --out samples.jsonl",
        "Sample n completions per prompt through an engine into a resumable samples.jsonl.",
        "l2s.sampling:cli",
    )
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--task", default="arith", help="arith | jsonl:PATH")
    p.add_argument("--split", default="test", help="train | test")
    p.add_argument("--limit", type=int, default=None, help="number of prompts (default: the whole split)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument(
        "--max-thinking-tokens", type=int, default=None, help="thinking budget (force </think> after N)"
    )
    p.add_argument("--engine", default="hf", help="hf | vllm")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="samples.jsonl to write (resumed if it exists)")
    p.add_argument("--force", action="store_true", help="start over even if --out holds other samples")


def _add_eval(sub) -> None:
    p = _cmd(
        sub,
        "eval",
        "l2s eval --models long=~/.cache/l2s/embedded/long,short=~/.cache/l2s/embedded/short --n 1000 --out runs/eval",
        "Evaluate models on a task's held-out split; writes samples, report.json, report.md and pareto.png.",
        "l2s.evaluate:cli",
    )
    p.add_argument(
        "--models", required=True, help="comma-separated name=PATH pairs (name 'long' is the reference)"
    )
    p.add_argument("--task", default="arith")
    p.add_argument("--n", type=int, default=1000, help="number of held-out problems")
    p.add_argument("--samples", type=int, default=1, help="samples per problem")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--max-thinking-tokens", type=int, default=None, help="thinking budget (force </think>)")
    p.add_argument("--engine", default="hf", help="hf | vllm")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--force", action="store_true")
    p.add_argument(
        "--auto-tolerance",
        type=float,
        default=None,
        help="calibration of auto (short + long given): accuracy it may give up vs long, 0.01 = 1 point (default 0)",
    )


def _add_report(sub) -> None:
    p = _cmd(
        sub,
        "report",
        "l2s report runs/eval",
        "Re-render report.json, report.md and pareto.png from an eval run folder.",
        "l2s.report:cli",
    )
    p.add_argument("run_dir", help="folder written by `l2s eval` or `l2s quickstart`")


def _add_rl(sub) -> None:
    p = _cmd(
        sub,
        "rl",
        "l2s rl --init ~/.cache/l2s/embedded/long-sft --task arith --config configs/rl_full.yaml --out runs/long",
        "Kimi k1.5 RL (online policy mirror descent); the full stage, or long2short with the length penalty.",
        "l2s.rl.trainer:cli",
    )
    p.add_argument("--init", required=True, help="checkpoint to start from")
    p.add_argument("--task", default=None, help="task with verifiable answers: arith | jsonl:PATH")
    p.add_argument(
        "--config",
        default=None,
        help="YAML with RL settings (configs/rl_full.yaml, configs/rl_long2short.yaml)",
    )
    p.add_argument("--out", required=True, help="output checkpoint folder (a killed run resumes when rerun)")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--tau", type=float, default=None, help="KL weight towards the iteration's start policy")
    p.add_argument("--k", type=int, default=None, help="samples per prompt (>= 2)")
    p.add_argument("--max-tokens", type=int, default=None, help="maximum rollout length")
    p.add_argument("--length-penalty-weight", type=float, default=None, help="Kimi length reward weight")
    p.add_argument("--segment-tokens", type=int, default=None, help="partial rollouts: tokens per iteration")
    p.add_argument("--time-limit-minutes", type=float, default=None, help="stop training after this long")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--engine", default=None, help="hf | vllm")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def _add_derive(sub) -> None:
    p = _cmd(
        sub,
        "derive",
        "l2s derive --method merge --long ~/.cache/l2s/embedded/long --short ~/.cache/l2s/embedded/short --alpha 0.5 --out runs/merge-0.5",
        "Derive a short-CoT model: merge | shortest-rs | dpo | rl.",
        "l2s.methods:cli",
    )
    p.add_argument("--method", required=True, help="merge | shortest-rs | dpo | rl")
    p.add_argument(
        "--config", default=None, help="YAML of the method (configs/derive_*.yaml); flags override it"
    )
    p.add_argument("--long", default=None, help="the long-CoT checkpoint (every method starts from it)")
    p.add_argument(
        "--out", required=True, help="output checkpoint folder (merge --sweep: one folder per alpha)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing output and start over")
    p.add_argument("--seed", type=int, default=None)
    g = p.add_argument_group("merge")
    g.add_argument("--short", default=None, help="the short-CoT checkpoint")
    g.add_argument("--base", default=None, help="common ancestor (task_arithmetic, ties, dare_ties)")
    g.add_argument(
        "--alpha", type=float, default=None, help="weight of the long model in [0, 1] (default 0.5)"
    )
    g.add_argument("--sweep", default=None, help="comma-separated alphas, e.g. 0.1,0.3,0.5,0.7,0.9")
    g.add_argument("--merge-method", default=None, help="linear | task_arithmetic | ties | dare_ties")
    g.add_argument("--density", type=float, default=None, help="ties/dare_ties: fraction of task vector kept")
    g = p.add_argument_group("shortest-rs and dpo: sampling from the long model")
    g.add_argument("--task", default=None, help="arith | jsonl:PATH (its train split is sampled)")
    g.add_argument("--limit", type=int, default=None, help="number of train prompts")
    g.add_argument("--n", type=int, default=None, help="samples per prompt (Kimi: 8)")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--max-tokens", type=int, default=None, help="max completion tokens per sample")
    g.add_argument("--engine", default=None, help="hf | vllm")
    g.add_argument("--samples", default=None, help="reuse this samples.jsonl (sampled from --long) instead")
    g = p.add_argument_group("shortest-rs and dpo: training (TRL)")
    g.add_argument(
        "--student", default=None, help="shortest-rs: train this model instead of --long (distill)"
    )
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument("--learning-rate", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None, help="per-device train batch size")
    g.add_argument("--beta", type=float, default=None, help="dpo: KL strength")
    g.add_argument("--loss-type", default=None, help="dpo: TRL loss type (sigmoid, ipo, hinge, ...)")
    g.add_argument("--max-pairs-per-prompt", type=int, default=None, help="dpo: cap on pairs per prompt")
    g.add_argument(
        "--ratio", type=float, default=None, help="dpo: correct but >= ratio x shortest is rejected"
    )
    g = p.add_argument_group("rl")
    g.add_argument("--iterations", type=int, default=None, help="RL iterations")
    g.add_argument("--length-penalty-weight", type=float, default=None)


def _add_serve(sub) -> None:
    p = _cmd(
        sub,
        "serve",
        "l2s serve --port 8000   # serves the embedded family",
        "OpenAI-compatible server for the whole family with mode=short|long|auto.",
        "l2s.server.cli:cli",
    )
    p.add_argument("--long", default=None, help="long-CoT checkpoint (default: the embedded family's)")
    p.add_argument("--short", default=None, help="short-CoT checkpoint (default: the embedded family's)")
    p.add_argument("--model", action="append", default=None, help="extra name=CKPT (repeatable)")
    p.add_argument("--engine", default=None, help="hf (default) | vllm")
    p.add_argument("--api-key", default=None, help="require this Bearer key on /v1 (or set L2S_API_KEY)")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    p.add_argument("--calibration", default=None, help="calibration.json from `l2s eval` (turns on auto)")
    p.add_argument(
        "--auto-threshold", type=float, default=None, help="auto's confidence threshold, set by hand"
    )
    p.add_argument("--config", default=None, help="configs/serve.yaml")


def _add_ui(sub) -> None:
    p = _cmd(
        sub,
        "ui",
        "l2s ui --server http://127.0.0.1:8000",
        "Gradio demo comparing short, long and auto side by side.",
        "l2s.ui.app:cli",
    )
    p.add_argument("--server", default="http://127.0.0.1:8000", help="URL of the l2s server")
    p.add_argument("--api-key", default=None, help="the server's API key (default: env L2S_API_KEY)")
    p.add_argument(
        "--serve", action="store_true", help="start the embedded server in-process (ignores --server)"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface the UI binds; 0.0.0.0 exposes it")
    p.add_argument("--port", type=int, default=7860, help="TCP port of the UI")
    p.add_argument("--run-dir", default=None, help="run folder for the Report tab (runs/quickstart)")


def _add_quickstart(sub) -> None:
    p = _cmd(
        sub,
        "quickstart",
        "l2s quickstart --out runs/quickstart",
        "Build (or reuse) the embedded family, derive short models, evaluate and report.",
        "l2s.quickstart:cli",
    )
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--cache", default=DEFAULT_CACHE)
    p.add_argument("--preset", default="default")
    p.add_argument("--n", type=int, default=1000, help="held-out problems to evaluate")
    p.add_argument("--force", action="store_true")


COMMANDS: list[Callable] = [
    _add_init,
    _add_sample,
    _add_eval,
    _add_report,
    _add_rl,
    _add_derive,
    _add_serve,
    _add_ui,
    _add_quickstart,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="l2s", description="long2short: derive, measure and serve token-efficient reasoning models."
    )
    parser.add_argument("--version", action="version", version=f"l2s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 0
    module, func = args._handler.split(":")
    try:
        handler = getattr(importlib.import_module(module), func)
        return int(handler(args) or 0)
    except UserError as e:
        print(f"l2s {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"l2s {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
