"""Vespa's own container code on our feed and our queries, in-process: the half of `siamese app check` that
goes past the config model.

What Vespa's code is given, and what we compare (see ``verify/.../Container.java`` for the Java side):

- **Feed.** Real corpus documents (with a title, title-only, text-only, non-ASCII, the longest), with the
  fields exactly as our feeder sends them, go through the package's indexing statements, executed by Vespa's
  indexing language with the package's embedder. The ``embedding`` tensor Vespa produces must equal what our
  evaluation and embedded backend compute from ``Doc.passage`` (cosine ≥ ``MIN_COSINE``, ``MIN_COSINE_INT8``
  for an int8 graph); in a chunked
  package, from each chunk the feed sends, labelled by its position.
- **Queries.** Every request our client builds (``vespa_client.query_body``), for every profile in the package,
  for plain and hostile query texts, goes through Vespa's ``Query`` (query profile, schema info and the
  ``embed(...)`` of the query) and its YQL parser. We check the query tree node by node against the profile,
  the rank profile, and that each ``query(...)`` tensor is our model's vector for the text.
- **Fusion.** For the hybrid profiles the hits carry our first-phase features (closeness and BM25 from the
  embedded backend, on a small index of the sampled documents); Vespa's GlobalPhaseRanker re-ranks them with the
  profile's global-phase expression, and its scores must equal the embedded backend's fusion.
- **Responses.** The hits go back through Vespa's JSON renderer, as the query API returns them, and our
  client (``vespa_client.hits_from_response``) must read back the same ids and scores; in a chunked package,
  each hit's best chunk, the one element of the ``chunks`` summary that ``select-elements-by`` keeps. Every
  request of a chunked package must select that summary, and Vespa's rank profiles must have the summary
  feature that selects it.
- **Rejections.** Requests Vespa must refuse (a profile the package lacks, an unknown embedder, YQL that does
  not parse) must be refused by Vespa's code, with its message.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data import Doc
from common.vectors import cosine, pack_bits

from . import profiles
from .serving import COLBERT_DIR, COLBERT_FIELD, SCHEMA, TARGET_HITS

MIN_COSINE = 0.9999
# An int8 graph: Vespa's ONNX Runtime (Java) and ours round its quantised kernels differently; a 3-layer
# student's vectors then differ by up to 0.0021 (measured: cosine 0.9979). Embedding another text than the
# feed sends (a dropped title) shows as 0.94-0.97, still below this.
MIN_COSINE_INT8 = 0.99
MAX_FUSION_DIFF = 1e-6
PLAIN_QUERIES = ["What does the immune system do against viral infection?",
                 "Vitamin D deficiency and bone density in older adults"]
# Texts that would change the query if they were read as YQL, query syntax or JSON rather than as data.
HOSTILE_QUERIES = [
    'quotes "inside" and \'single\' ones',
    "braces {targetHits:1} and nearestNeighbor(embedding, q) in the text",
    '") or true or ("',
    "back\\slash \\\" and \\u0041 escapes",
    "select * from sources * where true; -- and or not userQuery()",
    "naïve café, 東京 — ümlaut",
    "smoking -induced +cancer title:lung TNF-α NOT (a OR b)",
    ("protein folding and misfolding in neurodegenerative disease " * 200)[:10_000],
]


@dataclass
class ContainerReport:
    documents: list[dict] = field(default_factory=list)  # {kind, id, cosine}
    queries: list[dict] = field(default_factory=list)  # {profile, text, tree, cosine}
    fusion: dict = field(default_factory=dict)  # profile → {queries, hits, max_diff}
    rejected: list[dict] = field(default_factory=list)  # {what, message}
    responses: int = 0  # rendered by Vespa's JSON renderer and read back by our client unchanged
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = []
        if self.documents and self.documents[0]["cosine"] is not None:
            kinds = ", ".join(d["kind"] for d in self.documents)
            chunks = sum(d["chunks"] or 0 for d in self.documents)
            out.append(f"Vespa indexing statements + embedder on {len(self.documents)} corpus documents ({kinds})"
                       + (f", {chunks} chunks, labels in feed order" if chunks else "")
                       + f": min cosine to ours {min(d['cosine'] or 0.0 for d in self.documents):.6f}")
        colbert = [d for d in self.documents if "colbert_agree" in d]
        if colbert:
            out.append(f"Vespa colbert-embedder by the indexing statement on the same documents: "
                       f"{sum(d['colbert_tokens'] for d in colbert)} token vectors, agreeing with ours for "
                       f"{100 * min(d['colbert_agree'] for d in colbert):.2f} % of tokens or more")
        if self.queries:
            trees = sorted({q["shape"] for q in self.queries})
            cos = [q["cosine"] for q in self.queries if q["cosine"] is not None]
            out.append(f"Vespa query stack (query profile, embed, YQL parser) on {len(self.queries)} client requests "
                       f"({len(HOSTILE_QUERIES)} hostile texts each profile): trees {'; '.join(trees)}"
                       + (f"; query tensors (per token for query(qt)) min cosine {min(cos):.6f}" if cos else ""))
        for name, f in self.fusion.items():
            out.append(f"Vespa global phase ({name}) on the embedded backend's first-phase features: {f['queries']} "
                       f"queries, {f['hits']} hits, max |Δ score| {f['max_diff']:.2e}")
        if self.responses:
            out.append(f"Vespa's JSON renderer on {self.responses} results; our client reads back every hit's id and "
                       "score" + (", and its best chunk (closest(embedding) into the chunks summary)"
                                  if any(d["chunks"] for d in self.documents) else ""))
        if self.rejected:
            out.append(f"Vespa rejects what it must ({len(self.rejected)}): "
                       + "; ".join(r["what"] for r in self.rejected))
        return [line for line in out if line]


# ---------------------------------------------------------------- inputs

def sample_documents(docs: list[Doc]) -> list[tuple[str, Doc]]:
    """Real documents of each kind the feed meets. Title-only and text-only ones are made from real
    documents when the corpus has none (SciFact gives every abstract a title)."""
    docs = [d for d in docs if d.title or d.text]
    if not docs:
        return []
    titled = next((d for d in docs if d.title and d.text), docs[0])
    title_only = next((d for d in docs if d.title and not d.text), None) or Doc(f"{titled.id}-title-only", titled.title, "")
    text_only = next((d for d in docs if d.text and not d.title), None) or Doc(f"{titled.id}-text-only", "", titled.text)
    non_ascii = next((d for d in docs if not d.passage.isascii() and d.id != titled.id), None)
    longest = max(docs, key=lambda d: len(d.passage))
    chosen = [("title", titled), ("title-only", title_only), ("text-only", text_only)]
    if non_ascii:
        chosen.append(("non-ASCII", non_ascii))
    chosen.append(("long", longest))
    return chosen


def check_tree(tree: dict, profile: profiles.Profile, text: str, hits: int, fields: dict, inputs: dict) -> str:
    """'' when the tree is the one the profile means for ``text``, else what is wrong. Every node must be either
    a nearestNeighbor item over a tensor field of the schema, with a query tensor the rank profile declares (both
    as Vespa reads the package, in ``fields`` and ``inputs``) and the client's targetHits; or a term from the
    text, as a word; or a node that joins those. Nothing the user did not ask for."""
    nearest, terms, joins = [], [], []

    def walk(node):
        if node["type"] == "NEAREST_NEIGHBOR":
            nearest.append(node)
        elif "term" in node:
            terms.append(node)
        elif node["type"] != "NULL":
            joins.append(node["type"])
        for child in node.get("children", []):
            walk(child)

    walk(tree)
    want = profile.where.count("nearestNeighbor(")
    if len(nearest) != want:
        return f"{len(nearest)} nearestNeighbor items, the profile has {want}"
    for nn in nearest:
        if not fields.get(nn["index"], "").startswith("tensor"):
            return f"nearestNeighbor over {nn['index']!r}, which is not a tensor field of the schema ({sorted(fields)})"
        if nn["query_tensor"] not in inputs:
            return (f"nearestNeighbor with query({nn['query_tensor']}), which rank profile {profile.name!r} does not "
                    f"declare ({sorted(inputs)})")
        if nn["target_hits"] != max(hits, TARGET_HITS):
            return f"targetHits {nn['target_hits']}, the client asked for {max(hits, TARGET_HITS)}"
    user_text = "userQuery()" in profile.where
    if not user_text and terms:
        return f"terms {[t['term'][:40] for t in terms][:5]} in a query that parses no user text"
    # The text must arrive as data: plain words (and numbers) of the text on the default fieldset, joined by weakAnd (AND or
    # PHRASE where Vespa's tokenizer splits one word, as TNF-α), with no operators, fields or wildcards from it.
    def letters(s):
        return re.sub(r"\W", "", s.casefold())

    folded = letters(text)
    stray = [t for t in terms if t["type"] not in ("WORD", "INT") or t.get("index") or letters(t["term"]) not in folded]
    if stray:
        return f"terms the text did not give as words: {[(t['type'], t.get('index'), t['term'][:40]) for t in stray][:5]}"
    allowed = {"OR", "WEAK_AND", "AND", "PHRASE"}
    if set(joins) - allowed:
        return f"operators the user did not ask for: {sorted(set(joins) - allowed)}"
    if joins.count("OR") > (1 if want and user_text else 0):
        return "an OR that is not the profile's nearestNeighbor OR user text"
    if want and user_text and (tree["type"] != "OR" or tree["children"][0]["type"] != "NEAREST_NEIGHBOR"):
        return f"expected OR(nearestNeighbor, user text), got {tree['type']}"
    return ""


def _shape(tree: dict) -> str:
    """The tree in a few words: nearestNeighbor items spelt out, the parsed user text as 'user text'."""
    def has_nn(node):
        return node["type"] == "NEAREST_NEIGHBOR" or any(has_nn(k) for k in node.get("children", []))

    def short(node):
        if node["type"] == "NEAREST_NEIGHBOR":
            return f"nearestNeighbor({node['index']}, {node['query_tensor']}, targetHits {node['target_hits']})"
        if not has_nn(node):
            return "user text"
        return f"{node['type'].lower()}({', '.join(short(k) for k in node.get('children', []))})"
    return short(tree)


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
    from .vespa_client import hits_from_response

    if not got.get("hits"):
        return ""
    ours = hits_from_response(json.loads(got["rendered"]))
    if [(h.id, h.score) for h in ours] != [(h["id"], h["relevance"]) for h in got["hits"]]:
        return f"hits {[(h.id, h.score) for h in ours][:3]}…, Vespa rendered {got['hits'][:3]}…"
    wrong = [h.id for h in ours if h.passage != passages.get(h.id, "")]
    return f"best chunk of {wrong[:3]} not read from closest(embedding) and the chunks summary" if wrong else ""


MAXSIM_FEATURE = f"rankingExpression({profiles.MAXSIM_FN})"  # as Vespa names a function among match features
MIN_COSINE_BF16 = 0.999  # a bfloat16 cell keeps 8 bits of mantissa
MIN_COLBERT_AGREE = 0.999  # share of document tokens whose packed bits (or bfloat16 vector) match ours


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


SIGN_NOISE = 1e-5  # a value this close to 0 has no determined sign: PyTorch, ONNX Runtime and Java differ by ~1e-7


def token_matrix(by_label: dict) -> np.ndarray:
    """A mapped-indexed tensor as Vespa's verifier returns it ({"0": [...], "1": [...]}) → (tokens, cells)."""
    return np.asarray([by_label[str(i)] for i in range(len(by_label))], dtype=np.float32)


