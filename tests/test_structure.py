"""The structure the features build on: light commands, one error base, one source of training defaults,
one pooling table, pluggable losses."""

import subprocess
import sys

import pytest
from conftest import REPO


def modules_loaded_by(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.split("\n")[-2]
    return {name.split(".")[0] for name in out.split()}


def test_the_query_path_imports_neither_torch_nor_transformers():
    loaded = modules_loaded_by("import exporter.runtime, vespa_app.embedded, vespa_app.client.query")
    assert "onnxruntime" in loaded and "faiss" in loaded  # what it does need
    assert not loaded & {"torch", "transformers", "sentence_transformers"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["query", "http://127.0.0.1:9", "text"],
        ["search", "--help"],
        ["feed", "--help"],
        ["deploy", "--help"],
        ["app", "build", "--help"],
    ],
)
def test_light_commands_start_without_torch(argv):
    loaded = modules_loaded_by(
        f"from siamese.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    )
    assert not loaded & {"torch", "transformers"}, argv


def test_search_and_app_build_run_without_torch(tiny_export, tmp_path):
    code = (
        f"from siamese.cli import main\n"
        f"assert main(['app', 'build', {str(tiny_export)!r}, {str(tmp_path / 'app')!r}, '--no-check']) == 0\n"
        f"from common.data import Doc\nfrom vespa_app.embedded import EmbeddedIndex\n"
        f"EmbeddedIndex.build({str(tmp_path / 'index')!r}, {str(tiny_export)!r}, "
        f"[Doc('1', 'a title', 'some text'), Doc('2', '', 'other words')], progress=False)\n"
        f"assert main(['search', {str(tmp_path / 'index')!r}, 'words', '--profile', 'hybrid']) == 0"
    )
    assert not modules_loaded_by(code) & {"torch", "transformers"}


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def siamese(*args):
        return subprocess.run(
            [sys.executable, "-m", "siamese", *args], capture_output=True, text=True, cwd=REPO
        )

    user = siamese("search", str(tmp_path / "nowhere"), "text")
    assert user.returncode == 2 and user.stderr.startswith("error: ") and "Traceback" not in user.stderr
    debug = siamese("search", str(tmp_path / "nowhere"), "text", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "error: " in debug.stderr

    import siamese.cli
    import vespa_app.cli

    def out_of_memory(args):  # what a CUDA out-of-memory is: a RuntimeError, not the user's to fix
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(vespa_app.cli, "cmd_search", out_of_memory)  # the command stays the Vespa stage's
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        siamese.cli.main(["search", str(tmp_path), "text"])


def test_every_user_error_derives_from_one_base():
    from common.data import DataError
    from common.errors import UserError
    from exporter.manifest import ManifestError
    from exporter.onnx_export import ExportError
    from exporter.parity import ParityError
    from training.model_dir import ModelDirError
    from vespa_app.check.java import VerifierError
    from vespa_app.check.structure import PackageError
    from vespa_app.client.http import VespaError, VespaUnreachable

    for error in (
        DataError,
        ManifestError,
        ExportError,
        ParityError,
        ModelDirError,
        PackageError,
        VerifierError,
        VespaError,
        VespaUnreachable,
    ):
        assert issubclass(error, UserError), error


def test_the_recipes_are_the_one_source_of_training_defaults():
    from dataclasses import fields

    from common.errors import ConfigError
    from training.config import RECIPES, TrainConfig, recipe_config

    default = recipe_config("base", "out")
    assert (
        default.epochs,
        default.batch_size,
        default.lr,
        default.train_length,
        default.temperature,
        default.hard_negatives,
    ) == (2, 32, 1e-4, 128, None, 0)  # the default recipe; τ follows the base
    assert default.max_length is None  # served at the base model's own window
    # a query tower, held to the base by the tower recipe's anchor (docs/towers.md)
    assert (default.tower, default.anchor, default.anchor_weight, default.anchor_batch) == (
        "query",
        "mse",
        40.0,
        32,
    )
    shared = recipe_config("base", "out", tower="shared")
    assert (shared.anchor, shared.anchor_weight, shared.anchor_batch) == ("mse", 20.0, 64)
    for only_shared in (
        {"late_interaction": True},
        {"matryoshka": "32,16"},
        {"checkpoint_every": 5},
        {"grad_cache_chunk": 8},
        {"eval_every": 5},
    ):
        assert recipe_config("base", "out", **only_shared).tower == "shared", (
            only_shared
        )  # asked for, not refused
    with pytest.raises(ConfigError, match="--tower query, adapter and separate train without"):
        recipe_config("base", "out", tower="query", matryoshka="32,16")  # but a tower named is not overridden
    full = recipe_config("base", "out", full=True)
    assert (full.epochs, full.lr, full.train_length, full.hard_negatives, full.tower) == (
        8,
        5e-5,
        256,
        1,
        "shared",
    )
    assert set(RECIPES["full"]) <= {f.name for f in fields(TrainConfig)}
    assert recipe_config("base", "out", epochs=None, lr=3e-5).lr == 3e-5  # None leaves the recipe's value


def test_train_and_run_take_every_training_knob_from_the_config():
    from dataclasses import fields

    from siamese.cli import build_parser
    from training.config import TrainConfig

    knobs = [
        f.name for f in fields(TrainConfig) if f.metadata
    ]  # base, out and the run's own records are not flags
    parser = build_parser()
    for command in ("train", "run"):
        args = parser.parse_args(
            [
                command,
                "--pooling",
                "cls",
                "--query-prefix",
                "query: ",
                "--document-prefix",
                "passage: ",
                "--hard-negatives",
                "2",
                "--symmetric",
                "--no-normalize",
            ]
        )
        assert {k for k in knobs if getattr(args, k) is not None} == {
            "pooling",
            "query_prefix",
            "document_prefix",
            "hard_negatives",
            "symmetric",
            "normalize",
        }, command
        assert (args.symmetric, args.normalize, args.query_prefix) == (True, False, "query: ")
        help_text = parser._subparsers._group_actions[0].choices[command].format_help()
        for knob in knobs:
            assert "--" + knob.replace("_", "-") in help_text, (command, knob)
        # the document side's prefix has one name; the older spelling of the flag is still taken
        assert parser.parse_args([command, "--passage-prefix", "p: "]).document_prefix == "p: "


def test_model_dirs_and_runs_written_with_the_older_prefix_name_still_load(tmp_path):
    import json

    from training.config import TrainConfig
    from training.model_dir import EncoderConfig

    (tmp_path / "siamese.json").write_text(json.dumps({"pooling": "mean", "passage_prefix": "passage: "}))
    assert EncoderConfig.load(tmp_path).document_prefix == "passage: "
    (tmp_path / "train_config.json").write_text(
        json.dumps({"base": "b", "out": "o", "passage_prefix": "p: "})
    )
    assert TrainConfig.load(tmp_path / "train_config.json").document_prefix == "p: "


def test_siamese_run_hands_the_training_options_to_the_pipeline(monkeypatch):
    import siamese.run.pipeline
    from siamese.cli import main

    seen = {}

    def fake_run(options):
        seen["options"] = options
        return {"rows": [], "timings": {"total": 0.0}, "report": "-", "deploy": "-"}

    monkeypatch.setattr(siamese.run.pipeline, "run", fake_run)
    assert (
        main(
            [
                "run",
                "--pooling",
                "attention",
                "--query-prefix",
                "query: ",
                "--hard-negatives",
                "1",
                "--epochs",
                "3",
            ]
        )
        == 0
    )
    assert seen["options"].train == {
        "pooling": "attention",
        "query_prefix": "query: ",
        "hard_negatives": 1,
        "epochs": 3,
    }


def test_siamese_run_takes_its_options_from_run_options_fields(monkeypatch):
    """RunOptions is the one list of `siamese run`'s own options: each field with help is a flag, no flag
    leaves its field at anything but the field's default, and the
    flags that are not fields fill what they stand for."""
    from dataclasses import fields

    import siamese.run.pipeline
    from siamese.cli import main
    from siamese.run.options import RunOptions

    seen = {}

    def fake_run(options):
        seen["o"] = options
        return {"rows": [], "timings": {"total": 0.0}, "report": "-", "deploy": "-"}

    monkeypatch.setattr(siamese.run.pipeline, "run", fake_run)
    assert main(["run"]) == 0
    assert seen.pop("o") == RunOptions()
    assert (
        main(
            [
                "run",
                "--pairs",
                "p.jsonl",
                "--corpus",
                "c.jsonl",
                "--reference",
                "a",
                "--reference",
                "b",
                "--chunk-tokens",
                "auto",
                "--bm25-weight",
                "0.2",
                "--merge",
                "auto",
                "--full",
                "--no-sts",
                "--guard",
                "g",
                "--skip-bad",
                "--dim",
                "16",
                "--out",
                "o",
            ]
        )
        == 0
    )
    o = seen.pop("o")
    assert (
        o.data,
        o.pairs,
        o.corpus,
        o.references,
        o.chunk_tokens,
        o.bm25_weight,
        o.merge,
        o.full,
        o.sts,
        o.guards,
        o.skip_bad,
        o.dim,
        o.out,
    ) == (
        None,
        "p.jsonl",
        "c.jsonl",
        ["a", "b"],
        "auto",
        0.2,
        "auto",
        True,
        None,
        ["cisi", "medquad", "g"],
        True,
        16,
        "o",
    )
    flagged = [f.name for f in fields(RunOptions) if "help" in f.metadata]
    assert len(flagged) >= 18 and "references" in flagged and "train" not in flagged


def test_one_pooling_table_for_cli_encoder_exporter_and_manifest(tiny_model):
    import torch

    from common.poolings import POOLINGS, VESPA_POOLINGS, vespa_pooling
    from exporter.manifest import Manifest
    from siamese.cli import build_parser
    from training.encoder import Encoder
    from training.pooling import pool

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    assert tuple(next(a for a in train._actions if a.dest == "pooling").choices) == tuple(POOLINGS)
    tokens, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long)
    for name, vespa in POOLINGS.items():
        encoder = Encoder.load(tiny_model, pooling=name, max_length=32)
        assert pool(name, tokens, mask, encoder.attention).shape == (2, 32)
        assert vespa_pooling(name) in VESPA_POOLINGS and (vespa is None) == (vespa_pooling(name) == "none")
        Manifest(
            dimension=32,
            pooling=vespa_pooling(name),
            normalize=True,
            max_tokens=32,
            prefixes={"query": "", "document": ""},
            inputs=["input_ids"],
            model_pooling=name,
            output="last_hidden_state" if vespa else "sentence_embedding",
        ).check()


def test_losses_are_chosen_by_name():
    import torch

    from common.errors import ConfigError
    from training.config import TrainConfig
    from training.infonce import info_nce
    from training.losses import make_loss

    q, p = torch.randn(4, 8), torch.randn(6, 8)
    cfg = TrainConfig(base="-", out="-", symmetric=True, temperature=0.1, anchor="none")
    assert torch.equal(make_loss(cfg)(q, p, batch=[]), info_nce(q, p, 0.1, symmetric=True))
    with pytest.raises(ConfigError, match="loss must be one of infonce"):
        TrainConfig(base="-", out="-", loss="nope").check()


def test_the_encoder_module_imports_none_of_its_kinds():
    """One direction: late_interaction, towers and models build on encoder; encoder names none of them (the
    loader that picks a kind is training/models.py, the marker test model_dir.model_kind)."""
    import ast

    tree = ast.parse((REPO / "training" / "encoder.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"late_interaction", "towers", "models"}


def test_run_and_train_list_their_flags_by_stage_the_common_ones_first():
    from siamese.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    expected = {
        "run": {
            "data": ["--data", "--pairs", "--corpus"],
            "base and recipe": ["--base", "--recipe"],
            "training": ["--epochs", "--lr", "--seed"],
            "export": ["--quantize"],
            "serving and package": ["--chunk-tokens", "--bm25-weight", "--vespa"],
            "evaluation": ["--reference", "--guard", "--no-sts"],
            "output": ["--out", "--force", "--device"],
        },
        "train": {
            "data": ["--data", "--split"],
            "base and recipe": ["--base", "--recipe", "--tower"],
            "training": ["--epochs", "--loss"],
            "evaluation": ["--eval-data"],
            "output": ["--out", "--resume", "--nproc", "--device"],
        },
    }
    for command, groups in expected.items():
        sections = [g for g in commands[command]._action_groups if g._group_actions]
        titles = [g.title for g in sections]
        assert titles[1:] == [
            t
            for t in (
                "data",
                "base and recipe",
                "training",
                "export",
                "serving and package",
                "evaluation",
                "output",
            )
            if t in groups
        ], command
        by_title = {g.title: [a.option_strings[0] for a in g._group_actions] for g in sections}
        for title, flags in groups.items():
            assert set(flags) <= set(by_title[title]), (command, title)
        # argparse's own list keeps only what every command has (--debug joins it when a command runs)
        assert by_title[titles[0]] == ["-h"]
