"""Vespa's own container code on our feed and our queries, in-process: the half of `siamese app check` that
goes past the config model.

What Vespa's code is given, and what we compare (see ``verify/.../Container.java`` for the Java side):

- **Feed.** Real corpus documents (with a title, title-only, text-only, non-ASCII, the longest), with the
  fields exactly as our feeder sends them, go through the package's indexing statements, executed by Vespa's
  indexing language with the package's embedder. The ``embedding`` tensor Vespa produces must equal what our
  evaluation and embedded backend compute from ``Doc.passage`` (cosine ≥ ``MIN_COSINE``, ``MIN_COSINE_INT8``
  for an int8 graph); in a chunked
  package, from each chunk the feed sends, labelled by its position.
- **Queries.** Every request our client builds (``client.query.query_body``), for every profile in the package,
  for plain and hostile query texts, goes through Vespa's ``Query`` (query profile, schema info and the
  ``embed(...)`` of the query) and its YQL parser. We check the query tree node by node against the profile,
  the rank profile, and that each ``query(...)`` tensor is our model's vector for the text.
- **Fusion.** For the hybrid profiles the hits carry our first-phase features (closeness and BM25 from the
  embedded backend, on a small index of the sampled documents); Vespa's GlobalPhaseRanker re-ranks them with the
  profile's global-phase expression, and its scores must equal the embedded backend's fusion.
- **Responses.** The hits go back through Vespa's JSON renderer, as the query API returns them, and our
  client (``client.query.hits_from_response``) must read back the same ids and scores; in a chunked package,
  each hit's best chunk, the one element of the ``chunks`` summary that ``select-elements-by`` keeps. Every
  request of a chunked package must select that summary, and Vespa's rank profiles must have the summary
  feature that selects it.
- **Rejections.** Requests Vespa must refuse (a profile the package lacks, an unknown embedder, YQL that does
  not parse) must be refused by Vespa's code, with its message.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data import Doc
from common.vectors import cosine, pack_bits

from vespa_app import profiles
from vespa_app.check.bounds import MAX_FUSION_DIFF, MIN_COLBERT_AGREE, MIN_COSINE, MIN_COSINE_INT8
from vespa_app.check.colbert_bits import colbert_agreement, token_matrix
from vespa_app.check.report import ContainerReport
from vespa_app.check.samples import HOSTILE_QUERIES, PLAIN_QUERIES, sample_documents
from vespa_app.check.query_tree import check_tree, tree_shape
from vespa_app.serving import COLBERT_DIR, SCHEMA, TARGET_HITS



# ---------------------------------------------------------------- the check

def _hit(index, position: int, closeness: float, features: dict | None = None) -> dict:
    """A hit as the content nodes would return it: first-phase features and the summary fields we read."""
    doc = index.docs[position]
    fields = {"id": doc.id, "title": doc.title}  # chunked: the best chunk is added where the profile selects it
    return {"id": doc.id, "relevance": closeness, "fields": fields,
            "features": {"closeness(field,embedding)": closeness, **(features or {})}}


def _read_back(got: dict, passages: dict) -> str:
    """What our client makes of Vespa's own JSON rendering of the hits: the same ids and scores, in order, and,
    chunked, each hit's best chunk."""
    from vespa_app.client.query import hits_from_response

    if not got.get("hits"):
        return ""
    ours = hits_from_response(json.loads(got["rendered"]))
    if [(h.id, h.score) for h in ours] != [(h["id"], h["relevance"]) for h in got["hits"]]:
        return f"hits {[(h.id, h.score) for h in ours][:3]}…, Vespa rendered {got['hits'][:3]}…"
    wrong = [h.id for h in ours if h.passage != passages.get(h.id, "")]
    return f"best chunk of {wrong[:3]} not read from closest(embedding) and the chunks summary" if wrong else ""


MAXSIM_FEATURE = f"rankingExpression({profiles.MAXSIM_FN})"  # as Vespa names a function among match features


def _colbert_embedder(package: Path):
    from exporter.runtime import OnnxTokenEmbedder

    return OnnxTokenEmbedder(package / COLBERT_DIR) if (package / COLBERT_DIR).exists() else None


def _embedding_cosine(got: dict, texts: list[str], chunked: bool, embedder, where: str, problems: list[str]):
    """The lowest cosine between Vespa's embedding of the document (each chunk, in a chunked package) and ours;
    None, with the problem named, when Vespa produced none or labelled the chunks otherwise."""
    if not got.get("embedding"):
        problems.append(f"{where}: no embedding produced")
        return None
    vespa = got["embedding"] if chunked else {"0": got["embedding"]}
    if list(vespa) != [str(i) for i in range(len(texts))]:
        problems.append(f"{where}: chunk labels {list(vespa)[:8]}, expected 0..{len(texts) - 1} in the order the "
                        "feed sends the chunks")
        return None
    return min(float(cosine(np.asarray(v, dtype=np.float32), embedder.embed_one(t, "passage")))
               for v, t in zip(vespa.values(), texts))


@dataclass
class _Package:
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

    @property
    def body(self) -> str:
        return "chunks" if self.chunker else "text"


