"""How `siamese app check` judges what Vespa's container code answered (``check.container`` sends it): each
document's embedding against ours, each query's tree, rank profile, query tensors and rendered hits, and the
global phase's scores against the embedded backend's fusion.
Every disagreement goes to ``report.problems``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data import Doc
from common.vectors import cosine, pack_bits
from vespa_app import profiles
from vespa_app.check.bounds import MAX_FUSION_DIFF, MIN_COLBERT_AGREE
from vespa_app.check.colbert_bits import colbert_agreement, token_matrix
from vespa_app.check.query_tree import check_tree, tree_shape
from vespa_app.check.report import ContainerReport
from vespa_app.client.query import hits_from_response


@dataclass
class UnderTest:
    """What the checks need of the package under test: its record, chunker, our embedders and a small embedded
    index of the sampled documents (none for a late-interaction export alone)."""

    path: Path
    chunker: object
    embedder: object  # our ONNX Runtime embedder of the single-vector model, or None
    colbert: object  # our token embedder of models/colbert, or None
    binarized: bool
    min_cosine: float
    index: object = None
    docs: list = field(default_factory=list)  # the index's documents, in its order
    explore_additional: int = 0  # the package's HNSW exploration beyond targetHits

    @property
    def body(self) -> str:
        return "chunks" if self.chunker else "text"


def judge_document(
    report: ContainerReport, under: UnderTest, kind: str, doc: Doc, fields: dict, got: dict
) -> None:
    """Vespa's indexing statements and embedder vs what we embed for the same document: its passage, or,
    chunked, each of its chunks (labelled by position in the array the feed sends)."""
    where = f"indexing {kind} document {doc.id!r}"
    if got.get("error"):
        report.problems.append(f"{where}: {got['error']}")
        return
    row = {
        "kind": kind,
        "id": doc.id,
        "cosine": None,
        "chunks": len(fields["chunks"]) if under.chunker else None,
    }
    report.documents.append(row)
    if under.embedder:  # not a late-interaction export alone
        texts = fields["chunks"] if under.chunker else [doc.passage]
        row["cosine"] = _embedding_cosine(
            got, texts, under.chunker is not None, under.embedder, where, report.problems
        )
        if row["cosine"] is not None and row["cosine"] < under.min_cosine:
            report.problems.append(
                f"{where}: Vespa's embedding has cosine {row['cosine']:.6f} to ours "
                f"(< {under.min_cosine}); the schema's indexing statement embeds another text than "
                f"we do ({got['statements'][-1] if got.get('statements') else ''})"
            )
    if under.colbert:  # the colbert field: Vespa's colbert-embedder, run by the schema's indexing statement
        row["colbert_tokens"], row["colbert_agree"] = colbert_agreement(
            got.get("colbert") or {}, under.colbert.embed_one(doc.passage, "passage")
        )
        if row["colbert_agree"] < MIN_COLBERT_AGREE:
            report.problems.append(
                f"{where}: the colbert field ({row['colbert_tokens']} token vectors) agrees "
                f"with our token vectors for {100 * row['colbert_agree']:.2f} % of tokens"
            )


def judge_query(
    report: ContainerReport, under: UnderTest, request: dict, got: dict, schema_fields: dict
) -> None:
    """One request through Vespa's query stack: its tree, rank profile, query tensors, rendered response and,
    for a fusion profile, the global phase's scores."""
    profile, text = request["profile"], request["text"]
    label = f"{profile.name} query {text[:40]!r}"
    if got.get("error"):
        report.problems.append(f"{label}: Vespa refused our client's request: {got['error'][:500]}")
        return
    wrong = check_tree(got["tree"], profile, text, 10, schema_fields, got["inputs"], under.explore_additional)
    if wrong:
        report.problems.append(f"{label}: query tree {wrong}")
    if got["profile"] != profile.name:
        report.problems.append(f"{label}: rank profile {got['profile']!r}, asked for {profile.name!r}")
    if under.chunker and profile.embeds_query:  # the hit's best chunk: selected by Vespa, asked for by us
        if "chunks" not in got["summary_fields"]:
            report.problems.append(
                f"{label}: the request does not select the chunks summary "
                f"({got['summary_fields']}), so no hit carries its best chunk"
            )
        selector = {
            profiles.BEST_CHUNK_FN,
            f"rankingExpression({profiles.BEST_CHUNK_FN})",
        }  # as Vespa names it
        if not selector & set(got["summary_features"]):
            report.problems.append(
                f"{label}: Vespa's rank profile has no {profiles.BEST_CHUNK_FN} summary "
                f"feature ({got['summary_features']}): the chunks summary would be empty"
            )
    cos = _judge_inputs(report, under, label, text, got["inputs"])
    report.queries.append(
        {"profile": profile.name, "kind": request["kind"], "shape": tree_shape(got["tree"]), "cosine": cos}
    )
    wrong = _read_back(got, request["passages"])
    if wrong:
        report.problems.append(f"{label}: our client reads Vespa's rendered response wrongly: {wrong}")
    elif request["hits"]:
        report.responses += 1
    if request["fused"] is not None:
        _judge_fusion(report, profile.name, label, request["fused"], got["hits"])


