"""`siamese export MODEL_DIR OUT_DIR`: the model directory → what Vespa's hugging-face-embedder loads.

Writes ``model.onnx`` (weights inside), ``tokenizer.json`` (truncation set to max tokens, no padding) and
``manifest.json``. Mean and CLS pooling export the plain transformer with optimum and let Vespa pool
``last_hidden_state``; the learned attention pooling cannot be done by Vespa, so it is exported with
``torch.onnx.export`` as a graph whose output is the pooled (and normalised) ``sentence_embedding``.
The export is written to a temporary directory and renamed into place only after parity holds.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from functools import partial
from pathlib import Path

import torch

from common.atomic import atomic_dir, check_output
from common.data import read_beir
from common.errors import UserError
from common.late import TOKENIZER_MAX
from common.lock import locks
from common.poolings import vespa_can_pool, vespa_pooling
from common.vectors import dense_scores
from training.encoder import Encoder, check_model_dir
from training.late_interaction import LateInteraction
from training.model_dir import MERGE_FILE
from training.models import load_model
from training.onnx_encode import export_transformer
from training.towers import QUERY_DIR as QUERY_TOWER
from training.towers import TwoTowers

from .manifest import Manifest, sha256
from .parity import check_parity, check_token_parity, parity_texts
from .quantize import quantize_int8
from .runtime import OnnxEmbedder

OPSET = 18
COLBERT_OUTPUT = "contextual"  # the output name Vespa's colbert-embedder reads by default


class ExportError(UserError, ValueError):
    pass


class _PooledGraph(torch.nn.Module):
    """transformer → pooling → normalize, as one graph with the output Vespa's pooling 'none' reads."""

    def __init__(self, encoder: Encoder, input_names: list[str]):
        super().__init__()
        self.encoder, self.input_names = encoder, input_names

    def forward(self, *inputs):
        return self.encoder(dict(zip(self.input_names, inputs)))


def _input_names(encoder: Encoder) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in encoder.tokenizer.model_input_names:
        names.append("token_type_ids")
    return names


def _export_with_optimum(model_dir: Path, target: Path, work: Path) -> None:
    from optimum.exporters.onnx import main_export

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(
                str(model_dir),
                output=str(work),
                task="feature-extraction",
                opset=OPSET,
                library_name="transformers",
                do_validation=False,
                local_files_only=True,
            )
    except (ValueError, KeyError, NotImplementedError) as e:
        raise ExportError(
            f"{model_dir}: optimum cannot export this architecture ({e}). "
            "Use a BERT/MiniLM/BGE/E5-family encoder."
        ) from e
    extra = [p.name for p in work.iterdir() if p.name.endswith((".onnx_data", ".data"))]
    if extra:
        raise ExportError(f"the ONNX export wrote external weight files {extra}; this tool expects one file")
    (work / "model.onnx").rename(target)


def _export_transformer(encoder: Encoder, model_dir: Path, target: Path, work: Path) -> str:
    """The plain transformer (output ``last_hidden_state``), with optimum; where optimum's exporter cannot be
    imported (optimum-onnx 0.1 needs transformers < 4.58), with torch.onnx.export, which wrote the same graph
    (both matched PyTorch to ~2e-7; the parity check holds either). Returns which exporter wrote it."""
    try:
        import optimum.exporters.onnx  # noqa: F401
    except Exception as e:  # ImportError, or transformers 5 failing inside optimum's own imports
        print(
            f"export: optimum's ONNX exporter cannot be imported here ({type(e).__name__}: {str(e)[:100]}); "
            "torch.onnx.export writes the transformer instead",
            file=sys.stderr,
        )
        export_transformer(encoder, target, OPSET)
        return "torch.onnx"
    _export_with_optimum(model_dir, target, work)
    shutil.rmtree(work)
    return "optimum"


def _export_pooled_graph(encoder: Encoder, target: Path) -> None:
    names = _input_names(encoder)
    sample = encoder.tokenizer(
        ["a sample text", "another one, a little longer"], padding=True, return_tensors="pt"
    )
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _PooledGraph(encoder, names).eval(),
            args,
            str(target),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


