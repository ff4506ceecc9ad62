"""`siamese eval --benchmark nanobeir`: the NanoBEIR sets read from the hub's cache, laid out here as the
hub's dataset files are (parquet under corpus/, queries/,
qrels/), offline; the same rows as any evaluation."""

import json

import pytest

from common.errors import ConfigError, MissingInputError
from common.nanobeir import SETS, benchmark_sets, load_nanobeir
from siamese.cli import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out(cache, name: str, n_docs: int = 30, n_queries: int = 6):
    """A small NanoBEIR set in the hub cache's layout: refs/main
    names a snapshot holding the three parquet parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = cache / f"datasets--zeta-alpha-ai--Nano{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    words = "protein cell gene virus immune cancer brain heart lung blood".split()
    corpus = [
        {"_id": f"{name}-d{i}", "text": f"{words[i % 10]} {words[(i * 3) % 10]} study {i}"}
        for i in range(n_docs)
    ]
    queries = [
        {"_id": f"{name}-q{i}", "text": f"{words[i % 10]} {words[(i * 3) % 10]}"} for i in range(n_queries)
    ]
    qrels = [{"query-id": f"{name}-q{i}", "corpus-id": f"{name}-d{i}"} for i in range(n_queries)]
    for part, rows in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
        (snapshot / part).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), snapshot / part / "train-00000-of-00001.parquet")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("SciFact", "NFCorpus"):
        lay_out(tmp_path / "hub", name)
    return tmp_path / "hub"


def test_a_set_is_read_from_the_hub_cache_offline(hub_cache):
    beir = load_nanobeir("SciFact")
    assert len(beir.corpus) == 30 and len(beir.queries) == 6
    assert beir.qrels["SciFact-q2"] == {"SciFact-d2": 1} and beir.corpus["SciFact-d2"].text.startswith("gene")
    with pytest.raises(MissingInputError, match="NanoBEIR FEVER: not in the hub's cache"):
        load_nanobeir("FEVER")


def test_the_benchmark_names_its_sets():
    assert benchmark_sets("nanobeir") == list(SETS) and len(SETS) == 13
    assert benchmark_sets("NanoBEIR:scifact, NanoNFCorpus") == ["SciFact", "NFCorpus"]
    with pytest.raises(ConfigError, match="no NanoBEIR set 'Nope'"):
        benchmark_sets("nanobeir:Nope")
    with pytest.raises(ConfigError, match="the benchmark is nanobeir"):
        benchmark_sets("mteb")


def test_siamese_eval_on_nanobeir_gives_every_set_and_the_mean(hub_cache, tiny_trained, tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert (
        main(
            [
                "eval",
                "--models",
                str(tiny_trained),
                "--benchmark",
                "nanobeir:SciFact,NFCorpus",
                "--hybrid",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "NanoBEIR (2 sets), nDCG@10:" in printed
    rows = {r["name"]: r for r in json.loads(out.read_text())}
    model = next(n for n in rows if n != "BM25" and "RRF" not in n)
    assert "BM25" in rows and f"{model} + BM25 (RRF)" in rows and len(rows) == 3
    for row in rows.values():
        assert row["ndcg@10 mean"] == pytest.approx((row["ndcg@10 SciFact"] + row["ndcg@10 NFCorpus"]) / 2)
    assert main(["eval", "--benchmark", "nanobeir", "--backend", "embedded"]) == 2
    assert "--benchmark evaluates exact search on its own sets" in capsys.readouterr().err
