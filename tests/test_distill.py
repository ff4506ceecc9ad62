"""`siamese distill`: a student made of its teacher's own layers (training/distill.py)."""

import json

import pytest
import torch
from conftest import build_tiny_model, needs_java, toy_pairs

from common.errors import ConfigError
from training.distill import DistillConfig, distill, distill_loss, hidden_loss, make_student, picked_layers
from training.encoder import Encoder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("teacher") / "model", seed=3, dropout=0.0, layers=4)


def test_which_layers():
    assert picked_layers(6, 3, "spread") == [0, 2, 5] and picked_layers(6, 2, "spread") == [0, 5]
    assert picked_layers(6, 4, "spread") == [0, 2, 3, 5] and picked_layers(6, 1, "spread") == [5]
    assert picked_layers(6, 3, "first") == [0, 1, 2] and picked_layers(6, 6, "spread") == list(range(6))
    with pytest.raises(ConfigError, match="keep between 1 and 6"):
        picked_layers(6, 7, "spread")


def test_the_students_layers_are_the_teachers_before_training(teacher):
    t = Encoder.load(teacher, max_length=48).eval()
    s = make_student(t, [0, 3]).eval()
    assert s.transformer.config.num_hidden_layers == 2 and len(s.transformer.encoder.layer) == 2
    for mine, theirs in zip(s.transformer.encoder.layer, [t.transformer.encoder.layer[i] for i in (0, 3)]):
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            s.transformer.embeddings.state_dict().values(), t.transformer.embeddings.state_dict().values()
        )
    )
    texts = ["a protein folds", "the council met on tuesday"]
    whole = make_student(t, [0, 1, 2, 3]).eval()  # every layer kept: the teacher itself
    assert torch.equal(torch.from_numpy(whole.encode(texts)), torch.from_numpy(t.encode(texts)))
    assert not torch.allclose(torch.from_numpy(s.encode(texts)), torch.from_numpy(t.encode(texts)))
    assert len(t.transformer.encoder.layer) == 4  # the teacher is not changed


