"""A fuzz over the command line: generated argument lists for every command (its own flags with random values,
paths with spaces and Unicode) end in exit 0 or one `error:`/usage line, never in a traceback.

Inputs are always paths that do not exist (or a closed port on this machine for URLs), so no generated command
does minutes of real work or reaches another host; what is fuzzed is the parsing and validation in front of
the work."""
import argparse
import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vespa_app.cli import build_parser, main

URL = "http://127.0.0.1:9"  # the discard port: nothing listens there
NAMES = st.text(alphabet="abcxyz _-.éü東京 ", min_size=1, max_size=12).map(str.strip).filter(bool)
NUMBERS = st.one_of(st.integers(-5, 600).map(str), st.floats(-2, 3, allow_nan=False).map(lambda f: f"{f:.3g}"),
                    st.sampled_from(["0", "auto", "nan", "1e9", "", "x"]))
JUNK = st.sampled_from(["", "x", "-", "auto", "-1", "0", "1.5", "1e400", "0x10", "٣"])
PATH_FLAGS = {"--data", "--base", "--out", "--pairs", "--corpus", "--queries", "--qrels", "--guard", "--models",
              "--train-data", "--json", "--index", "--package", "--ledger", "--failed", "--texts", "--vectors-out",
              "--anchor-data", "--general-pairs", "--general", "--colbert", "--key", "--eval-data", "--reference",
              "--sts"}
SKIP = {"--debug", "-h", "--help", "--vespa", "--target", "--url", "--query-url"}  # tracebacks asked for; hosts


def _commands():
    parser = build_parser()
    found = {}

    def walk(p, prefix):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        walk(sub, prefix + [name])
                    else:
                        found[" ".join(prefix + [name])] = sub
    walk(parser, [])
    return found


COMMANDS = _commands()


def _value(draw, action, root):
    flag = action.option_strings[0] if action.option_strings else action.dest
    if flag in PATH_FLAGS or action.dest in ("export_dir", "out_dir", "package", "model_dir", "index", "data",
                                             "teacher", "tuned", "onnx", "tokenizer", "out", "base"):
        return str(root / draw(NAMES))
    if action.dest in ("url", "target"):
        return URL
    if action.choices:
        return draw(st.one_of(st.sampled_from(list(action.choices)), NAMES))
    if action.dest == "text":
        return draw(st.one_of(NAMES, st.just("")))
    return draw(st.one_of(NUMBERS, NAMES, JUNK))


@st.composite
def argument_lists(draw, command, root):
    parser = COMMANDS[command]
    argv = command.split()
    for action in parser._actions:
        if not action.option_strings and action.dest not in ("help",):  # positionals, always given
            argv.append(_value(draw, action, root))
    options = [a for a in parser._actions if a.option_strings and not set(a.option_strings) & SKIP]
    for action in draw(st.lists(st.sampled_from(options), max_size=4, unique_by=id)):
        flag = action.option_strings[0]
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, _value(draw, action, root)]
    for flag in ("--data", "--base", "--out"):  # never the bundled data or the default base: no real work
        if any(flag in a.option_strings for a in options) and flag not in argv and command not in ("query", "feed"):
            argv += [flag, str(root / f"missing {flag[2:]} ü")]
    return argv


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_argument_list_ends_in_a_traceback(command, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz ü")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(argument_lists(command, root))
    def check(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: a usage line, exit 2
                code = e.code
        assert code in (0, 1, 2, 130), (argv, code, err.getvalue()[-2000:])
        assert "Traceback" not in err.getvalue(), (argv, err.getvalue()[-2000:])

    check()
