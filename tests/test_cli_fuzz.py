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

from siamese.cli import build_parser, main

URL = "http://127.0.0.1:9"  # the discard port: nothing listens there
NAMES = st.text(alphabet="abcxyz _-.éü東京 ", min_size=1, max_size=12).map(str.strip).filter(bool)
NUMBERS = st.one_of(
    st.integers(-5, 600).map(str),
    st.floats(-2, 3, allow_nan=False).map(lambda f: f"{f:.3g}"),
    st.sampled_from(["0", "auto", "nan", "1e9", "", "x"]),
)
JUNK = st.sampled_from(["", "x", "-", "auto", "-1", "0", "1.5", "1e400", "0x10", "٣"])
PATH_FLAGS = {
    "--data",
    "--base",
    "--out",
    "--pairs",
    "--corpus",
    "--queries",
    "--qrels",
    "--guard",
    "--models",
    "--train-data",
    "--json",
    "--index",
    "--package",
    "--ledger",
    "--failed",
    "--texts",
    "--vectors-out",
    "--anchor-data",
    "--general-pairs",
    "--general",
    "--colbert",
    "--key",
    "--eval-data",
    "--reference",
    "--sts",
}
SKIP = {
    "--debug",
    "-h",
    "--help",
    "--vespa",
    "--target",
    "--url",
    "--query-url",
}  # tracebacks asked for; hosts


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
    if flag in PATH_FLAGS or action.dest in (
        "export_dir",
        "out_dir",
        "package",
        "model_dir",
        "index",
        "data",
        "teacher",
        "tuned",
        "onnx",
        "tokenizer",
        "out",
        "base",
    ):
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
        if (
            any(flag in a.option_strings for a in options)
            and flag not in argv
            and command not in ("query", "feed")
        ):
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


# ---------------------------------------------------------------- `siamese run` again over a finished --out

# Flags that decide what a stage makes, with values to draw (the run below used none of them).
STAGE_FLAGS = {
    "--lr": ["0.5", "1e-3"],
    "--max-steps": ["1", "2"],
    "--batch-size": ["4", "16"],
    "--seed": ["1", "7"],
    "--temperature": ["0.1"],
    "--anchor-weight": ["5", "40"],
    "--anchor": ["none", "mse", "kl"],
    "--tower": ["shared", "query", "adapter", "separate"],
    "--train-length": ["16", "128"],
    "--symmetric": [None],
    "--query-prefix": ["q: "],
    "--hard-negatives": ["1", "0"],
    "--quantize": ["int8"],
    "--dim": ["16", "32"],
    "--bm25-weight": ["0.1", "auto"],
    "--epochs": ["1", "2"],
    "--pooling": ["cls", "mean"],
}


@pytest.fixture(scope="module")
def finished_run(tiny_model, small_beir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    args = [
        "run",
        "--data",
        str(small_beir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--no-sts",
        "--no-guards",
        "--recipe",
        "fixed",  # the flags' effect on one trained model; --recipe auto's stages: tests/test_recipe.py
    ]
    assert main(args) == 0
    return args, out


def test_a_run_over_a_finished_out_never_ends_well_on_a_stale_stage(finished_run):
    """Issue 35: changed flags over an existing --out. Exit 0 only where every stage holds what was asked (the
    model's configuration, the export's quantisation, the package's width and weight); otherwise one error
    line and nothing touched."""
    from common.atomic import artifact_id
    from exporter.manifest import Manifest
    from training.config import TrainConfig
    from vespa_app.package.record import AppPackage

    args, out = finished_run
    stages = ("train/model", "export", "index", "app")

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        st.dictionaries(st.sampled_from(sorted(STAGE_FLAGS)), st.none(), min_size=1, max_size=3).flatmap(
            lambda flags: st.fixed_dictionaries({f: st.sampled_from(STAGE_FLAGS[f]) for f in flags})
        )
    )
    def check(changes):
        argv = list(args)
        for flag, value in changes.items():
            argv += [flag] if value is None else [flag, value]
        before = {s: artifact_id(out / s) for s in stages}
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        err = err.getvalue()
        assert "Traceback" not in err, err[-2000:]
        if code != 0:
            assert code == 2 and err.count("error:") == 1, (changes, err[-2000:])
            assert {s: artifact_id(out / s) for s in stages} == before, changes  # nothing touched
            return
        cfg = TrainConfig.load(out / "train" / "model" / "train_config.json")
        for flag, value in changes.items():
            knob = flag[2:].replace("-", "_")
            if hasattr(cfg, knob):
                held = getattr(cfg, knob)
                assert (
                    held is True
                    if value is None
                    else (
                        str(held) == value or (isinstance(held, (int, float)) and float(held) == float(value))
                    )
                ), (flag, value, held)
        assert (Manifest.load(out / "export").quantization is not None) == ("--quantize" in changes)
        package = AppPackage.open(out / "app")
        assert package.dim == int(changes.get("--dim", 32))
        if changes.get("--bm25-weight", "auto") != "auto":
            assert package.bm25_weight == float(changes["--bm25-weight"])

    check()
