"""Many texts through ONNX Runtime (training/onnx_encode.py): the same vectors as PyTorch, or PyTorch's."""

import numpy as np
import torch

from training import onnx_encode
from training.encoder import Encoder


def _texts(n):
    return [f"text number {i} about {'cells ' * (i % 7)}and proteins" for i in range(n)]


def test_many_texts_go_through_onnx_runtime_and_embed_as_pytorch(tiny_model, monkeypatch):
    monkeypatch.setattr(onnx_encode, "MIN_TEXTS", 20)
    encoder = Encoder.load(tiny_model, max_length=32, query_prefix="q: ")
    texts = _texts(40)
    fast = encoder.encode(texts, "query")
    assert onnx_encode._SESSIONS.get(encoder)  # the fast path ran
    monkeypatch.setenv("SIAMESE_ONNX_ENCODE", "0")
    slow = encoder.encode(texts, "query")
    assert np.abs(fast - slow).max() < onnx_encode.TOLERANCE


def test_weights_that_changed_since_the_graph_fall_back_to_pytorch(tiny_model, monkeypatch, capsys):
    monkeypatch.setattr(onnx_encode, "MIN_TEXTS", 20)
    encoder = Encoder.load(tiny_model, max_length=32)
    texts = _texts(30)
    encoder.encode(texts)  # the graph is made from these weights
    with torch.no_grad():
        encoder.transformer.embeddings.word_embeddings.weight.mul_(1.5)  # as a training step would
    after = encoder.encode(texts)
    assert onnx_encode._SESSIONS.get(encoder) is False  # refused for this encoder from now on
    assert "PyTorch from here on" in capsys.readouterr().err
    monkeypatch.setenv("SIAMESE_ONNX_ENCODE", "0")
    assert np.array_equal(after, encoder.encode(texts))  # what PyTorch gives, exactly
