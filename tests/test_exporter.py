import json

import numpy as np
import onnx
import pytest
from conftest import toy_pairs

from exporter.manifest import Manifest, ManifestError
from exporter.onnx_export import ExportError, export
from exporter.parity import ParityError, check_parity
from exporter.runtime import OnnxEmbedder
from training.config import TrainConfig
from training.encoder import Encoder, ModelDirError
from training.loop import train


@pytest.fixture(scope="module", params=["mean", "attention"])
def trained(request, tiny_model, tmp_path_factory):
    """A briefly trained tiny model with prefixes; attention pooling exercises the pooled-graph path."""
    out = tmp_path_factory.mktemp(f"run-{request.param}")
    cfg = TrainConfig(
        base=str(tiny_model),
        out=str(out),
        epochs=1,
        batch_size=8,
        max_length=48,
        anchor="none",
        pooling=request.param,
        query_prefix="query: ",
        document_prefix="passage: ",
    )
    return train(cfg, toy_pairs(16), progress=False)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return export(trained, tmp_path_factory.mktemp("exp") / "export", progress=False)


def test_export_writes_what_vespa_loads(trained, exported):
    m = Manifest.load(exported)
    m.verify_files(exported)
    assert sorted(p.name for p in exported.iterdir()) == [
        ".siamese-artifact",
        "manifest.json",
        "model.onnx",
        "tokenizer.json",
    ]
    graph = onnx.load(str(exported / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == [m.output]
    assert not list(exported.glob("*.data"))
    pooling = json.loads((trained / "siamese.json").read_text())["pooling"]
    if pooling == "attention":
        assert (m.pooling, m.output) == ("none", "sentence_embedding")
    else:
        assert (m.pooling, m.output) == ("mean", "last_hidden_state")
    assert m.prefixes == {"query": "query: ", "document": "passage: "}
    assert m.max_tokens == 48 and m.dimension == 32
    tok = json.loads((exported / "tokenizer.json").read_text())
    assert tok["truncation"]["max_length"] == 48 and tok["padding"] is None
    assert m.parity["fp32"]["texts"] >= 100
    assert m.parity["fp32"]["query"]["max_abs_diff"] <= 1e-5


def test_vespa_style_embedding_equals_pytorch(trained, exported):
    encoder = Encoder.load(trained)
    onnx_embedder = OnnxEmbedder(exported)
    texts = ["short", "a long text " * 100, "naïve 東京"]
    for kind in ("query", "passage"):
        expected = encoder.encode(texts, kind)
        one_by_one = np.stack([onnx_embedder.embed_one(t, kind) for t in texts])
        np.testing.assert_allclose(one_by_one, expected, atol=1e-5)
        np.testing.assert_allclose(onnx_embedder.embed(texts, kind), expected, atol=1e-5)


def test_tampered_model_is_caught(trained, exported, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered)
    model = onnx.load(str(tampered / "model.onnx"))
    # A small random change to one matrix of the last layer, as a broken conversion might make.
    matrices = [t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[0] == t.dims[1]]
    target = matrices[-1]
    weights = onnx.numpy_helper.to_array(target).copy()
    weights += np.random.default_rng(0).normal(0, 0.02, weights.shape).astype(weights.dtype)
    target.CopyFrom(onnx.numpy_helper.from_array(weights, target.name))
    onnx.save(model, str(tampered / "model.onnx"))
    with pytest.raises(ParityError, match="does not embed like the model"):
        check_parity(Encoder.load(trained), tampered)
    with pytest.raises(ManifestError, match="sha256"):
        Manifest.load(tampered).verify_files(tampered)


def test_int8_export_stays_close(trained, tmp_path, small_beir):
    out = export(trained, tmp_path / "int8", quantize="int8", progress=False, quality_data=small_beir)
    m = Manifest.load(out)
    ndcg = m.quantization["ndcg@10"]
    assert ndcg["change"] == pytest.approx(ndcg["int8"] - ndcg["fp32"], abs=1e-4) and 0 <= ndcg["int8"] <= 1
    assert m.quantization["per_channel"] is True
    assert m.parity["int8"]["query"]["mean_cosine"] >= 0.99
    assert (out / "model.onnx").stat().st_size < (out / "model-fp32.onnx").stat().st_size
    # int8 vectors must be Vespa's one-text-per-call vectors, whatever the batch
    int8 = OnnxEmbedder(out)
    texts = ["short", "a much longer text " * 30, "naïve"]
    np.testing.assert_array_equal(
        int8.embed(texts, "passage"), np.stack([int8.embed_one(t, "passage") for t in texts])
    )


def test_bad_inputs(tmp_path, trained, exported):
    with pytest.raises(ModelDirError, match="not a directory"):
        export(tmp_path / "nope", tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="no config.json"):
        export(tmp_path / "empty", tmp_path / "o2")
    no_fast = tmp_path / "nofast"
    no_fast.mkdir()
    for f in trained.iterdir():
        if f.is_file() and f.name != "tokenizer.json":
            (no_fast / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelDirError, match="tokenizer.json"):
        export(no_fast, tmp_path / "o3")
    weird = tmp_path / "weird"
    weird.mkdir()
    (weird / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    (weird / "tokenizer.json").write_text("{}")
    with pytest.raises((ModelDirError, ExportError, ValueError)):
        export(weird, tmp_path / "o4")
    with pytest.raises(FileExistsError, match="already exists"):
        export(trained, exported)
    assert not (tmp_path / "o1").exists() and not list(tmp_path.glob(".o*tmp*"))


def test_without_optimum_the_transformer_is_exported_by_torch_and_held_to_the_same_parity(
    tiny_trained, tmp_path, monkeypatch, capsys
):
    """Where optimum's exporter cannot be imported (optimum-onnx 0.1 with transformers 5, as on the GPU
    machine), torch.onnx writes the same last_hidden_state graph; the
    parity check holds it to PyTorch as it holds optimum's."""
    import sys

    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)  # `import` of it now raises ImportError
    out = export(tiny_trained, tmp_path / "export", progress=False)
    assert "torch.onnx.export writes the transformer instead" in capsys.readouterr().err
    m = Manifest.load(out)
    assert m.output == "last_hidden_state" and m.pooling == "mean"
    assert max(m.parity["fp32"][kind]["max_abs_diff"] for kind in ("query", "passage")) <= 1e-5
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    texts = ["a claim about vitamin D", "a much longer passage about proteins and how they fold " * 5]
    ours = Encoder.load(tiny_trained, device="cpu").encode(texts, "passage")
    np.testing.assert_allclose(OnnxEmbedder(out).embed(texts, "passage"), ours, rtol=0, atol=1e-5)