def check_container(package, docs: list[Doc], run_java, embedder, binarized: bool | None = None) -> ContainerReport:
    """Run Vespa's container code on samples of ``docs`` and on our client's requests. ``run_java(payload)``
    runs the verifier's ``container`` command; ``embedder`` is our ONNX Runtime embedder of the package's model.
    Fills ``report.problems`` with every disagreement; the caller decides what a problem costs."""
    from vespa_app.package.record import AppPackage
    from vespa_app.embedded import EmbeddedIndex
    from vespa_app.client.feed import feed_fields

    started = time.time()
    report = ContainerReport()
    package = Path(package)
    record = AppPackage.open(package)
    under = _Package(package, record.chunker(), embedder, _colbert_embedder(package),
                     record.binarized if binarized is None else binarized,
                     MIN_COSINE_INT8 if embedder and embedder.manifest.quantization else MIN_COSINE)
    samples = sample_documents(docs)
    in_package = profiles.in_package(under.binarized, chunked=bool(under.chunker), colbert=under.colbert is not None,
                                     single=embedder is not None)
    # Fusion: our first-phase features on a small embedded index (the samples plus their neighbours in the corpus).
    under.docs = list({d.id: d for d in [d for _, d in samples] + docs[:60]}.values())
    with tempfile.TemporaryDirectory() as tmp:
        # (a late-interaction export alone has no single-vector model to build it from: its hits stay empty)
        cells = (record.colbert or {}).get("cells")
        under.index = EmbeddedIndex.build(Path(tmp) / "index", package / "models", under.docs, progress=False,
                                          chunker=under.chunker, dim=record.dim,
                                          colbert_dir=package / COLBERT_DIR if under.colbert else None,
                                          colbert_cells="int8" if cells == "int8" else "float",
                                          bm25_weight=record.bm25_weight) if embedder else None
        requests = [_request(under, profile, kind, text) for profile in in_package
                    for kind, texts in (("plain", PLAIN_QUERIES), ("hostile", HOSTILE_QUERIES)) for text in texts]
    rejections = _rejections(under)
    payload = {"schema": SCHEMA, "tensor_field": "embedding",
               "documents": [feed_fields(d, under.chunker) for _, d in samples],
               "queries": [{k: r[k] for k in ("params", "hits")} for r in requests]
               + [{"params": params, "hits": []} for _, params in rejections]}
    out = run_java(payload)
    for (kind, doc), fields, got in zip(samples, payload["documents"], out["documents"]):
        _judge_document(report, under, kind, doc, fields, got)
    for request, got in zip(requests, out["queries"][:len(requests)]):
        _judge_query(report, under, request, got, out["fields"])
    for (what, _), got in zip(rejections, out["queries"][len(requests):]):
        if got.get("error"):
            report.rejected.append({"what": what, "message": got["error"]})
        else:
            report.problems.append(f"Vespa accepted {what}; it must refuse it")
    report.seconds = round(time.time() - started, 1)
    return report


def _request(under: _Package, profile, kind: str, text: str) -> dict:
    """Our client's request for ``text`` and the hits the content nodes would return to the container: for a
    fusion profile, with our first-phase features (``fused``: the embedded backend's fused scores)."""
    from vespa_app.client.query import query_body

    index, positions, hits, fused = under.index, [], [], None
    if profile.fusion and kind == "plain":
        features, positions = profiles.fusion_inputs(profile, index, text, TARGET_HITS)
        scores = profile.fuse(features, positions, index.bm25_weight)
        close, lexical, late = (features.get(n, {}) for n in ("closeness", "bm25", "maxsim"))
        # Our BM25 scores title and text together; Vespa's bm25sum adds its per-field bm25s.
        hits = [_hit(index, i, close.get(i, 0.0), {"bm25(title)": 0.0, f"bm25({under.body})": lexical.get(i, 0.0),
                                                   **({MAXSIM_FEATURE: late[i]} if late else {})})
                for i in positions]
        fused = {under.docs[i].id: scores[i] for i in positions}
    elif kind == "plain" and profile.embeds_query and index is not None:
        found, close = index.nearest(index.embed_query(text), 5)
        positions = found.tolist()
        hits = [_hit(index, i, c) for i, c in zip(positions, close.tolist())]
    if under.chunker and hits and profiles.BEST_CHUNK in profile.match_features:
        vector = index.embed_query(text)
        for h, position in zip(hits, positions):  # as the content nodes compute closest(embedding)
            row = index.best_chunk(vector, position)[0]
            h["features"][profiles.BEST_CHUNK] = f"tensor(chunk{{}}):{{{row - index.bounds[position]}:1.0}}"
            # and the summary's select-elements-by keeps that one element of the chunks array
            h["fields"]["chunks"] = [index.chunks[row][1]]
            h["passage"] = index.chunks[row][1]
    return {"params": query_body(text, profile.name, 10, chunked=bool(under.chunker)), "text": text, "kind": kind,
            "profile": profile, "fused": fused, "hits": hits,
            "passages": {h["id"]: h.pop("passage", "") for h in hits}}


