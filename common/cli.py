"""The runner every command line shares, and its argument validators."""
from __future__ import annotations

import argparse
import sys
import traceback

from .errors import UserError


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every command, before or after the subcommand's own arguments."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a user error too")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug_flag(sub)


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse and dispatch. A ``UserError`` (and OSError, for files) becomes one line and exit code 2;
    ``--debug`` adds its traceback. Any other exception is a bug and keeps its traceback."""
    _add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # a command group without its subcommand
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): nothing half-written was left. Re-running picks up the finished stages; "
              "`siamese train --resume` continues a training run from its last checkpoint.", file=sys.stderr)
        return 130
    except (UserError, OSError) as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
