import contextlib
import gzip
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault(
    "SIAMESE_CACHE", tempfile.mkdtemp(prefix="siamese-test-cache-")
)  # vectors cached by tests

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO / "common" / "datasets" / "scifact"


def build_tiny_model(path: Path, seed: int = 0, dropout: float = 0.1, layers: int = 2) -> Path:
    """A 2-layer (or ``layers``), 32-wide BERT with MiniLM's real tokenizer: a real model, small enough for a
    unit test."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from training.encoder import default_base_model

    base = default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def toy_pairs(n: int = 48, seed: int = 0):
    """Passages of 8 distinct words; the query is 3 of its passage's words. Learnable by a tiny model."""
    from training.pairs import Pair

    rng = random.Random(seed)
    words = (
        "apple river stone cloud tiger piano window garden silver rocket candle forest ocean violin "
        "desert engine pepper castle mirror planet bridge comet lemon falcon harbor island jungle "
        "kettle ladder magnet needle orbit pillow quartz saddle tunnel velvet wagon yacht zebra "
        "anchor basket cactus dragon feather glacier hammer igloo jacket koala lantern meadow"
    ).split()
    pairs = []
    for i in range(n):
        passage = rng.sample(words, 8)
        pairs.append(
            Pair(" ".join(rng.sample(passage, 3)), " ".join(passage), query_id=f"q{i}", positive_id=f"d{i}")
        )
    return pairs


def write_small_beir(folder: Path, n_docs: int = 150, n_train: int = 40, n_test: int = 20) -> Path:
    """A real slice of SciFact: the documents judged for the first train/test queries, plus others."""
    import gzip

    from common.data import read_beir

    train, test = read_beir(SCIFACT, "train"), read_beir(SCIFACT, "test")
    train_q, test_q = list(train.qrels)[:n_train], list(test.qrels)[:n_test]
    keep = {d for q in train_q for d in train.qrels[q]} | {d for q in test_q for d in test.qrels[q]}
    for doc_id in train.corpus:
        if len(keep) >= n_docs:
            break
        keep.add(doc_id)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt") as fh:
        for doc_id in sorted(keep):
            d = train.corpus[doc_id]
            fh.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for q in train_q:
            fh.write(json.dumps({"_id": q, "text": train.queries[q]}) + "\n")
        for q in test_q:
            fh.write(json.dumps({"_id": q, "text": test.queries[q]}) + "\n")
    for name, split, qids in (("train", train, train_q), ("test", test, test_q)):
        with open(folder / "qrels" / f"{name}.tsv", "w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for q in qids:
                for d in split.qrels[q]:
                    fh.write(f"{q}\t{d}\t1\n")
    return folder


@pytest.fixture(scope="session")
def small_beir(tmp_path_factory) -> Path:
    return write_small_beir(tmp_path_factory.mktemp("beir") / "scifact-small")


@pytest.fixture(scope="session")
def tiny_trained(tiny_model, tmp_path_factory) -> Path:
    """The tiny model after a short training run, with E5-style prefixes."""
    from training.config import TrainConfig
    from training.loop import train

    cfg = TrainConfig(
        base=str(tiny_model),
        out=str(tmp_path_factory.mktemp("tiny-run")),
        epochs=1,
        batch_size=8,
        max_length=48,
        query_prefix="query: ",
        document_prefix="passage: ",
        anchor="none",
    )
    return train(cfg, toy_pairs(16), progress=False)


@pytest.fixture(scope="session")
def tiny_export(tiny_trained, tmp_path_factory) -> Path:
    from exporter.onnx_export import export

    return export(tiny_trained, tmp_path_factory.mktemp("tiny-export") / "export", progress=False)


@pytest.fixture(scope="session")
def tiny_export_int8(tiny_trained, tmp_path_factory) -> Path:
    from exporter.onnx_export import export

    return export(
        tiny_trained, tmp_path_factory.mktemp("tiny-export-int8") / "export", quantize="int8", progress=False
    )


@pytest.fixture(scope="session")
def late_model(tiny_model, tmp_path_factory):
    """A tiny late-interaction model after a short training run (16-dimensional token vectors)."""
    from training.config import recipe_config
    from training.loop import train

    cfg = recipe_config(
        str(tiny_model),
        str(tmp_path_factory.mktemp("late-run")),
        late_interaction=True,
        colbert_dim=16,
        query_tokens=12,
        max_length=32,
        epochs=1,
        batch_size=8,
    )
    return train(cfg, toy_pairs(24), progress=False)


@pytest.fixture(scope="session")
def late_export(late_model, tmp_path_factory):
    from exporter.onnx_export import export

    return export(late_model, tmp_path_factory.mktemp("late-export") / "export", progress=False)


def needs_java():
    from vespa_app.check.java import java_missing

    return pytest.mark.skipif(
        bool(java_missing()), reason=f"Vespa's own code needs a JDK and Maven: {java_missing()}"
    )


def hundred_pages(corpus):
    """A Doc of 50,000 words of real SciFact abstracts, one after the other: a document no window holds."""
    from common.data import Doc

    words, parts = 0, []
    for doc in corpus.values():
        parts.append(doc.text)
        words += len(doc.text.split())
        if words >= 50_000:
            break
    return Doc("hundred-pages", "A very long report", " ".join(parts))


@contextlib.contextmanager
def interrupted_at_step(monkeypatch, n: int):
    """Inside the block, training's n-th step raises KeyboardInterrupt (Ctrl-C) instead of running; after it,
    steps run again."""
    import training.loop as loop

    real, calls = loop.train_step, []

    def dying(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "train_step", dying)
    try:
        yield
    finally:
        monkeypatch.setattr(loop, "train_step", real)


HOSTILE_TITLE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def hostile_beir(small_beir, folder):
    """The small SciFact slice with one more document whose title and text try to run script."""
    shutil.copytree(small_beir, folder)
    with gzip.open(folder / "corpus.jsonl.gz", "at") as fh:
        fh.write(
            json.dumps(
                {
                    "_id": "hostile",
                    "title": HOSTILE_TITLE,
                    "text": "coronavirus <b onmouseover=alert(1)>bold</b> </textarea><script>x()</script>",
                }
            )
            + "\n"
        )
    return folder


@pytest.fixture(scope="session")
def ui_run(tiny_model, small_beir, tmp_path_factory):
    """A finished `siamese run` over the hostile slice (the fixed recipe: a trained query tower to compare
    with the base)."""
    root = tmp_path_factory.mktemp("ui")
    data = hostile_beir(small_beir, root / "data")
    out = root / "run"
    args = [
        "run",
        "--data",
        str(data),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--no-sts",
        "--recipe",
        "fixed",
    ]
    from siamese.cli import main

    assert main(args) == 0
    return out
