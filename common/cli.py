"""The runner every command line shares, its argument validators,
and options dataclasses whose fields are flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback

from .device import use
from .errors import UserError

# The sections of a long command's --help, in the order they print: the common ones first.
GROUPS = ("data", "base and recipe", "training", "export", "serving and package", "evaluation", "output")


def arg_group(parser: argparse.ArgumentParser, title: str):
    """The parser's section ``title`` (made on first use): where a flag is listed in ``--help``."""
    found = next((g for g in parser._action_groups if g.title == title), None)
    return found or parser.add_argument_group(title)


def add_groups(parser: argparse.ArgumentParser) -> None:
    """Make the sections of ``GROUPS`` now, so ``--help`` lists them in that order, whatever adds to them."""
    for title in GROUPS:
        arg_group(parser, title)


def option(
    default=None,
    help: str = "",
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    group: str | None = None,
    **argparse_kw,
):
    """A field of an options dataclass that a command takes as ``--field-name`` (``flag``: another name;
    ``aliases``: older spellings, still taken; ``group``: its section of ``--help``, one of ``GROUPS``).
    ``argparse_kw``: type (``bool``: an on/off flag, ``--x/--no-x``), choices (``--help`` lists them),
    action, metavar. A field without one is set by code, not by a flag. The one way fields become flags:
    ``TrainConfig``, ``RunOptions``, ``AppOptions``."""
    assert group is None or group in GROUPS, group
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return dataclasses.field(
        **factory, metadata={"help": help, "flag": flag, "aliases": aliases, "group": group, **argparse_kw}
    )


def is_option(f: dataclasses.Field) -> bool:
    return "help" in f.metadata


def add_option_args(
    cls, parser: argparse.ArgumentParser, default_text=None, group: str | None = None
) -> None:
    """One flag per ``option`` field of ``cls``; an unset flag is None, so the field's default stands.
    ``default_text(field)``: what ``--help`` says of its default, in brackets after the help. Each flag goes
    to its field's ``--help`` section, else to ``group``'s, else to the parser's own list."""
    for f in filter(is_option, dataclasses.fields(cls)):
        kw = {k: v for k, v in f.metadata.items() if k not in ("help", "flag", "aliases", "group")}
        title = f.metadata["group"] or group
        target = arg_group(parser, title) if title else parser
        if kw.get("type") is bool:
            del kw["type"]
            kw["action"] = argparse.BooleanOptionalAction
        text = f.metadata["help"] or f.name.replace("_", " ")
        text += f" ({default_text(f)})" if default_text else ""
        target.add_argument(
            f.metadata["flag"] or "--" + f.name.replace("_", "-"),
            *f.metadata["aliases"],
            dest=f.name,
            default=None,
            help=text,
            **kw,
        )


def given_options(cls, args: argparse.Namespace) -> dict:
    """The ``option`` fields of ``cls`` that a parsed command line set."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if is_option(f) and getattr(args, f.name, None) is not None
    }


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


def _number_or_auto(text: str, low: float, high: float) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in [{low:g}, {high:g}] or 'auto', got {text!r}"
        ) from None
    if not low <= value <= high:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}] or 'auto', got {value}")
    return value


def alpha_value(text: str) -> float | str:
    """A merge weight: a number in [0, 1], or "auto"."""
    return _number_or_auto(text, 0.0, 1.0)


def bm25_weight_value(text: str) -> float | str:
    """hybrid-linear's BM25 weight: a number in [0, 100], or "auto" (where the command can choose it)."""
    return _number_or_auto(text, 0.0, 100.0)


def chunk_tokens_value(text: str) -> int | str:
    """Tokens per chunk (at least 8: a chunk holds its special tokens and some text), or "auto"."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of tokens or 'auto', got {text!r}"
        ) from None
    if value < 8:
        raise argparse.ArgumentTypeError(f"must be ≥ 8 tokens, got {value}")
    return value


def host_address(text: str) -> str:
    """An IP address to serve on."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an IP address such as 127.0.0.1, got {text!r}") from None


def app_name(text: str) -> str:
    """A Vespa application name: a lowercase letter, then lowercase letters, digits, _ or - (40 at most)."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", text):
        raise argparse.ArgumentTypeError(
            f"must start with a lowercase letter and hold only lowercase letters, "
            f"digits, _ and - (40 at most), got {text!r}"
        )
    return text


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every command, before or after the subcommand's own arguments."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of a user error too",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug_flag(sub)


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse and dispatch. A ``UserError`` (and OSError, for files) becomes one line and exit code 2;
    ``--debug`` adds its traceback. Any other exception is a bug and keeps its traceback."""
    _add_debug_flag(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: a command may re-launch itself
    if not getattr(args, "func", None):  # a command group without its subcommand
        parser.print_help()
        return 2
    try:
        if getattr(args, "device", None):  # the one device choice of every command that runs a model
            use(args.device)
        return args.func(args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted (Ctrl-C): nothing half-written was left. Re-running picks up the finished stages; "
            "`siamese train --resume` continues a training run from its last checkpoint.",
            file=sys.stderr,
        )
        return 130
    except (UserError, OSError) as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