class _TokenGraph(torch.nn.Module):
    """A late-interaction model's token vectors from input_ids and attention_mask alone, what Vespa's
    colbert-embedder feeds and reads (output ``contextual``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.token_vectors(input_ids, attention_mask)


def _export_token_graph(model, target: Path) -> None:
    sample = model.tokenize(["a sample text", "another one, a little longer"], "passage")
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {COLBERT_OUTPUT: {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TokenGraph(model).eval(),
            tuple(sample[n] for n in names),
            str(target),
            input_names=names,
            output_names=[COLBERT_OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _write_tokenizer(encoder: Encoder, target: Path) -> None:
    """tokenizer.json with truncation at max tokens and no padding: Vespa's embedder follows this file's
    truncation when it has one, so it must say the same as the manifest. A late-interaction model's tokenizer
    truncates at ``TOKENIZER_MAX`` (its special tokens are Vespa's to add; the embedder cuts to length)."""
    backend = encoder.tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(
        TOKENIZER_MAX if isinstance(encoder, LateInteraction) else encoder.config.max_length
    )
    backend.save(str(target))


def _merge_record(model_dir: Path) -> dict | None:
    path = model_dir / MERGE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        name: installed(name)
        for name in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")
    }


def onnx_ndcg(export_dir, model_file: str, beir, progress: bool = False) -> float:
    """nDCG@10 of an exported graph, exact search, documents and queries embedded as Vespa would."""
    from functools import partial

    embedder = OnnxEmbedder(export_dir, model_file)
    return dense_scores(partial(embedder.embed, progress=progress), beir)["ndcg@10"]


@locks("siamese export", lambda a: a["out_dir"])
def export(
    model_dir,
    out_dir,
    quantize: str | None = None,
    force: bool = False,
    progress: bool = True,
    quality_data=None,
    quality_split: str = "test",
) -> Path:
    """``quality_data`` (a BEIR folder), with ``quantize``: also measure nDCG@10 of fp32 and int8 on it."""
    model_dir = check_model_dir(model_dir)
    out_dir = Path(out_dir)
    check_output(out_dir, "export", force, inputs=[model_dir])
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}: the choice is int8")
    encoder = load_model(
        model_dir, device="cpu"
    ).eval()  # traced and proven on the CPU, as ONNX Runtime runs it
    if isinstance(encoder, LateInteraction):
        if quantize:
            raise ExportError("--quantize is for single-vector exports; a late-interaction export stays fp32")
        return atomic_dir(
            out_dir,
            lambda tmp: _write_late(encoder, model_dir, tmp, progress),
            "export",
            replace=force,
            inputs=[model_dir],
        )
    single = partial(
        _write_single,
        quantize=quantize,
        progress=progress,
        quality_data=quality_data,
        quality_split=quality_split,
    )
    if isinstance(encoder, TwoTowers):

        def write(tmp: Path):
            single(encoder.document, model_dir, tmp)
            (tmp / QUERY_TOWER).mkdir()
            single(encoder.query, model_dir / encoder.record["query"], tmp / QUERY_TOWER)
            manifest = Manifest.load(tmp)
            manifest.query_tower = QUERY_TOWER
            manifest.files = _file_hashes(tmp)
            manifest.save(tmp)
    else:

        def write(tmp: Path):
            single(encoder, model_dir, tmp)

    return atomic_dir(out_dir, write, "export", replace=force, inputs=[model_dir])


