"""`siamese run` end to end on a slice of SciFact with a tiny model."""
import json

from vespa_app.cli import main


def test_run_end_to_end_then_reuse(tiny_model, small_beir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--data", str(small_beir), "--base", str(tiny_model), "--out", str(out), "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("served bm25", "base (", "fine-tuned (exact)", "served semantic", "served hybrid"):
        assert name in printed
    assert "siamese deploy" in printed
    for artifact in ("train/model/model.safetensors", "export/model.onnx", "app/services.xml",
                     "app/models/model.onnx", "index/hnsw.faiss", "report.md", "plot.png", "results.json"):
        assert (out / artifact).exists(), artifact
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 5
    assert "sts_spearman" in results["rows"][1]
    model_mtime = (out / "train" / "model" / "model.safetensors").stat().st_mtime

    assert main(args) == 0  # a second run reuses every artifact
    assert (out / "train" / "model" / "model.safetensors").stat().st_mtime == model_mtime
    assert "reusing" in capsys.readouterr().err

    assert main(["search", str(out / "index"), "coronavirus", "--profile", "hybrid", "--hits", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
