"""Many texts through a model that does not change: its transformer as an ONNX Runtime session, fused for CPU.

A run embeds whole corpora with a frozen model: the base model's vectors of SciFact (the query tower's bank,
the index, the base row) and of every guard set. On 2 cores, all-MiniLM-L6-v2 at 256 tokens: 256 SciFact
abstracts took 21.6 s in PyTorch and 16.0 s here (ONNX Runtime with its transformer fusions: attention, GELU,
skip-LayerNorm; 17.6 s without them); 1,024 abstracts 83.5 s against 75.3 s, the one-off export and fusion (5
s) and the check below included (``python benchmarks/encode_throughput.py``: ``encode_via_onnx``). The gain
depends on the model: bge-small-en-v1.5 (12 layers) gains 3 % (256 abstracts: 38.3 s against 37.1 s). Pooling,
the adapter head and normalisation stay the encoder's own PyTorch code, on the graph's ``last_hidden_state``.

Every call is checked: its first batch goes through PyTorch too, and a difference above ``TOLERANCE`` (weights
that changed since the graph was made, a fusion that does not fit the architecture) turns the fast path off
for that encoder, so a wrong vector is never returned. ``SIAMESE_ONNX_ENCODE=0`` turns it off everywhere.

    encoder.encode(texts)  # calls it: onnx_encode(encoder,
    prefixed texts, batch_size, progress), None = PyTorch
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from common.batching import length_sorted_batches

MIN_TEXTS = 1000  # below this, the one-off export (~10 s) costs more than it saves
TOLERANCE = 1e-5  # max |Δ| of a unit vector against PyTorch's (measured: ~2e-7)
# encoder → its session, or False once refused; beside the encoder, not on it, so copies of it start afresh
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def onnx_encode(encoder, texts: list[str], batch_size: int, progress: bool) -> np.ndarray | None:
    """``encoder.encode``'s vectors of already prefixed ``texts``, through ONNX Runtime; None where the fast
    path does not apply (few texts, a GPU, turned off, or refused for this encoder)."""
    if (
        len(texts) < MIN_TEXTS
        or os.environ.get("SIAMESE_ONNX_ENCODE") == "0"
        or encoder.device.type != "cpu"
        or _SESSIONS.get(encoder) is False
    ):
        return None
    session = _SESSIONS.get(encoder) or _session(encoder)
    _SESSIONS[encoder] = session or False
    if session is None:
        return None
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    label = progress and "encode (onnx)"
    for n, idx in enumerate(length_sorted_batches([len(t) for t in texts], batch_size, label)):
        batch = encoder.tokenize([texts[i] for i in idx])
        feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
        tokens = torch.from_numpy(session.run(["last_hidden_state"], feeds)[0])
        out[idx] = encoder._pooled(tokens, batch["attention_mask"]).float().numpy()
        if n == 0:
            diff = float(np.abs(out[idx] - encoder(batch).float().numpy()).max())
            if diff > TOLERANCE:
                print(
                    f"onnx encode: {diff:.1e} from PyTorch on the first batch; PyTorch from here on",
                    file=sys.stderr,
                )
                _SESSIONS[encoder] = False
                return None
    return out


def _session(encoder):
    """The transformer exported (TorchScript) and fused by ONNX Runtime's transformer optimizer; None if
    either step fails (another architecture, an old runtime)."""
    import onnxruntime as ort

    try:
        with tempfile.TemporaryDirectory(prefix="siamese-onnx-encode-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, fused = Path(tmp) / "model.onnx", Path(tmp) / "fused.onnx"
            export_transformer(encoder, raw, opset=17)
            fuse(raw, fused, encoder.transformer.config)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            return ort.InferenceSession(str(fused), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # any failure leaves PyTorch, which is always right
        print(
            f"onnx encode: not available for this model ({e.__class__.__name__}: {str(e)[:120]}); PyTorch",
            file=sys.stderr,
        )
        return None


def export_transformer(encoder, target: Path, opset: int) -> None:
    """The encoder's transformer alone as an ONNX graph of ``last_hidden_state`` (TorchScript tracing, weights
    inside, batch and sequence dynamic): for the fast path here,
    and for the exporter where optimum cannot run."""
    names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in encoder.tokenizer.model_input_names
    ]
    sample = encoder.tokenize(["a short text to trace the graph with", "and a second one"])
    # tracing records operations: it cannot run in the inference mode ``encode`` runs in. The wrapper is made
    # in eval mode: the exporter puts the mode it found back on it, and so on the encoder inside it
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHiddenState(encoder.transformer, names).eval(),
            tuple(sample[n] for n in names),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
        )


def fuse(graph: Path, out: Path, config) -> None:
    """ONNX Runtime's BERT fusions (attention, GELU, skip-LayerNorm) of ``graph`` into ``out``; ``config``:
    the transformer's (heads and width). Exact GELU, as the model computes it."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fusions = FusionOptions("bert")
    fusions.enable_gelu_approximation = False
    optimize_model(
        str(graph),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        optimization_options=fusions,
        opt_level=1,
    ).save_model_to_file(str(out))


class _LastHiddenState(torch.nn.Module):
    """The transformer alone, its inputs by position: what ``export_transformer`` traces."""

    def __init__(self, transformer, names: list[str]):
        super().__init__()
        self.transformer, self.names = transformer, names

    def forward(self, *inputs):
        return self.transformer(**dict(zip(self.names, inputs))).last_hidden_state
