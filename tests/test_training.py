import json

import numpy as np
import pytest
import torch
from conftest import build_tiny_model, interrupted_at_step, toy_pairs

from common.vectors import exact_search
from training.config import TrainConfig
from training.encoder import Encoder
from training.loop import train, train_step
from training.losses import InfoNCE


def recall_at_1(encoder, pairs):
    docs = encoder.encode([p.positive for p in pairs], "passage")
    queries = encoder.encode([p.query for p in pairs], "query")
    idx, _ = exact_search(queries, docs, 1)
    return float(np.mean(idx[:, 0] == np.arange(len(pairs))))


def config(tiny_model, out, **kw):
    values = dict(
        base=str(tiny_model),
        out=str(out),
        epochs=6,
        batch_size=8,
        lr=2e-3,
        max_length=32,
        warmup_ratio=0.0,
        seed=3,
        anchor="none",
    )
    values.update(kw)
    return TrainConfig(**values)


def test_loss_falls_and_toy_retrieval_improves(tiny_model, tmp_path):
    pairs = toy_pairs()
    before = recall_at_1(Encoder.load(tiny_model, max_length=32), pairs)
    model_dir = train(config(tiny_model, tmp_path / "run"), pairs, progress=False)
    metrics = json.loads((model_dir / "train_metrics.json").read_text())
    losses = metrics["log"]["loss"]
    assert np.mean(losses[-6:]) < 0.6 * np.mean(losses[:6])
    after = recall_at_1(Encoder.load(model_dir), pairs)
    assert after > before + 0.2, (before, after)
    assert json.loads((model_dir / "train_config.json").read_text())["batch_size"] == 8


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tiny_model, tmp_path, monkeypatch):
    pairs = toy_pairs(24)
    whole = train(config(tiny_model, tmp_path / "whole", epochs=2, checkpoint_every=2), pairs, progress=False)

    with (
        interrupted_at_step(monkeypatch, 5),
        pytest.raises(KeyboardInterrupt),
    ):  # after the checkpoint of step 4
        train(config(tiny_model, tmp_path / "part", epochs=2, checkpoint_every=2), pairs, progress=False)
    assert not (tmp_path / "part" / "model").exists()
    resumed = train(
        config(tiny_model, tmp_path / "part", epochs=2, checkpoint_every=2),
        pairs,
        resume=True,
        progress=False,
    )

    a, b = Encoder.load(whole).state_dict(), Encoder.load(resumed).state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log_whole = json.loads((whole / "train_metrics.json").read_text())["log"]["loss"]
    log_resumed = json.loads((resumed / "train_metrics.json").read_text())["log"]["loss"]
    assert log_whole == log_resumed


@pytest.mark.parametrize("pooling", ["mean", "cls", "attention"])
def test_saved_model_loads_in_automodel_and_sentence_transformers(tiny_model, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    pairs = toy_pairs(16)
    model_dir = train(
        config(
            tiny_model,
            tmp_path / "run",
            epochs=1,
            pooling=pooling,
            query_prefix="query: ",
            document_prefix="passage: ",
        ),
        pairs,
        progress=False,
    )
    ours = Encoder.load(model_dir)
    texts = ["a short one", "a much longer text " * 20, "naïve café ☕", "!!!"]
    assert AutoModel.from_pretrained(model_dir) is not None
    st = SentenceTransformer(str(model_dir), device="cpu")
    for kind, prompt in (("query", "query"), ("passage", "passage")):
        expected = ours.encode(texts, kind)
        got = st.encode(texts, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_grad_cache_gives_the_same_gradients(tmp_path):
    model_dir = build_tiny_model(tmp_path / "nodrop", dropout=0.0)
    pairs = toy_pairs(8)
    grads = []
    for chunk in (0, 3):
        encoder = Encoder.load(model_dir, max_length=32)
        encoder.train()
        loss = train_step(encoder, pairs, InfoNCE(temperature=0.05), grad_cache_chunk=chunk)
        grads.append(
            (loss, torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None]))
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


def test_bad_settings_fail_before_work(tiny_model, tmp_path):
    for bad in ({"batch_size": -1}, {"temperature": 0.0}, {"lr": 0}):
        with pytest.raises(ValueError, match="bad training setting"):
            train(config(tiny_model, tmp_path / "x", **bad), toy_pairs(), progress=False)
    with pytest.raises(ValueError, match="max length"):
        train(config(tiny_model, tmp_path / "y", max_length=4096), toy_pairs(), progress=False)
    assert not (tmp_path / "x").exists()


def test_evaluation_during_training_is_logged(tiny_model, small_beir, tmp_path):
    from training.evaluate import during_training

    eval_fn = during_training(small_beir, "test", n_queries=5, pool_depth=10)
    model_dir = train(
        config(tiny_model, tmp_path / "run", epochs=1, eval_every=2),
        toy_pairs(24),
        eval_fn=eval_fn,
        progress=False,
    )
    evals = json.loads((model_dir / "train_metrics.json").read_text())["log"]["eval"]
    assert [e["step"] for e in evals] == [2]
    assert 0 <= evals[0]["pool_ndcg@10"] <= 1
