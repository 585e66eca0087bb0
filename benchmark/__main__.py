"""`python -m benchmark <command>`: every user mistake ends in one `error: ...` line and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import registry
from .contracts import UserError

COMMANDS = ("run", "grid", "pretrain", "budget", "table", "ls", "data", "plot", "claims", "report", "gc")
NO_REGISTRY = ("data",)    # commands that never read a card


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    # the console script `unibench` is the same parser under its own name
    prog = "unibench" if os.path.basename(sys.argv[0]) == "unibench" else "python -m benchmark"
    parser = _Parser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="{" + ",".join(COMMANDS) + "}")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"benchmark.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmark.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    parser.set_defaults(func=lambda args: choose("a command", sub.choices))
    for name, command in sub.choices.items():
        if name not in NO_REGISTRY:
            command.add_argument("--include-path", action="append", default=[], metavar="DIR",
                                 help=f"also read method/task cards from DIR (repeatable; also "
                                      f"${registry.INCLUDE_ENV}, {os.pathsep}-separated)")
    return parser


def choose(what: str, choices) -> int:
    """A command (or `plot` figure) was left out: one error line naming the choices."""
    raise UserError(f"choose {what}: {', '.join(choices)}")


def _one_line(exc: BaseException) -> str:
    """The message on one line (a multi-line message would read as several errors)."""
    return " ".join(str(exc).split("\n")).strip() or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        registry.add_include_path(getattr(args, "include_path", []))
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        return 2
    except UnicodeDecodeError as exc:   # a user's file in another encoding
        sys.stderr.write(f"error: cannot decode input as UTF-8 ({exc.reason} at byte {exc.start})\n")
        return 2
    except OSError as exc:              # a path the system refuses (permissions, /proc, name too long, ...)
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"error: {where}{exc.strerror or type(exc).__name__ + ': ' + str(exc)}\n")
        return 2
    except KeyboardInterrupt as exc:    # executors say what was finished and kept (`executors.Interrupted`)
        sys.stderr.write(f"error: {_one_line(exc) if str(exc) else 'interrupted'}\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
