"""Bases as users name them: hub ids (offline, from a cache laid out on disk), sentence-transformers
conventions, ONNX-only encoders rebuilt into trainable directories,
and the model card every directory we write carries."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from conftest import toy_pairs
from huggingface_hub.utils import reset_sessions

from training.config import TrainConfig
from training.loop import train
from training.model_dir import EncoderConfig, ModelDirError, check_model_dir, model_name

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_model, tmp_path, monkeypatch):
    """A Hugging Face hub cache holding ``acme/tiny`` at commit
    SHA, laid out as huggingface_hub writes one."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny" / "snapshots" / SHA
    shutil.copytree(tiny_model, snapshot)
    (cache / "models--acme--tiny" / "refs").mkdir()
    (cache / "models--acme--tiny" / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_a_hub_id_resolves_offline_from_the_cache_and_training_records_its_revision(hub_cache, tmp_path):
    assert check_model_dir("acme/tiny") == hub_cache
    assert check_model_dir(f"acme/tiny@{SHA}") == hub_cache
    assert model_name(hub_cache) == "acme/tiny" and model_name("acme/tiny") == "acme/tiny"
    cfg = TrainConfig(
        base="acme/tiny", out=str(tmp_path / "run"), epochs=1, batch_size=8, max_length=32, anchor="none"
    )
    model_dir = train(cfg, toy_pairs(16), progress=False)
    saved = json.loads((model_dir / "train_config.json").read_text())
    assert saved["base"] == "acme/tiny" and saved["base_revision"] == SHA
    card = (model_dir / "README.md").read_text()
    assert "base model: acme/tiny (revision " + SHA in card


class _FakeHub(BaseHTTPRequestHandler):
    """Answers model-info calls as the hub does for an unknown and a gated repository."""

    def do_GET(self):  # noqa: N802
        if "/api/models/acme/gated" in self.path:
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        body = b'{"error": "no"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    reset_sessions()  # a session made while offline keeps refusing every request
    yield
    server.shutdown()
    reset_sessions()


def test_unknown_gated_and_offline_ids_each_get_their_own_line(fake_hub, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(ModelDirError, match="no such model on the Hugging Face hub"):
        check_model_dir("acme/unknown")
    with pytest.raises(ModelDirError, match="gated model"):
        check_model_dir("acme/gated")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reset_sessions()
    with pytest.raises(ModelDirError, match="HF_HUB_OFFLINE is set"):
        check_model_dir("acme/unknown")


def test_the_cli_says_one_line_for_an_id_it_cannot_resolve(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from siamese.cli import main

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["eval", "--models", "acme/nothing-here", "--no-bm25"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: acme/nothing-here: not in the local hub cache")


def test_prompts_pooling_and_window_come_from_a_sentence_transformers_directory(tiny_model, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_model, folder)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 96}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "prompts": {
                    "query": "Represent this sentence for searching relevant passages: ",
                    "document": "doc: ",
                }
            }
        )
    )
    config = EncoderConfig.load(folder)
    assert (config.pooling, config.normalize, config.max_length) == ("cls", True, 96)
    assert config.query_prefix == "Represent this sentence for searching relevant passages: "
    assert config.document_prefix == "doc: "
    assert EncoderConfig.load(folder, query_prefix="q: ").query_prefix == "q: "  # a flag still wins
    # a training run serves at that window by default and keeps the prompts
    cfg = TrainConfig(base=str(folder), out=str(tmp_path / "run"), epochs=1, batch_size=8, anchor="none")
    model_dir = train(cfg, toy_pairs(16), progress=False)
    trained = EncoderConfig.load(model_dir)
    assert (trained.max_length, trained.pooling, trained.query_prefix) == (96, "cls", config.query_prefix)


def _export_onnx_like_xenova(model, path):
    """The tiny model as an ONNX graph with torch's legacy exporter: anonymous transposed MatMul weights."""
    ids = torch.tensor([[101, 2023, 2003, 102]])
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        opset_version=14,
        dynamo=False,
        dynamic_axes={
            n: {0: "batch", 1: "seq"}
            for n in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")
        },
    )


