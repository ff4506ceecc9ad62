"""Every training knob, on every tower: it changes what training makes, or the configuration refuses it in one
line. Never accepted and ignored.

What training makes: every file of the model directory (weights, encoder settings, the query tower), the loss
and evaluation curves, and the checkpoints written on the way. A tiny model, three steps a run."""

import hashlib
import itertools
import json
from dataclasses import fields

import pytest
from conftest import toy_pairs

from common.cli import is_option
from common.data import Doc
from common.errors import ConfigError
from training import config, loop
from training.config import FROZEN_DOCUMENT, KNOB_RULES, TOWERS, TrainConfig, recipe_config

STSB = loop.__file__.replace("training/loop.py", "common/datasets/stsb/stsb-en-train.csv")

# knob → (what it needs beside it, in the baseline too; the changed value). Baseline: 24 pairs, batch 8, 1
# epoch (3 steps), no anchor.
VARIANTS = {
    "epochs": ({}, 2),
    "max_steps": ({}, 2),
    "batch_size": ({}, 4),
    "lr": ({}, 3e-3),
    "warmup_ratio": ({}, 0.5),
    "weight_decay": ({}, 0.5),
    "max_grad_norm": ({}, 0.01),
    "max_length": ({}, 48),
    "train_length": ({}, 12),
    "pooling": ({}, "cls"),
    "normalize": ({}, False),
    "query_prefix": ({}, "q: "),
    "document_prefix": ({}, "d: "),
    "loss": ({}, "symmetric-infonce"),
    "temperature": ({}, 0.2),
    "anchor": ({}, "mse"),
    "anchor_weight": ({"anchor": "mse"}, 3.0),
    "anchor_batch": ({"anchor": "mse"}, 2),
    "anchor_data": ({"anchor": "mse"}, "OTHER_TEXTS"),
    "symmetric": ({}, True),
    "hard_negatives": ({}, 1),
    "corpus_pairs": ({}, "title"),
    "corpus_pairs_ratio": ({"corpus_pairs": "title"}, 0.3),
    "general_pairs": ({}, STSB),
    "general_pairs_ratio": ({"general_pairs": STSB}, 0.2),
    "matryoshka": ({}, "32,16"),
    "late_interaction": ({}, True),
    "colbert_dim": ({"late_interaction": True}, 16),
    "colbert_teacher_weight": ({"late_interaction": True}, 0.0),
    "query_tokens": ({"late_interaction": True}, 8),
    "chunk_positives": ({"max_length": 12}, "all"),
    "mine_depth": ({"hard_negatives": 1}, 3),
    "miner": ({"hard_negatives": 1}, "dense"),
    "mine_window": ({"hard_negatives": 1, "miner": "dense"}, "0-3"),
    "mine_margin": ({"hard_negatives": 1, "miner": "dense"}, 5.0),
    "grad_cache_chunk": ({}, 2),
    "checkpoint_every": ({}, 1),
    "keep_checkpoints": ({"checkpoint_every": 1}, 1),
    "eval_every": ({}, 1),
    "seed": ({}, 7),
}
# How training runs, not what it makes (same result by design; tests/test_training.py holds them to it).
HOW_NOT_WHAT = {"grad_cache_chunk"}
KNOBS = [f.name for f in fields(TrainConfig) if is_option(f) and f.name != "tower"]


def test_every_knob_has_a_variant():
    assert set(KNOBS) == set(VARIANTS)


