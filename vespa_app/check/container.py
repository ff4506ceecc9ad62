"""Vespa's own container code on our feed and our queries, in-process: the half of `siamese app check` that
goes past the config model.

What Vespa's code is given, and what we compare (see ``verify/.../Container.java`` for the Java side):

- **Feed.** Real corpus documents (with a title, title-only, text-only, non-ASCII, the longest), with the
  fields exactly as our feeder sends them, go through the package's indexing statements, executed by Vespa's
  indexing language with the package's embedder. The ``embedding`` tensor Vespa produces must equal what our
  evaluation and embedded backend compute from ``Doc.passage`` (cosine ≥ ``MIN_COSINE``, ``MIN_COSINE_INT8``
  for an int8 graph); in a chunked
  package, from each chunk the feed sends, labelled by its position.
- **Queries.** Every request our client builds (``client.query.query_body``), for every profile in the
  package, for plain and hostile query texts, goes through Vespa's ``Query`` (query profile, schema info and
  the ``embed(...)`` of the query) and its YQL parser. We check the query tree node by node against the
  profile, the rank profile, and that each ``query(...)`` tensor is our model's vector for the text.
- **Fusion.** For the hybrid profiles the hits carry our first-phase features (closeness and BM25 from the
  embedded backend, on a small index of the sampled documents); Vespa's GlobalPhaseRanker re-ranks them with
  the profile's global-phase expression, and its scores must equal the embedded backend's fusion.
- **Responses.** The hits go back through Vespa's JSON renderer, as the query API returns them, and our
  client (``client.query.hits_from_response``) must read back the same ids and scores; in a chunked package,
  each hit's best chunk, the one element of the ``chunks`` summary that ``select-elements-by`` keeps. Every
  request of a chunked package must select that summary, and Vespa's rank profiles must have the summary
  feature that selects it.
- **Rejections.** Requests Vespa must refuse (a profile the package lacks, an unknown embedder, YQL that does
  not parse) must be refused by Vespa's code, with its message.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common.data import Doc
from exporter.runtime import OnnxTokenEmbedder
from vespa_app import profiles
from vespa_app.check.bounds import MIN_COSINE, MIN_COSINE_INT8
from vespa_app.check.judges import UnderTest, judge_document, judge_query
from vespa_app.check.report import ContainerReport
from vespa_app.check.samples import HOSTILE_QUERIES, PLAIN_QUERIES, sample_documents
from vespa_app.client import query as query_api
from vespa_app.client.feed import feed_fields
from vespa_app.embedded import EmbeddedIndex
from vespa_app.package.record import AppPackage
from vespa_app.serving import COLBERT_DIR, SCHEMA, TARGET_HITS


def _hit(index, position: int, closeness: float, features: dict | None = None) -> dict:
    """A hit as the content nodes would return it: first-phase features and the summary fields we read."""
    doc = index.docs[position]
    fields = {
        "id": doc.id,
        "title": doc.title,
    }  # chunked: the best chunk is added where the profile selects it
    return {
        "id": doc.id,
        "relevance": closeness,
        "fields": fields,
        "features": {"closeness(field,embedding)": closeness, **(features or {})},
    }


MAXSIM_FEATURE = f"rankingExpression({profiles.MAXSIM_FN})"  # as Vespa names a function among match features


def _colbert_embedder(package: Path):

    return OnnxTokenEmbedder(package / COLBERT_DIR) if (package / COLBERT_DIR).exists() else None


def check_container(
    package, docs: list[Doc], run_java, embedder, binarized: bool | None = None
) -> ContainerReport:
    """Run Vespa's container code on samples of ``docs`` and on our client's requests. ``run_java(payload)``
    runs the verifier's ``container`` command; ``embedder`` is our ONNX Runtime embedder of the package's
    model. Fills ``report.problems`` with every disagreement; the caller decides what a problem costs."""
    started = time.time()
    report = ContainerReport()
    package = Path(package)
    record = AppPackage.open(package)
    under = UnderTest(
        package,
        record.chunker(),
        embedder,
        _colbert_embedder(package),
        record.binarized if binarized is None else binarized,
        MIN_COSINE_INT8 if embedder and embedder.manifest.quantization else MIN_COSINE,
        explore_additional=record.hnsw_settings.explore_additional,
    )
    samples = sample_documents(docs)
    in_package = profiles.in_package(
        under.binarized,
        chunked=bool(under.chunker),
        colbert=under.colbert is not None,
        single=embedder is not None,
    )
    # Fusion: our first-phase features on a small embedded index
    # (the samples plus their neighbours in the corpus).
    under.docs = list({d.id: d for d in [d for _, d in samples] + docs[:60]}.values())
    with tempfile.TemporaryDirectory() as tmp:
        # (a late-interaction export alone has no single-vector model to build it from: its hits stay empty)
        cells = (record.colbert or {}).get("cells")
        under.index = (
            EmbeddedIndex.build(
                Path(tmp) / "index",
                package / "models",
                under.docs,
                progress=False,
                chunker=under.chunker,
                dim=record.dim,
                colbert_dir=package / COLBERT_DIR if under.colbert else None,
                colbert_cells="int8" if cells == "int8" else "float",
                bm25_weight=record.bm25_weight,
            )
            if embedder
            else None
        )
        requests = [
            _request(under, profile, kind, text)
            for profile in in_package
            for kind, texts in (("plain", PLAIN_QUERIES), ("hostile", HOSTILE_QUERIES))
            for text in texts
        ]
    rejections = _rejections(under)
    payload = {
        "schema": SCHEMA,
        "tensor_field": "embedding",
        "documents": [feed_fields(d, under.chunker) for _, d in samples],
        "queries": [{k: r[k] for k in ("params", "hits")} for r in requests]
        + [{"params": params, "hits": []} for _, params in rejections],
    }
    out = run_java(payload)
    for (kind, doc), fields, got in zip(samples, payload["documents"], out["documents"]):
        judge_document(report, under, kind, doc, fields, got)
    for request, got in zip(requests, out["queries"][: len(requests)]):
        judge_query(report, under, request, got, out["fields"])
    for (what, _), got in zip(rejections, out["queries"][len(requests) :]):
        if got.get("error"):
            report.rejected.append({"what": what, "message": got["error"]})
        else:
            report.problems.append(f"Vespa accepted {what}; it must refuse it")
    report.seconds = round(time.time() - started, 1)
    return report


def _request(under: UnderTest, profile, kind: str, text: str) -> dict:
    """Our client's request for ``text`` and the hits the content nodes would return to the container: for a
    fusion profile, with our first-phase features (``fused``: the embedded backend's fused scores)."""
    index, positions, hits, fused = under.index, [], [], None
    if profile.fusion and kind == "plain":
        features, positions = profiles.fusion_inputs(profile, index, text, TARGET_HITS)
        scores = profile.fuse(features, positions, index.bm25_weight)
        close, lexical, late = (features.get(n, {}) for n in ("closeness", "bm25", "maxsim"))
        # Our BM25 scores title and text together; Vespa's bm25sum adds its per-field bm25s.
        hits = [
            _hit(
                index,
                i,
                close.get(i, 0.0),
                {
                    "bm25(title)": 0.0,
                    f"bm25({under.body})": lexical.get(i, 0.0),
                    **({MAXSIM_FEATURE: late[i]} if late else {}),
                },
            )
            for i in positions
        ]
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
    return {
        "params": query_api.query_body(
            text, profile.name, 10, chunked=bool(under.chunker), explore_additional=under.explore_additional
        ),
        "text": text,
        "kind": kind,
        "profile": profile,
        "fused": fused,
        "hits": hits,
        "passages": {h["id"]: h.pop("passage", "") for h in hits},
    }


def _rejections(under: UnderTest) -> list[tuple[str, dict]]:
    """Requests Vespa's code must refuse, each with what it is."""
    base, query_input = ("semantic", "q") if under.embedder else ("bm25-colbert", profiles.COLBERT_INPUT)
    rejections = [
        (
            "a profile the package lacks",
            {**query_api.query_body("q", base, 10), "ranking": "no-such-profile"},
        ),
        (
            "an embedder the package lacks",
            {
                **query_api.query_body("q", base, 10),
                f"input.query({query_input})": "embed(no-such-embedder, @query)",
            },
        ),
        (
            "YQL that does not parse",
            {
                **query_api.query_body("q", base, 10),
                "yql": profiles.get(base)
                .yql(10)
                .replace("nearestNeighbor", "nearestNeighbour")
                .replace("userQuery()", "userQuery("),
            },
        ),
    ]
    if not under.binarized and under.embedder:
        rejections.append(
            (
                "the binary profile in a package without the binarized field",
                query_api.query_body("q", "binary", 10),
            )
        )
    return rejections