def _rejections(under: _Package) -> list[tuple[str, dict]]:
    """Requests Vespa's code must refuse, each with what it is."""
    from vespa_app.client.query import query_body

    base, query_input = ("semantic", "q") if under.embedder else ("bm25-colbert", profiles.COLBERT_INPUT)
    rejections = [
        ("a profile the package lacks", {**query_body("q", base, 10), "ranking": "no-such-profile"}),
        ("an embedder the package lacks", {**query_body("q", base, 10),
                                           f"input.query({query_input})": "embed(no-such-embedder, @query)"}),
        ("YQL that does not parse", {**query_body("q", base, 10),
                                     "yql": profiles.get(base).yql(10).replace("nearestNeighbor", "nearestNeighbour")
                                     .replace("userQuery()", "userQuery(")}),
    ]
    if not under.binarized and under.embedder:
        rejections.append(("the binary profile in a package without the binarized field",
                           query_body("q", "binary", 10)))
    return rejections


def _judge_document(report: ContainerReport, under: _Package, kind: str, doc: Doc, fields: dict, got: dict) -> None:
    """Vespa's indexing statements and embedder vs what we embed for the same document: its passage, or,
    chunked, each of its chunks (labelled by position in the array the feed sends)."""
    where = f"indexing {kind} document {doc.id!r}"
    if got.get("error"):
        report.problems.append(f"{where}: {got['error']}")
        return
    row = {"kind": kind, "id": doc.id, "cosine": None, "chunks": len(fields["chunks"]) if under.chunker else None}
    report.documents.append(row)
    if under.embedder:  # not a late-interaction export alone
        texts = fields["chunks"] if under.chunker else [doc.passage]
        row["cosine"] = _embedding_cosine(got, texts, under.chunker is not None, under.embedder, where,
                                          report.problems)
        if row["cosine"] is not None and row["cosine"] < under.min_cosine:
            report.problems.append(f"{where}: Vespa's embedding has cosine {row['cosine']:.6f} to ours "
                                   f"(< {under.min_cosine}); the schema's indexing statement embeds another text than "
                                   f"we do ({got['statements'][-1] if got.get('statements') else ''})")
    if under.colbert:  # the colbert field: Vespa's colbert-embedder, run by the schema's indexing statement
        row["colbert_tokens"], row["colbert_agree"] = colbert_agreement(
            got.get("colbert") or {}, under.colbert.embed_one(doc.passage, "passage"))
        if row["colbert_agree"] < MIN_COLBERT_AGREE:
            report.problems.append(f"{where}: the colbert field ({row['colbert_tokens']} token vectors) agrees "
                                   f"with our token vectors for {100 * row['colbert_agree']:.2f} % of tokens")


def _judge_query(report: ContainerReport, under: _Package, request: dict, got: dict, schema_fields: dict) -> None:
    """One request through Vespa's query stack: its tree, rank profile, query tensors, rendered response and,
    for a fusion profile, the global phase's scores."""
    profile, text = request["profile"], request["text"]
    label = f"{profile.name} query {text[:40]!r}"
    if got.get("error"):
        report.problems.append(f"{label}: Vespa refused our client's request: {got['error'][:500]}")
        return
    wrong = check_tree(got["tree"], profile, text, 10, schema_fields, got["inputs"])
    if wrong:
        report.problems.append(f"{label}: query tree {wrong}")
    if got["profile"] != profile.name:
        report.problems.append(f"{label}: rank profile {got['profile']!r}, asked for {profile.name!r}")
    if under.chunker and profile.embeds_query:  # the hit's best chunk: selected by Vespa, asked for by us
        if "chunks" not in got["summary_fields"]:
            report.problems.append(f"{label}: the request does not select the chunks summary "
                                   f"({got['summary_fields']}), so no hit carries its best chunk")
        selector = {profiles.BEST_CHUNK_FN, f"rankingExpression({profiles.BEST_CHUNK_FN})"}  # as Vespa names it
        if not selector & set(got["summary_features"]):
            report.problems.append(f"{label}: Vespa's rank profile has no {profiles.BEST_CHUNK_FN} summary "
                                   f"feature ({got['summary_features']}): the chunks summary would be empty")
    cos = _judge_inputs(report, under, label, text, got["inputs"])
    report.queries.append({"profile": profile.name, "kind": request["kind"], "shape": tree_shape(got["tree"]),
                           "cosine": cos})
    wrong = _read_back(got, request["passages"])
    if wrong:
        report.problems.append(f"{label}: our client reads Vespa's rendered response wrongly: {wrong}")
    elif request["hits"]:
        report.responses += 1
    if request["fused"] is not None:
        _judge_fusion(report, profile.name, label, request["fused"], got["hits"])


def _judge_inputs(report: ContainerReport, under: _Package, label: str, text: str, inputs: dict) -> float | None:
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
                report.problems.append(f"{label}: query(qt) differs from our query token vectors "
                                       f"({theirs.shape} vs {ours.shape}, min cosine {token_cos:.6f})")
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
        report.problems.append(f"{label}: Vespa's global phase scores differ from the embedded backend's "
                               f"fusion by {diff:.2e}" + (f"; {len(missing)} hits lost" if missing else ""))
