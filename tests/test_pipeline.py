"""`siamese run` end to end on a slice of SciFact with a tiny model."""

import json
import shlex
import shutil

import numpy as np
import pytest
from fault_server import FaultServer

from siamese.cli import main


def test_run_end_to_end_then_reuse(tiny_model, small_beir, tmp_path, capsys):
    out = tmp_path / "run"
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
        "--reference",
        str(tiny_model),
        "--recipe",
        "fixed",  # the trained query tower's every row and section; the default, auto: tests/test_recipe.py
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in (
        "served bm25",
        "base (",
        "fine-tuned (exact)",
        "fine-tuned (exact) + BM25 (RRF)",
        "served semantic",
        "served hybrid",
        "| ndcg@10 seen | ndcg@10 unseen |",
        "guard cisi",
        "guard medquad",
    ):
        assert name in printed
    assert "siamese deploy" in printed
    for artifact in (
        "train/model/model.safetensors",
        "export/model.onnx",
        "app/services.xml",
        "app/models/model.onnx",
        "index/hnsw.faiss",
        "report.md",
        "plot.png",
        "results.json",
    ):
        assert (out / artifact).exists(), artifact
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert len(rows) == 11 and "sts_spearman" in rows["fine-tuned (exact)"]
    # hybrid-linear's BM25 weight: chosen on the training queries, the same in the package and the index
    from vespa_app.embedded import EmbeddedIndex
    from vespa_app.package.record import AppPackage
    from vespa_app.serving import BM25_WEIGHT_GRID

    fusion = results["record"]["bm25_weight"]
    assert fusion["weight"] in BM25_WEIGHT_GRID and fusion["method"].startswith("chosen on ")
    assert (
        AppPackage.open(out / "app").bm25_weight
        == fusion["weight"]
        == EmbeddedIndex.open(out / "index").bm25_weight
    )
    assert "served hybrid-linear" in rows
    # served recall: the served semantic profile against exact search, the HNSW settings the package has
    assert set(results["served_recall"]) == {"semantic"}
    assert results["served_recall"]["semantic"] == rows["served semantic"]["served_recall"]
    assert results["served_recall"]["semantic"]["queries"] == 20
    assert (
        AppPackage.open(out / "app").hnsw
        == results["record"]["hnsw"]
        == EmbeddedIndex.open(out / "index").meta["hnsw"]
    )
    assert {"reference (tiny0)", "reference (tiny0) + BM25 (RRF)"} <= set(rows)
    evaluation = results["record"]["evaluation"]
    assert evaluation["seen"] + evaluation["unseen"] == evaluation["queries"] == 20 and evaluation["seen"] > 0
    assert evaluation["guards"] == {"cisi": 41, "medquad": 192}
    for name in ("BM25", "fine-tuned (exact)", "fine-tuned (exact) + BM25 (RRF)"):
        assert {"ndcg@10 seen", "ndcg@10 unseen", "guard cisi", "guard medquad"} <= set(rows[name])
    report = (out / "report.md").read_text()
    assert "## Generalisation and forgetting" in report and "- unseen queries:" in report
    assert "## Served recall" in report and "| semantic |" in report
    assert "- guard cisi:" in report and "- guard medquad:" in report
    assert "### Against reference (tiny0)" in report and "fine-tuned (exact) on unseen queries:" in report
    # a fixed recipe says that nothing was compared with the base before serving it
    assert "Fixed recipe: a query tower" in report and "Nothing was compared with the base model" in report
    assert {r["kind"] for r in results["rows"]} == {"served", "bm25", "base", "reference", "fused", "tuned"}
    # the checks read as a table; their raw figures go to checks.json beside the report
    checks = report.split("## Checks")[1].split("## Training configuration")[0]
    assert (
        "| ONNX (fp32) against PyTorch |" in checks
        and "hybrid-linear's BM25 weight" in checks
        and "{" not in checks
    )
    assert json.loads((out / "checks.json").read_text())["parity"]["fp32"]["query"]["min_cosine"] > 0.999
    # the model card names the figures of the run that made it
    card = (out / "train" / "model" / "README.md").read_text()
    tuned = rows["fine-tuned (exact)"]
    assert "## Figures of the run that made it" in card and f"{tuned['ndcg@10 unseen']:.4f}" in card
    assert f"{tuned['guard medquad']:.4f}" in card and "siamese app build" in card
    import yaml  # the front matter the hub indexes: where the model came from and the run's figures

    header = yaml.safe_load(card.split("---\n")[1])
    assert (
        header["library_name"] == "sentence-transformers" and header["pipeline_tag"] == "sentence-similarity"
    )
    assert header["base_model"] == "tiny0" and header["datasets"] == ["scifact-small"]
    figures = {m["type"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    assert figures["ndcg@10_unseen"] == round(tuned["ndcg@10 unseen"], 4)
    from vespa_app.check.java import java_missing

    if (
        not java_missing()
    ):  # Vespa's container code ran on this run's corpus, and the report says what it found
        assert "## Vespa's own code on this package" in report
        assert "Vespa indexing statements + embedder on 5 corpus documents" in report
        assert "Vespa global phase (hybrid)" in report
    model_mtime = (out / "train" / "model" / "model.safetensors").stat().st_mtime

    assert main(args) == 0  # a second run reuses every artifact
    assert (out / "train" / "model" / "model.safetensors").stat().st_mtime == model_mtime
    assert "reusing" in capsys.readouterr().err

    assert main(["search", str(out / "index"), "coronavirus", "--profile", "hybrid", "--hits", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_run_on_the_users_own_files(tiny_model, small_beir, tmp_path, capsys):
    from common.data import read_beir
    from training.pairs import beir_pairs

    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w") as fh:
        for p in beir_pairs(read_beir(small_beir, "train")):
            fh.write(json.dumps({"query": p.query, "positive": p.positive}) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--pairs",
                str(pairs),
                "--corpus",
                str(small_beir / "corpus.jsonl.gz"),
                "--queries",
                str(small_beir / "queries.jsonl"),
                "--qrels",
                str(small_beir / "qrels" / "test.tsv"),
                "--base",
                str(tiny_model),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--no-sts",
                "--no-guards",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert len(rows) == 9 and not any("sts_spearman" in r for r in rows)
    # no training queries with judged documents: hybrid-linear keeps the default weight, and says why
    fusion = results["record"]["bm25_weight"]
    assert fusion["weight"] == 1.0 and "no training queries with judged documents" in fusion["method"]
    assert (
        f"siamese feed http://localhost:8080 {(small_beir / 'corpus.jsonl.gz').resolve()}"
        in capsys.readouterr().out
    )


def test_run_against_vespa_wires_feed_and_evaluation(tiny_model, small_beir, tmp_path, monkeypatch, capsys):
    """`siamese run --vespa URL`: the corpus is fed through the real feeder (to the HTTP/2 fault server) and
    evaluated through the backend's query(); the query API itself is stood in for by BM25 here."""
    from fault_server import FaultServer

    import vespa_app.client.query as client
    from common.bm25 import BM25
    from common.data import read_corpus
    from vespa_app.backend import Hit

    corpus = list(read_corpus(small_beir / "corpus.jsonl.gz").values())
    bm25 = BM25([d.passage for d in corpus])

    asked = []

    class StandIn(client.VespaBackend):
        def query(self, text, profile="semantic", hits=10, exact=False):
            asked.append((profile, exact, self.explore_additional))
            idx, scores = bm25.search([text], hits)
            return [Hit(corpus[i].id, float(s)) for i, s in zip(idx[0], scores[0])]

    import siamese.run.serve

    monkeypatch.setattr(siamese.run.serve, "VespaBackend", StandIn)  # where the run takes it from
    out = tmp_path / "run"
    with FaultServer(every_drop=0) as server:
        assert (
            main(
                [
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
                    "--vespa",
                    server.url,
                ]
            )
            == 0
        )
        assert set(server.stored) == {d.id for d in corpus}
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]][:3] == ["vespa bm25", "vespa semantic", "vespa hybrid"]
    assert f"{len(corpus)} documents: {len(corpus)} fed now" in results["record"]["feed"]
    assert not (out / "index").exists()  # evaluated on Vespa, not on the embedded backend
    assert results["record"]["bm25_weight"]["method"].startswith("default: no embedded index")
    # served recall asks Vespa the same queries by brute force; every query explores as the package says
    assert {p for p, exact, _ in asked if exact} == {"semantic"}
    assert {e for *_, e in asked} == {results["record"]["hnsw"]["explore_additional"]}
    assert results["served_recall"]["semantic"]["@10"] == 1.0  # the stand-in answers exact as served


def test_a_vespa_run_keeps_the_bm25_weight_of_the_package_it_reuses(tiny_export, tmp_path):
    from siamese.run.options import RunOptions
    from siamese.run.serve import _bm25_weight
    from vespa_app.package.build import write_package
    from vespa_app.package.options import AppOptions

    app = write_package(tiny_export, tmp_path / "app", AppOptions(bm25_weight=0.3))
    assert _bm25_weight(RunOptions(), None, app) == (0.3, {"method": f"kept from the package {app}"})
    assert _bm25_weight(RunOptions(bm25_weight=0.5), None, app)[0] == 0.5  # given wins
    assert _bm25_weight(RunOptions(), None, tmp_path / "none")[0] == 1.0  # nothing to choose on: the default


def test_run_can_serve_a_merged_model(tiny_model, small_beir, tmp_path):
    from exporter.manifest import Manifest

    out = tmp_path / "run"
    assert (
        main(
            [
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
                "--merge",
                "0.5",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["record"]["merge"] == {"alpha": 0.5, "method": "given"}
    assert Manifest.load(out / "export").merge["alpha"] == 0.5 and (out / "merged" / "merge.json").exists()
    assert "ndcg@10 unseen" in results["rows"][0]  # the merge keeps the tuned model's training positives


def test_run_chunked(tiny_model, small_beir, tmp_path, capsys):
    """Chunked end to end: the package, the index and every model row read documents as chunks."""
    out = tmp_path / "my run"  # printed commands must quote it
    args = [
        "run",
        "--data",
        str(small_beir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--recipe",
        "fixed",
        "--epochs",
        "1",
        "--max-length",
        "48",
        "--chunk-tokens",
        "32",
        "--chunk-overlap",
        "8",
        "--no-guards",
        "--no-sts",
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["record"]["chunking"].startswith("on: chunks of 32 tokens sharing 8")
    meta = json.loads((out / "index" / "meta.json").read_text())
    assert meta["chunking"] == {"tokens": 32, "overlap": 8} and meta["vectors"] > meta["count"]
    assert "tensor<float>(chunk{}, x[32])" in (out / "app" / "schemas" / "doc.sd").read_text()
    rows = {r["name"]: r for r in results["rows"]}
    # the served model and the same model by exact chunked search agree: same vectors, same best-chunk scoring
    assert rows["served semantic"]["ndcg@10"] == pytest.approx(
        rows["fine-tuned (exact)"]["ndcg@10"], abs=0.02
    )
    # the feed command it printed, run as printed (to a fault
    # server instead of localhost:8080), sends the chunks
    printed = capsys.readouterr().out
    feed_line = next(line for line in printed.splitlines() if line.startswith("siamese feed "))
    with FaultServer(every_429=0, every_503=0, every_slow=0, every_reset=0, every_drop=0) as server:
        argv = [server.url if a == "http://localhost:8080" else a for a in shlex.split(feed_line)[1:]]
        assert main(argv) == 0
        assert server.stored and all(doc.get("chunks") for doc in server.stored.values())
    assert (out / "feed-ledger.jsonl").exists()
    capsys.readouterr()
    assert main(["search", str(out / "index"), "coronavirus", "--profile", "semantic", "--hits", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # each hit, then its best chunk
    # A re-run with other chunk options refuses what the first one built: the package, then (once it is gone)
    # the index, each before any work.
    assert main(args[:-6] + ["--no-guards", "--no-sts"]) == 2
    err = capsys.readouterr().err
    assert (
        "package: " in err
        and 'app was not made from what this run asks (chunking: {"tokens": 32, "overlap": 8} → null)' in err
    )
    shutil.rmtree(out / "app")
    assert main(args[:-6] + ["--no-guards", "--no-sts"]) == 2
    err = capsys.readouterr().err
    assert (
        "index: " in err
        and 'index was not made from what this run asks (chunking: {"tokens": 32, "overlap": 8}' in err
    )


def test_run_with_a_query_tower_serves_two_embedders_over_the_base_models_document_vectors(
    tiny_model, small_beir, tmp_path, monkeypatch
):
    """`siamese run --tower query`: the query tower trains, both towers export, the package has two embedders,
    the index holds the base model's document vectors, and the report's rows come from the served two-tower
    model. The corpus is embedded once, by the base model: the exported document graph (the parity check's
    subject) embeds none of it again for the index or the fine-tuned row."""
    from common.data import load_beir
    from exporter.runtime import OnnxEmbedder
    from training.encoder import Encoder

    corpus = {d.passage for d in load_beir(small_beir, "test").corpus.values()}
    onnx_passages, embed = [], OnnxEmbedder.embed

    def counting(self, texts, kind="passage", *a, **kw):
        if kind == "passage":
            onnx_passages.extend(texts)
        return embed(self, texts, kind, *a, **kw)

    monkeypatch.setattr(OnnxEmbedder, "embed", counting)
    out = tmp_path / "run"
    args = [
        "run",
        "--data",
        str(small_beir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--recipe",
        "fixed",
        "--epochs",
        "1",
        "--max-length",
        "48",
        "--tower",
        "query",
        "--no-guards",
        "--no-sts",
    ]
    assert main(args) == 0
    assert len(corpus & set(onnx_passages)) < len(corpus) / 2  # the parity check's sample, no more
    results = json.loads((out / "results.json").read_text())
    assert results["record"]["towers"]["frozen"] == "document"
    assert (out / "export" / "query" / "manifest.json").exists()
    assert 'id="document-embedder"' in (out / "app" / "services.xml").read_text()
    index = np.load(out / "index" / "embeddings.npy")
    docs = [json.loads(line) for line in (out / "index" / "docs.jsonl").read_text().splitlines()]
    texts = [(d["title"] + " " + d["text"]).strip() for d in docs[:5]]
    base = Encoder.load(tiny_model, max_length=48).encode(texts, "passage")
    assert np.abs(index[:5] - base).max() < 1e-5  # the documents are where the base model put them
    served = OnnxEmbedder(out / "export")
    assert not np.allclose(
        served.embed(["a query"], "query"),
        Encoder.load(tiny_model, max_length=48).encode(["a query"], "query"),
        atol=1e-4,
    )  # queries go through the trained tower
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["served semantic"]["ndcg@10"] == pytest.approx(
        rows["fine-tuned (exact)"]["ndcg@10"], abs=0.02
    )


def test_run_serves_a_late_interaction_model_beside_the_single_vector_one(
    tiny_model, late_model, small_beir, tmp_path, capsys
):
    """`siamese run --colbert`: the package carries the token field, the embedded index the token vectors, and
    `search` / `eval` serve the MaxSim profiles from the CLI."""
    out = tmp_path / "run"
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
        "--max-length",
        "32",
        "--no-guards",
        "--no-sts",
        "--colbert",
        str(late_model),
    ]
    assert main(args) == 0
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert {"served colbert", "served colbert-maxsim", "served hybrid-colbert"} <= set(rows)
    assert "colbert" in (out / "app" / "schemas" / "doc.sd").read_text()
    assert json.loads((out / "index" / "meta.json").read_text())["colbert"]["tokens"] > 0
    capsys.readouterr()
    assert (
        main(["search", str(out / "index"), "coronavirus", "--profile", "colbert-maxsim", "--hits", "2"]) == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert (
        main(
            [
                "eval",
                "--backend",
                "embedded",
                "--index",
                str(out / "index"),
                "--data",
                str(small_beir),
                "--profiles",
                "bm25-colbert",
                "colbert",
            ]
        )
        == 0
    )
    assert "embedded colbert" in capsys.readouterr().out
    assert (
        main(
            [
                "run",
                "--data",
                str(small_beir),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "r2"),
                "--colbert",
                str(tiny_model),
            ]
        )
        == 2
    )  # a single-vector model is not a late-interaction one
    assert "not a late-interaction model" in capsys.readouterr().err


def test_a_run_over_an_existing_out_reuses_only_stages_made_from_what_it_asks(
    tiny_model, small_beir, tmp_path, capsys
):
    """Issue 35 #1: a finished run, then the same --out with other data or settings: every stale stage is
    refused in one line naming each difference, nothing is touched;
    --force rebuilds what differs and keeps the rest."""
    from common.atomic import artifact_id
    from exporter.manifest import Manifest

    out = tmp_path / "run"
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
    ]
    assert main(args) == 0
    stages = ("train/model", "export", "index", "app")
    ids = {s: artifact_id(out / s) for s in stages}
    assert all(ids.values())
    capsys.readouterr()

    def refused(*extra):
        assert main(args + list(extra)) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "was not made from what this run asks" in err and "--force" in err
        assert {s: artifact_id(out / s) for s in stages} == ids  # nothing touched
        return err

    err = refused("--lr", "0.5", "--max-steps", "2")
    assert "train:" in err and "lr: 0.0001 → 0.5" in err and "max steps: 0 → 2" in err
    other = tmp_path / "other"
    shutil.copytree(small_beir, other)
    qrels = (other / "qrels" / "train.tsv").read_text().splitlines()
    (other / "qrels" / "train.tsv").write_text("\n".join(qrels[:-3]) + "\n")  # other training pairs
    assert "training pairs:" in refused("--data", str(other))
    assert "export:" in (err := refused("--quantize", "int8")) and "quantize: null → int8" in err
    assert "package:" in (err := refused("--dim", "16")) and "dim: 32 → 16" in err
    assert "package:" in refused("--bm25-weight", "0.1")

    # --force: the export is rebuilt, and what was made from it; training, made from the same, is kept
    assert main(args + ["--quantize", "int8", "--force"]) == 0
    now = {s: artifact_id(out / s) for s in stages}
    assert now["train/model"] == ids["train/model"] and all(now[s] != ids[s] for s in stages[1:])
    assert Manifest.load(out / "export").quantization is not None
    assert main(args + ["--quantize", "int8"]) == 0  # and now it is what this asks for: reused
    assert "reusing it" in capsys.readouterr().err and {s: artifact_id(out / s) for s in stages} == now

    # a stage without a record (made by an older version, by hand, or its record lost) is never taken as made
    (out / "made_from.json").unlink()
    ids = now
    assert "has no record of what made it" in refused("--quantize", "int8")


def test_a_run_does_not_take_the_users_own_folders_for_its_stages(tiny_model, small_beir, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "export").mkdir(parents=True)
    (out / "export" / "notes.txt").write_text("mine")
    args = [
        "run",
        "--data",
        str(small_beir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--no-sts",
        "--no-guards",
    ]
    assert main(args) == 2
    assert "export has no record of what made it" in capsys.readouterr().err
    assert main(args + ["--force"]) == 2
    assert "is not something siamese wrote" in capsys.readouterr().err
    assert (out / "export" / "notes.txt").read_text() == "mine"