def _write_single(
    encoder: Encoder, model_dir: Path, tmp: Path, quantize, progress, quality_data, quality_split
):
    """One single-vector export into ``tmp``: the graph, tokenizer.json and a manifest with its parity."""
    c = encoder.config
    baked = not vespa_can_pool(c.pooling) or encoder.head is not None  # Vespa cannot apply a learned head
    say = (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)
    say(f"exporting {model_dir} → ONNX ({'torch.onnx, pooled graph' if baked else 'the transformer'})")
    if baked:
        _export_pooled_graph(encoder, tmp / "model.onnx")
    else:
        _export_transformer(encoder, model_dir, tmp / "model.onnx", tmp / "optimum")
    _write_tokenizer(encoder, tmp / "tokenizer.json")
    manifest = Manifest(
        dimension=encoder.dim,
        pooling="none" if baked else vespa_pooling(c.pooling),
        normalize=c.normalize,
        max_tokens=c.max_length,
        prefixes={"query": c.query_prefix, "document": c.document_prefix},
        inputs=_input_names(encoder),
        output="sentence_embedding" if baked else "last_hidden_state",
        model_pooling=c.pooling,
        opset=OPSET,
        versions=_versions(),
        source_model=str(model_dir.resolve()),
        merge=_merge_record(model_dir),
    )
    manifest.save(tmp)
    say("checking parity (PyTorch vs ONNX Runtime, batch and Vespa-style)")
    texts = parity_texts()
    manifest.parity = {"fp32": check_parity(encoder, tmp, texts)}
    if quantize:
        say("quantizing to int8 (dynamic, per-channel)")
        (tmp / "model.onnx").rename(tmp / "model-fp32.onnx")
        quantize_int8(tmp / "model-fp32.onnx", tmp / "model.onnx")
        manifest.quantization = {"type": "int8", "method": "dynamic", "per_channel": True}
        manifest.parity["int8"] = check_parity(encoder, tmp, texts, quantized=True)
        if quality_data:
            say(f"measuring nDCG@10 of fp32 and int8 on {quality_data} ({quality_split})")
            beir = read_beir(quality_data, quality_split)
            fp32, int8 = (onnx_ndcg(tmp, f, beir, progress) for f in ("model-fp32.onnx", "model.onnx"))
            manifest.quantization["ndcg@10"] = {
                "data": str(quality_data),
                "split": quality_split,
                "fp32": round(fp32, 4),
                "int8": round(int8, 4),
                "change": round(int8 - fp32, 4),
            }
            if int8 < fp32 - 0.01:
                say(f"warning: int8 loses {100 * (fp32 - int8):.1f} points nDCG@10 against fp32 (bound: 1)")
    manifest.files = _file_hashes(tmp)
    manifest.save(tmp)


def _file_hashes(export_dir: Path) -> dict:
    """Every file of the export but the manifest itself; a query
    tower by its manifest (which hashes its files)."""
    files = [p for p in sorted(export_dir.iterdir()) if p.is_file() and p.name != "manifest.json"]
    files += [q for q in [export_dir / QUERY_TOWER / "manifest.json"] if q.exists()]
    return {str(p.relative_to(export_dir)): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}


def _write_late(model: LateInteraction, model_dir: Path, tmp: Path, progress: bool) -> None:
    """ONNX (token vectors, output ``contextual``), tokenizer.json and a manifest of kind colbert."""
    from dataclasses import asdict

    if progress:
        print(
            f"exporting {model_dir} → ONNX (torch.onnx, late interaction: a vector per token)",
            file=sys.stderr,
        )
    _export_token_graph(model, tmp / "model.onnx")
    _write_tokenizer(model, tmp / "tokenizer.json")
    c = model.config
    manifest = Manifest(
        dimension=model.late.dim,
        pooling="none",
        normalize=True,
        max_tokens=model.late.document_tokens,
        prefixes={"query": c.query_prefix, "document": c.document_prefix},
        inputs=["input_ids", "attention_mask"],
        output=COLBERT_OUTPUT,
        model_pooling=c.pooling,
        opset=OPSET,
        versions=_versions(),
        source_model=str(model_dir.resolve()),
        kind="colbert",
        colbert=asdict(model.late),
    )
    manifest.save(tmp)
    if progress:
        print(
            "checking parity per token (PyTorch vs ONNX Runtime, Vespa-style one text per call)",
            file=sys.stderr,
        )
    manifest.parity = {"fp32": check_token_parity(model, tmp, parity_texts())}
    manifest.files = _file_hashes(tmp)
    manifest.save(tmp)


def describe(export_dir) -> str:
    m = Manifest.load(export_dir)
    return json.dumps(
        {
            k: getattr(m, k)
            for k in (
                "kind",
                "dimension",
                "pooling",
                "normalize",
                "max_tokens",
                "output",
                "quantization",
                "parity",
                "colbert",
            )
            if getattr(m, k) is not None
        },
        indent=2,
    )