@pytest.mark.parametrize("weights", ["as initialised", "trained-like"])
def test_an_onnx_encoder_imports_into_an_equal_trainable_directory(tiny_model, tmp_path, weights):
    import onnx
    from transformers import AutoModel

    from training.encoder import Encoder
    from training.onnx_import import import_onnx

    original = AutoModel.from_pretrained(tiny_model).eval()
    if weights == "trained-like":  # no two tensors equal, as in a real model (the exporter shares equal ones)
        torch.manual_seed(1)
        with torch.no_grad():
            for p in original.parameters():
                p.add_(0.02 * torch.randn_like(p))
    graph = tmp_path / "model.onnx"
    _export_onnx_like_xenova(original, graph)
    names = [i.name for i in onnx.load(str(graph)).graph.initializer]
    assert any(n.startswith("onnx::MatMul") for n in names)  # the case the importer exists for
    out, proof = import_onnx(
        graph,
        tiny_model / "tokenizer.json",
        tmp_path / "imported",
        pooling="cls",
        max_length=64,
        query_prefix="q: ",
    )
    assert proof["heads"] == 2 and proof["max_abs_diff"] <= 1e-5
    rebuilt = AutoModel.from_pretrained(out).eval()
    for key, value in original.state_dict().items():
        if not key.startswith("pooler."):
            assert torch.equal(value, rebuilt.state_dict()[key]), key
    encoder = Encoder.load(out)
    assert (encoder.config.pooling, encoder.config.max_length, encoder.config.query_prefix) == (
        "cls",
        64,
        "q: ",
    )
    assert np.isfinite(encoder.encode(["a claim"], "query")).all()
    assert "Imported from ONNX" in (out / "README.md").read_text()


def test_an_onnx_graph_that_does_not_match_is_refused(tiny_model, tmp_path):
    import onnx
    from transformers import AutoModel

    from training.onnx_import import import_onnx

    graph = tmp_path / "model.onnx"
    _export_onnx_like_xenova(AutoModel.from_pretrained(tiny_model).eval(), graph)
    model = onnx.load(str(graph))
    for node in model.graph.node:  # GELU → ReLU: the shapes still fit a BertModel, the outputs do not
        if node.op_type == "Erf":
            node.op_type = "Relu"
    onnx.save(model, str(graph))
    with pytest.raises(ModelDirError, match="no rebuilt BertModel matches"):
        import_onnx(graph, tiny_model / "tokenizer.json", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(ModelDirError, match="not a readable ONNX model"):
        import_onnx(broken, tiny_model / "tokenizer.json", tmp_path / "bad")


def test_the_temperature_follows_the_base_models_margin():
    from training.temperature import margin, sample_pairs, temperature_for

    # the margins measured on SciFact's training pairs (docs/bases.md) give the τ measured best for each base
    assert (temperature_for(0.458), temperature_for(0.205)) == (0.05, 0.02)
    assert (temperature_for(0.0), temperature_for(3.0)) == (0.01, 0.10)  # clipped
    q = np.eye(4, dtype=np.float32)
    p = 0.5 * q + 0.5 / np.sqrt(3) * (1 - q)  # positive cosine 0.5, every negative 0.289
    assert margin(q, p) == pytest.approx(0.5 - 0.5 / np.sqrt(3))
    pairs = toy_pairs(8)
    repeated = pairs + [pairs[0].__class__(query="another query", positive=pairs[0].positive)]
    picked = sample_pairs(repeated, seed=0)
    assert len({p.positive for p in picked}) == len(picked) == 8  # a repeated positive is no negative


def test_a_run_without_a_temperature_takes_the_bases_and_records_it(tiny_model, tmp_path):
    from training.encoder import Encoder
    from training.temperature import base_temperature

    cfg = TrainConfig(
        base=str(tiny_model),
        out=str(tmp_path / "auto"),
        epochs=1,
        max_steps=1,
        batch_size=8,
        max_length=32,
        anchor="none",
    )
    saved = json.loads((train(cfg, toy_pairs(16), progress=False) / "train_config.json").read_text())
    encoder = Encoder.load(tiny_model, max_length=32)
    assert (saved["temperature"], saved["base_margin"]) == pytest.approx(
        base_temperature(encoder.encode, toy_pairs(16), seed=cfg.seed)
    )
    given = TrainConfig(
        base=str(tiny_model),
        out=str(tmp_path / "given"),
        epochs=1,
        max_steps=1,
        batch_size=8,
        max_length=32,
        anchor="none",
        temperature=0.07,
    )
    saved = json.loads((train(given, toy_pairs(16), progress=False) / "train_config.json").read_text())
    assert (saved["temperature"], saved["base_margin"]) == (0.07, None)


def test_all_minilm_gets_the_temperature_it_was_measured_best_at_on_scifact():
    from common.bundled import SCIFACT
    from training.encoder import Encoder
    from training.model_dir import default_base_model
    from training.pairs import load_pairs
    from training.temperature import base_temperature

    encoder = Encoder.load(default_base_model(), max_length=128)  # the default recipe's training window
    tau, base_margin = base_temperature(encoder.encode, load_pairs(SCIFACT)[0], seed=42)
    assert tau == 0.05 and 0.40 < base_margin < 0.50