@pytest.fixture(scope="module")
def setting(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("knobs")
    texts = root / "texts.txt"
    texts.write_text("\n".join(f"general sentence number {i} about things" for i in range(40)))
    other = root / "other.txt"
    other.write_text("\n".join(f"another text {i} of a different sort entirely" for i in range(40)))
    pairs = toy_pairs(24)
    corpus = [Doc(p.positive_id, f"title {i}", p.positive) for i, p in enumerate(pairs)]
    return {
        "base": str(tiny_model),
        "root": root,
        "texts": str(texts),
        "other": str(other),
        "pairs": pairs,
        "corpus": corpus,
        "runs": {},
        "count": itertools.count(),
    }


def _made(setting, tower: str, values: dict, monkeypatch) -> str:
    """A fingerprint of what training made with these values (cached per configuration)."""
    key = json.dumps([tower, values], sort_keys=True)
    if key in setting["runs"]:
        return setting["runs"][key]
    values = {k: setting["other"] if v == "OTHER_TEXTS" else v for k, v in values.items()}
    if values.get("anchor", "none") != "none":
        values.setdefault("anchor_data", setting["texts"])
    out = setting["root"] / f"run-{next(setting['count'])}"
    given = {"epochs": 1, "batch_size": 8, "anchor": "none", "tower": tower} | values
    cfg = recipe_config(setting["base"], str(out), **given)  # ConfigError: refused
    saves = []
    real_save = loop._save_checkpoint

    def save(out_dir, step, *args):
        real_save(out_dir, step, *args)
        saves.append([step, sorted(p.name for p in (out_dir / "checkpoints").iterdir())])

    monkeypatch.setattr(loop, "_save_checkpoint", save)
    model = loop.train(
        cfg,
        setting["pairs"],
        setting["corpus"],
        progress=False,
        eval_fn=lambda encoder: {"ndcg@10": float(encoder.encode(["probe"], "query").sum())},
    )
    digest = hashlib.sha256(json.dumps(saves).encode())
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        if path.name in ("train_config.json", "train_metrics.json", "README.md", ".siamese-artifact"):
            continue
        digest.update(str(path.relative_to(model)).encode() + path.read_bytes())
    log = json.loads((model / "train_metrics.json").read_text())["log"]
    digest.update(json.dumps([log["loss"], log["eval"]]).encode())
    setting["runs"][key] = digest.hexdigest()
    return setting["runs"][key]


@pytest.mark.parametrize("tower", TOWERS)
def test_the_same_configuration_makes_the_same_thing(setting, tower, monkeypatch):
    """Without this, "changed" below could be noise."""
    first = _made(setting, tower, {}, monkeypatch)
    setting["runs"].pop(json.dumps([tower, {}], sort_keys=True))
    assert _made(setting, tower, {}, monkeypatch) == first


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("knob", KNOBS)
def test_a_knob_changes_the_training_or_is_refused(setting, tower, knob, monkeypatch):
    needs, value = VARIANTS[knob]
    try:
        baseline = _made(setting, tower, needs, monkeypatch)
    except ConfigError:
        pytest.skip(f"what {knob} needs is refused on the {tower} tower (counted there)")
    try:
        changed = _made(setting, tower, needs | {knob: value}, monkeypatch)
    except ConfigError:
        return  # refused in one line
    if knob in HOW_NOT_WHAT:
        return  # accepted, and the same by design
    assert changed != baseline, f"--{knob} {value} was accepted by the {tower} tower and changed nothing"


# Refused on frozen document towers though they reach the batching: mined negatives still decide which pairs
# may share a batch (training/batches.py), but the corpus softmax never scores them.
REACH_THE_BATCHING = {"hard_negatives", "mine_depth"}


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("knob", sorted({rule[0] for rule in KNOB_RULES}))
def test_a_refused_knob_would_have_changed_nothing(setting, tower, knob, monkeypatch):
    """The other side of the table: where it refuses a knob, training with the knob let through makes what
    training without it makes, so the refusal costs the user nothing."""
    value = VARIANTS[knob][1]
    try:
        recipe_config(
            setting["base"],
            str(setting["root"] / "probe"),
            epochs=1,
            batch_size=8,
            anchor="none",
            tower=tower,
            **{knob: value},
        )
    except ConfigError as refused:
        if "would change nothing" not in str(refused):
            pytest.skip(f"{knob} on the {tower} tower is refused for another reason")
    else:
        pytest.skip(f"{knob} acts on the {tower} tower")
    if knob in REACH_THE_BATCHING and tower in FROZEN_DOCUMENT:
        pytest.skip("reaches the batching only (see REACH_THE_BATCHING)")
    monkeypatch.setattr(config, "check_given", lambda cfg, given: None)
    assert _made(setting, tower, {knob: value}, monkeypatch) == _made(setting, tower, {}, monkeypatch)