def sign_agreement(packed: np.ndarray, ours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token: are Vespa's packed int8 cells our vectors' sign bits, and are they apart from the signs of
    values within ``SIGN_NOISE`` of 0 (boolean arrays)."""
    differ = np.unpackbits(packed.astype(np.int8).view(np.uint8), axis=-1) != np.unpackbits(pack_bits(ours), axis=-1)
    return ~differ.any(-1), ~(differ & (np.abs(ours) >= SIGN_NOISE)).any(-1)


def _colbert_agreement(theirs: dict, ours: np.ndarray) -> tuple[int, float]:
    """(token vectors in Vespa's colbert field, share of them equal to ours): the packed sign bits of an int8
    field, or a bfloat16 field's vectors within bfloat16 precision. Another token count agrees on nothing."""
    if len(theirs) != len(ours):
        return len(theirs), 0.0
    cells = token_matrix(theirs)
    if cells.shape[1] * 8 == ours.shape[1]:
        return len(theirs), float(sign_agreement(cells, ours)[0].mean())
    return len(theirs), float((cosine(cells, ours) >= MIN_COSINE_BF16).mean())


def check_container(package, docs: list[Doc], run_java, embedder, binarized: bool | None = None) -> ContainerReport:
    """Run Vespa's container code on samples of ``docs`` and on our client's requests. ``run_java(payload)``
    runs the verifier's ``container`` command; ``embedder`` is our ONNX Runtime embedder of the package's model.
    Fills ``report.problems`` with every disagreement; the caller decides what a problem costs."""
    from .embedded import EmbeddedIndex
    from .vespa_client import feed_fields, package_bm25_weight, package_chunker, package_dim, query_body

    started = time.time()
    report = ContainerReport()
    package = Path(package)
    if binarized is None:
        binarized = "embedding_binary" in (package / "schemas" / f"{SCHEMA}.sd").read_text()
    samples = sample_documents(docs)
    chunker = package_chunker(package)
    schema_text = (package / "schemas" / f"{SCHEMA}.sd").read_text()
    field = COLBERT_FIELD.search(schema_text)
    cells = field.group(1) if field else None
    body = "chunks" if chunker else "text"
    colbert = _colbert_embedder(package)
    in_package = profiles.in_package(binarized, chunked=bool(chunker), colbert=colbert is not None,
                                     single=embedder is not None)
    min_cosine = MIN_COSINE_INT8 if embedder and embedder.manifest.quantization else MIN_COSINE

    # Fusion: our first-phase features on a small embedded index (the samples plus their neighbours in the corpus).
    fusion_docs = list({d.id: d for d in [d for _, d in samples] + docs[:60]}.values())
    requests, expect = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # (a late-interaction export alone has no single-vector model to build it from: its hits stay empty)
        index = EmbeddedIndex.build(Path(tmp) / "index", package / "models", fusion_docs, progress=False,
                                    chunker=chunker, dim=package_dim(package),
                                    colbert_dir=package / COLBERT_DIR if colbert else None,
                                    colbert_cells="int8" if cells == "int8" else "float",
                                    bm25_weight=package_bm25_weight(package)) if embedder else None
        for profile in in_package:
            for kind, texts in (("plain", PLAIN_QUERIES), ("hostile", HOSTILE_QUERIES)):
                for text in texts:
                    positions, hits, fused = [], [], None
                    if profile.fusion and kind == "plain":
                        features, positions = profiles.fusion_inputs(profile, index, text, TARGET_HITS)
                        fused = profile.fuse(features, positions, index.bm25_weight)
                        close, lexical, late = (features.get(n, {}) for n in ("closeness", "bm25", "maxsim"))
                        # Our BM25 scores title and text together; Vespa's bm25sum adds its per-field bm25s.
                        hits = [_hit(index, i, close.get(i, 0.0),
                                     {"bm25(title)": 0.0, f"bm25({body})": lexical.get(i, 0.0),
                                      **({MAXSIM_FEATURE: late[i]} if late else {})}) for i in positions]
                        fused = {fusion_docs[i].id: fused[i] for i in positions}
                    elif kind == "plain" and profile.embeds_query and index is not None:
                        found, close = index.nearest(index.embed_query(text), 5)
                        positions = found.tolist()
                        hits = [_hit(index, i, c) for i, c in zip(positions, close.tolist())]
                    if chunker and hits and profiles.BEST_CHUNK in profile.match_features:
                        vector = index.embed_query(text)
                        for h, position in zip(hits, positions):  # as the content nodes compute closest(embedding)
                            row = index.best_chunk(vector, position)[0]
                            label = row - index.bounds[position]
                            h["features"][profiles.BEST_CHUNK] = f"tensor(chunk{{}}):{{{label}:1.0}}"
                            # and the summary's select-elements-by keeps that one element of the chunks array
                            h["fields"]["chunks"] = [index.chunks[row][1]]
                            h["passage"] = index.chunks[row][1]
                    expect.append((profile, fused))
                    requests.append({"params": query_body(text, profile.name, 10, chunked=bool(chunker)),
                                     "text": text, "kind": kind,
                                     "hits": hits, "passages": {h["id"]: h.pop("passage", "") for h in hits}})
    base, query_input = ("semantic", "q") if embedder else ("bm25-colbert", profiles.COLBERT_INPUT)
    rejections = [
        ("a profile the package lacks", {**query_body("q", base, 10), "ranking": "no-such-profile"}),
        ("an embedder the package lacks", {**query_body("q", base, 10),
                                           f"input.query({query_input})": "embed(no-such-embedder, @query)"}),
        ("YQL that does not parse", {**query_body("q", base, 10),
                                     "yql": profiles.get(base).yql(10).replace("nearestNeighbor", "nearestNeighbour")
                                     .replace("userQuery()", "userQuery(")}),
    ]
    if not binarized and embedder:
        rejections.append(("the binary profile in a package without the binarized field",
                           query_body("q", "binary", 10)))
    payload = {"schema": SCHEMA, "tensor_field": "embedding",
               "documents": [feed_fields(d, chunker) for _, d in samples],
               "queries": [{k: r[k] for k in ("params", "hits")} for r in requests]
               + [{"params": params, "hits": []} for _, params in rejections]}
    out = run_java(payload)

    # Documents: Vespa's indexing statements and embedder vs what we embed for the same document: its passage,
    # or, chunked, each of its chunks (labelled by position in the array the feed sends).
    for (kind, doc), fields, got in zip(samples, payload["documents"], out["documents"]):
        where = f"indexing {kind} document {doc.id!r}"
        if got.get("error"):
            report.problems.append(f"{where}: {got['error']}")
            continue
        row = {"kind": kind, "id": doc.id, "cosine": None, "chunks": len(fields["chunks"]) if chunker else None}
        report.documents.append(row)
        if embedder:  # not a late-interaction export alone
            texts = fields["chunks"] if chunker else [doc.passage]
            row["cosine"] = _embedding_cosine(got, texts, chunker is not None, embedder, where, report.problems)
            if row["cosine"] is not None and row["cosine"] < min_cosine:
                report.problems.append(f"{where}: Vespa's embedding has cosine {row['cosine']:.6f} to ours "
                                       f"(< {min_cosine}); the schema's indexing statement embeds another text than "
                                       f"we do ({got['statements'][-1] if got.get('statements') else ''})")
        if colbert:  # the colbert field: Vespa's colbert-embedder, run by the schema's indexing statement
            row["colbert_tokens"], row["colbert_agree"] = _colbert_agreement(got.get("colbert") or {},
                                                                             colbert.embed_one(doc.passage, "passage"))
            if row["colbert_agree"] < MIN_COLBERT_AGREE:
                report.problems.append(f"{where}: the colbert field ({row['colbert_tokens']} token vectors) agrees "
                                       f"with our token vectors for {100 * row['colbert_agree']:.2f} % of tokens")

    # Queries: tree, rank profile, query tensors, fusion.
    answers = out["queries"][:len(requests)]
    for request, (profile, fused), got in zip(requests, expect, answers):
        text, label = request["text"], f"{profile.name} query {request['text'][:40]!r}"
        if got.get("error"):
            report.problems.append(f"{label}: Vespa refused our client's request: {got['error'][:500]}")
            continue
        wrong = check_tree(got["tree"], profile, text, 10, out["fields"], got["inputs"])
        if wrong:
            report.problems.append(f"{label}: query tree {wrong}")
        if got["profile"] != profile.name:
            report.problems.append(f"{label}: rank profile {got['profile']!r}, asked for {profile.name!r}")
        if chunker and profile.embeds_query:  # the hit's best chunk: selected by Vespa, asked for by us
            if "chunks" not in got["summary_fields"]:
                report.problems.append(f"{label}: the request does not select the chunks summary "
                                       f"({got['summary_fields']}), so no hit carries its best chunk")
            selector = {profiles.BEST_CHUNK_FN, f"rankingExpression({profiles.BEST_CHUNK_FN})"}  # as Vespa names it
            if not selector & set(got["summary_features"]):
                report.problems.append(f"{label}: Vespa's rank profile has no {profiles.BEST_CHUNK_FN} summary "
                                       f"feature ({got['summary_features']}): the chunks summary would be empty")
        cos = None
        vector = embedder.embed_one(text, "query") if got["inputs"] and embedder else None
        for name, tensor in got["inputs"].items():
            if tensor is None:
                report.problems.append(f"{label}: query({name}) is not set; the rank profile needs it")
                continue
            if name == "q":
                cos = float(cosine(np.asarray(tensor, dtype=np.float32), vector))
                if cos < min_cosine:
                    report.problems.append(f"{label}: query(q) has cosine {cos:.6f} to our query vector")
            elif name == profiles.COLBERT_INPUT:
                theirs, ours = token_matrix(tensor), colbert.embed_one(text, "query")
                token_cos = float(cosine(theirs, ours).min()) if theirs.shape == ours.shape else 0.0
                cos = token_cos if cos is None else min(cos, token_cos)
                if token_cos < min_cosine:
                    report.problems.append(f"{label}: query(qt) differs from our query token vectors "
                                           f"({theirs.shape} vs {ours.shape}, min cosine {token_cos:.6f})")
            elif name == "q_binary":
                bits = pack_bits(vector).astype(np.int8).tolist()
                if [int(v) for v in tensor] != bits:
                    report.problems.append(f"{label}: query(q_binary) differs from our packed sign bits")
        report.queries.append({"profile": profile.name, "kind": request["kind"], "shape": _shape(got["tree"]),
                               "cosine": cos})
        wrong = _read_back(got, request["passages"])
        if wrong:
            report.problems.append(f"{label}: our client reads Vespa's rendered response wrongly: {wrong}")
        elif request["hits"]:
            report.responses += 1
        if fused is not None:
            vespa_scores = {h["id"]: h["relevance"] for h in got["hits"]}
            missing = set(fused) - set(vespa_scores)
            diff = max((abs(vespa_scores[i] - s) for i, s in fused.items() if i in vespa_scores), default=0.0)
            f = report.fusion.setdefault(profile.name, {"queries": 0, "hits": 0, "max_diff": 0.0})
            f["queries"] += 1
            f["hits"] += len(fused)
            f["max_diff"] = max(f["max_diff"], diff)
            if missing or diff > MAX_FUSION_DIFF:
                report.problems.append(f"{label}: Vespa's global phase scores differ from the embedded backend's "
                                       f"fusion by {diff:.2e}" + (f"; {len(missing)} hits lost" if missing else ""))
    for (what, _), got in zip(rejections, out["queries"][len(requests):]):
        if got.get("error"):
            report.rejected.append({"what": what, "message": got["error"]})
        else:
            report.problems.append(f"Vespa accepted {what}; it must refuse it")
    report.seconds = round(time.time() - started, 1)
    return report