def _judge_inputs(
    report: ContainerReport, under: UnderTest, label: str, text: str, inputs: dict
) -> float | None:
    """Each query(...) tensor Vespa's query stack set against ours for the text; the lowest cosine."""
    cos = None
    vector = under.embedder.embed_one(text, "query") if inputs and under.embedder else None
    for name, tensor in inputs.items():
        if tensor is None:
            report.problems.append(f"{label}: query({name}) is not set; the rank profile needs it")
            continue
        if name == "q":
            cos = float(cosine(np.asarray(tensor, dtype=np.float32), vector))
            if cos < under.min_cosine:
                report.problems.append(f"{label}: query(q) has cosine {cos:.6f} to our query vector")
        elif name == profiles.COLBERT_INPUT:
            theirs, ours = token_matrix(tensor), under.colbert.embed_one(text, "query")
            token_cos = float(cosine(theirs, ours).min()) if theirs.shape == ours.shape else 0.0
            cos = token_cos if cos is None else min(cos, token_cos)
            if token_cos < under.min_cosine:
                report.problems.append(
                    f"{label}: query(qt) differs from our query token vectors "
                    f"({theirs.shape} vs {ours.shape}, min cosine {token_cos:.6f})"
                )
        elif name == "q_binary":
            if [int(v) for v in tensor] != pack_bits(vector).astype(np.int8).tolist():
                report.problems.append(f"{label}: query(q_binary) differs from our packed sign bits")
    return cos


def _judge_fusion(report: ContainerReport, profile: str, label: str, fused: dict, hits: list) -> None:
    """Vespa's global-phase scores against the embedded backend's fusion of the same first-phase features."""
    vespa_scores = {h["id"]: h["relevance"] for h in hits}
    missing = set(fused) - set(vespa_scores)
    diff = max((abs(vespa_scores[i] - s) for i, s in fused.items() if i in vespa_scores), default=0.0)
    f = report.fusion.setdefault(profile, {"queries": 0, "hits": 0, "max_diff": 0.0})
    f["queries"] += 1
    f["hits"] += len(fused)
    f["max_diff"] = max(f["max_diff"], diff)
    if missing or diff > MAX_FUSION_DIFF:
        report.problems.append(
            f"{label}: Vespa's global phase scores differ from the embedded backend's "
            f"fusion by {diff:.2e}" + (f"; {len(missing)} hits lost" if missing else "")
        )


def _read_back(got: dict, passages: dict) -> str:
    """What our client makes of Vespa's own JSON rendering of the hits: the same ids and scores, in order,
    and, chunked, each hit's best chunk."""
    if not got.get("hits"):
        return ""
    ours = hits_from_response(json.loads(got["rendered"]))
    if [(h.id, h.score) for h in ours] != [(h["id"], h["relevance"]) for h in got["hits"]]:
        return f"hits {[(h.id, h.score) for h in ours][:3]}…, Vespa rendered {got['hits'][:3]}…"
    wrong = [h.id for h in ours if h.passage != passages.get(h.id, "")]
    return (
        f"best chunk of {wrong[:3]} not read from closest(embedding) and the chunks summary" if wrong else ""
    )


def _embedding_cosine(got: dict, texts: list[str], chunked: bool, embedder, where: str, problems: list[str]):
    """The lowest cosine between Vespa's embedding of the document (each chunk, in a chunked package) and
    ours; None, with the problem named, when Vespa produced none or labelled the chunks otherwise."""
    if not got.get("embedding"):
        problems.append(f"{where}: no embedding produced")
        return None
    vespa = got["embedding"] if chunked else {"0": got["embedding"]}
    if list(vespa) != [str(i) for i in range(len(texts))]:
        problems.append(
            f"{where}: chunk labels {list(vespa)[:8]}, expected 0..{len(texts) - 1} in the order the "
            "feed sends the chunks"
        )
        return None
    return min(
        float(cosine(np.asarray(v, dtype=np.float32), embedder.embed_one(t, "passage")))
        for v, t in zip(vespa.values(), texts)
    )