def test_distill_loss_on_unit_vectors():
    s, t = torch.randn(5, 8), torch.randn(5, 8)
    sn, tn = torch.nn.functional.normalize(s, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    assert torch.allclose(distill_loss(s, t, "mse", []), (sn - tn).pow(2).sum(-1).mean())
    assert torch.allclose(distill_loss(s, t, "mse", []), 2 * distill_loss(s, t, "cosine", []))
    assert torch.allclose(
        distill_loss(s, t, "cosine", [8, 4]),
        distill_loss(s, t, "cosine", []) + distill_loss(s[:, :4], t[:, :4], "cosine", []),
    )
    assert float(distill_loss(t, t, "mse", [8, 4])) == pytest.approx(0.0, abs=1e-6)


@torch.no_grad()
def test_the_hidden_term_pairs_each_block_with_the_teacher_block_it_was_copied_from(teacher):
    t = Encoder.load(teacher, max_length=48).eval()
    batch = t.tokenize(["a protein folds in the cell", "the council met"])
    vectors, taught = t.forward_with_states(batch)
    assert torch.allclose(vectors, t(batch))  # the same vectors as forward
    mask = batch["attention_mask"]
    # The bottom blocks, fed as the teacher feeds them, reproduce its states: the term is 0 before training.
    first = make_student(t, [0, 1]).eval().forward_with_states(batch)[1]
    assert float(hidden_loss(first, taught, [0, 1], mask)) == pytest.approx(0.0, abs=1e-6)
    # Blocks 0 and 3: block 0 still matches; block 3 now reads block 0's output, not block 2's.
    spread = make_student(t, [0, 3]).eval().forward_with_states(batch)[1]
    assert float(hidden_loss(spread[:2], taught, [0], mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(hidden_loss(spread, taught, [0, 3], mask)) > 1e-5
    # Padding does not count: a pad token's state can be anything.
    padded = [h.clone() for h in spread]
    padded[-1][mask == 0] += 100.0
    assert torch.allclose(
        hidden_loss(padded, taught, [0, 3], mask), hidden_loss(spread, taught, [0, 3], mask)
    )


def test_distilling_with_the_hidden_term_brings_the_blocks_to_the_teachers(teacher, tmp_path):
    pairs = toy_pairs(32)
    texts = [(p.positive, "passage") for p in pairs] + [(p.query, "query") for p in pairs]
    t = Encoder.load(teacher, max_length=48).eval()
    batch = t.tokenize([p.positive for p in pairs])

    @torch.no_grad()
    def gap(model_dir, layers):
        states = Encoder.load(model_dir, max_length=48).eval().forward_with_states(batch)[1]
        return float(hidden_loss(states, t.forward_with_states(batch)[1], layers, batch["attention_mask"]))

    cfg = DistillConfig(
        str(teacher), str(tmp_path / "plain"), layers=2, epochs=3, batch_size=8, max_length=48, hidden=0.0
    )
    plain = distill(cfg, texts, progress=False)
    cfg = DistillConfig(
        str(teacher), str(tmp_path / "hidden"), layers=2, epochs=3, batch_size=8, max_length=48, hidden=1.0
    )
    hidden = distill(cfg, texts, progress=False)
    assert gap(hidden, [0, 3]) < gap(plain, [0, 3])


@pytest.mark.java
@needs_java()
def test_a_two_layer_student_goes_through_export_and_app_check(teacher, tmp_path):
    from exporter.onnx_export import export
    from vespa_app.check.structure import check_package
    from vespa_app.package.build import write_package

    pairs = toy_pairs(24)
    texts = [(p.positive, "passage") for p in pairs] + [(p.query, "query") for p in pairs]
    cfg = DistillConfig(
        str(teacher), str(tmp_path / "student"), layers=2, epochs=2, batch_size=8, max_length=48
    )
    student = distill(cfg, texts, pairs, progress=False)
    info = json.loads((student / "distill.json").read_text())
    assert info["teacher_layers"] == [0, 3] and info["loss"][-1] < info["loss"][0]
    assert Encoder.load(student, max_length=48).transformer.config.num_hidden_layers == 2
    with pytest.raises(Exception, match="already exists"):
        distill(cfg, texts, pairs, progress=False)
    app = write_package(export(student, tmp_path / "export", progress=False), tmp_path / "app")
    report = check_package(app)
    assert report.vespa == "accepted" and report.embedding["document_min_cosine"] >= 0.9999


def test_prefix_embed_cuts_then_normalises_and_reuses_the_passage_cache(monkeypatch, tmp_path):
    import numpy as np

    from common.vectors import prefix_embed

    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path))
    calls = []

    def embed(texts, kind):
        calls.append(kind)
        return np.arange(len(texts) * 8, dtype=np.float32).reshape(len(texts), 8) + 1

    cut = prefix_embed(embed, 3, cache="model-key")
    v = cut(["a", "b"], "passage")
    full = embed(["a", "b"], "passage")[:, :3]
    assert np.allclose(v, full / np.linalg.norm(full, axis=1, keepdims=True))
    calls.clear()
    prefix_embed(embed, 5, cache="model-key")(
        ["a", "b"], "passage"
    )  # another prefix: the corpus is not re-embedded
    prefix_embed(embed, 5, cache="model-key")(["a", "b"], "query")  # queries are never cached
    assert calls == ["query"]


def test_the_cli_says_how_many_texts_the_student_is_taught_on(teacher, small_beir, tmp_path, capsys):
    from siamese.cli import main

    general = tmp_path / "general.txt"
    general.write_text("one sentence\n" * 30 + "another sentence\n")  # duplicates count once
    out = tmp_path / "student"
    args = [
        "distill",
        str(teacher),
        str(out),
        "--layers",
        "1",
        "--data",
        str(small_beir),
        "--general",
        str(general),
        "--max-length",
        "16",
        "--batch-size",
        "16",
    ]
    assert main([*args, "--max-texts", "7"]) == 0
    assert " on 7 texts" in capsys.readouterr().err
    assert json.loads((out / "distill.json").read_text())["texts"] == 7
    assert main([*args, "--force"]) == 0
    taught = json.loads((out / "distill.json").read_text())["texts"]
    assert f" on {taught} texts" in capsys.readouterr().err
    from training.distill import distill_texts
    from training.pairs import load_training_data

    pairs, corpus = load_training_data(str(small_beir), "train", False)
    every = distill_texts(corpus, pairs, str(general))
    assert taught == len(set(every)) < len(every)  # the 30 copies of one sentence taught once
