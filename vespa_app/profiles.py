"""The rank profiles, each defined once: its match (YQL), its query inputs, its Vespa rank profile and
its scoring on the embedded backend. The package builder, the Vespa client, the embedded backend and
the command line all derive from ``PROFILES``.

| profile        | match                                  | ranking                                         |
|----------------|----------------------------------------|-------------------------------------------------|
| bm25           | the query's words (weakAnd, no syntax) | bm25(title) + bm25(text)                        |
| semantic       | nearestNeighbor(embedding, q)          | closeness                                       |
| hybrid         | nearestNeighbor OR the words           | closeness, then global RRF(closeness, bm25)     |
| hybrid-linear  | nearestNeighbor OR the words           | closeness, then normalize_linear(closeness)     |
|                |                                        | + w · normalize_linear(bm25), w the package's   |
|                |                                        | weight                                          |
| binary         | nearestNeighbor(embedding_binary, ...) | hamming closeness, then cosine on the floats    |
| colbert        | nearestNeighbor(embedding, q)          | closeness, then global                          |
|                |                                        | normalize_linear(closeness) +                   |
|                |                                        | normalize_linear(MaxSim) over the top 100       |
| colbert-maxsim | nearestNeighbor(embedding, q)          | closeness, then MaxSim of the top 100 (second   |
|                |                                        | phase)                                          |
| hybrid-colbert | nearestNeighbor OR the words           | closeness, then global normalize_linear of      |
|                |                                        | closeness, bm25 and MaxSim over the top 1000    |
| bm25-colbert   | the query's words                      | bm25, then MaxSim of the top 100 (second phase) |

``w`` (``models/package.json``; 1 unless chosen): `siamese run` chooses it on the training queries, where
their judgements are, from ``BM25_WEIGHT_GRID``
(benchmarks/fusion.py measures the choice on held-out queries).

A query input is embedded from the query text by the embedder (``embed(embedder, @query)``), only for
the profiles that declare it: a BM25 query embeds nothing. ``binary`` exists only in packages built with
``--binarized``; the four MaxSim profiles only in packages with a late-interaction export (``--colbert``),
whose colbert-embedder fills ``query(qt)`` with a vector per query token.

MaxSim is always computed on the content nodes, where the ``colbert`` attribute lives (a global phase that
read the token vectors would ship every candidate's to the container). ``colbert-maxsim`` and ``bm25-colbert``
re-rank by MaxSim alone in the second phase. ``colbert`` and ``hybrid-colbert`` fuse it in the global phase
with what the single-vector model (and BM25) said, as ``hybrid-linear`` does: MaxSim is a match feature,
computed for the hits the global phase re-ranks (up to 100; 1000 for hybrid-colbert, ten times the MaxSim
work). The fusion is measured, not assumed (``benchmarks/late_interaction.py``): a ColBERT model trained on a
few hundred pairs gains most on unseen in-domain queries alone, but loses the guards there; beside the
single-vector model it keeps them.
Nothing here imports pyvespa: the client and the command line stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from common.errors import ConfigError
from vespa_app.serving import (
    COLBERT_EMBEDDER,
    COLBERT_RERANK,
    EMBEDDER,
    RERANK_COUNT,
    RRF_K,
    SCHEMA,
    SECOND_PHASE_RERANK,
)

CLOSENESS = "closeness(field, embedding)"
# Chunked packages: the label of the chunk nearest the query (a tensor(chunk{}) with one cell of 1.0). As the
# summary feature BEST_CHUNK_FN it also selects which element of the chunks array the summary returns.
BEST_CHUNK = "closest(embedding)"
BEST_CHUNK_FN = "best_chunk"
BINARY_CLOSENESS = "closeness(field, embedding_binary)"
NEAREST = "{{{ann}}}nearestNeighbor(embedding, q)"
# Late interaction: query(qt) holds a vector per query token; the colbert field a vector per document token,
# as packed sign bits (int8, unpack_bits gives 0/1: the same order as ±1, since Σ_i max_j is shifted by a
# constant per query) or bfloat16. MAXSIM stands for the expression until the package knows which.
COLBERT_INPUT = "qt"
MAXSIM = "{maxsim}"
MAXSIM_FN = "maxsim"
WEIGHT = "{bm25_weight}"  # hybrid-linear's BM25 weight, until the package knows it


def annotation(target_hits: int, explore_additional: int = 0, exact: bool = False) -> str:
    """nearestNeighbor's annotation: targetHits, and the HNSW exploration beyond it (``hnsw.HnswSettings``),
    or ``approximate:false``: brute force over every document, the truth served recall is measured against."""
    if exact:
        return f"targetHits:{target_hits}, approximate:false"
    extra = f", hnsw.exploreAdditionalHits:{explore_additional}" if explore_additional else ""
    return f"targetHits:{target_hits}{extra}"


def maxsim_expression(cells: str) -> str:
    document = "unpack_bits(attribute(colbert))" if cells == "int8" else "attribute(colbert)"
    return f"sum(reduce(sum(query({COLBERT_INPUT}) * {document}, x), max, dt), {COLBERT_INPUT})"


@dataclass(frozen=True)
class Phase:
    expression: str
    rerank_count: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    where: str  # the YQL where clause; {ann} is nearestNeighbor's annotation (``annotation``)
    # query tensor name → its type, {d} the model's dimension; each is embedded from the query text
    inputs: dict[str, str] = field(default_factory=dict)
    inherits: tuple[str, ...] = ()
    functions: dict[str, str] = field(default_factory=dict)
    first_phase: str = ""
    second_phase: Phase | None = None
    global_phase: Phase | None = None
    match_features: tuple[str, ...] = ()
    summary_features: tuple[str, ...] = ()
    binarized: bool = False  # only in packages with the packed-bits field
    colbert: bool = False  # only in packages with a late-interaction export
    # the global phase's fusion on the embedded backend: (features, rerank, weights) → {position: score}, over
    # the features named in ``fused`` ("closeness", "bm25", "maxsim"), in the order of the global-phase
    # expression, each with its weight (``fuse``)
    fusion: Callable | None = None
    fused: tuple[str, ...] = ()
    # the embedded backend's twin: (index, text, k) → (document positions, scores), best first; a profile with
    # a fusion has it from ``fused_ranking``
    embedded: Callable = None
    weighted: bool = False  # its global phase weighs BM25 by the package's weight (WEIGHT)

    def fuse(self, features: dict, rerank: list, bm25_weight: float) -> dict:
        """The global phase on the embedded backend: ``fusion`` of the features named in ``fused``, each
        weighted as the package's global phase weighs it. Returns {position: score} over ``rerank``."""
        weights = tuple(bm25_weight if self.weighted and name == "bm25" else 1.0 for name in self.fused)
        return self.fusion(tuple(features[name] for name in self.fused), rerank, weights)

    def global_expression(self, bm25_weight: float) -> str:
        return self.global_phase.expression.replace(WEIGHT, f"{bm25_weight:g}")

    def yql(self, k: int, chunked: bool = False, explore_additional: int = 0, exact: bool = False) -> str:
        """``chunked``: also the chunks summary, which a chunked package cuts to the best chunk."""
        where = self.where.format(ann=annotation(k, explore_additional, exact))
        return f"select id, title{', chunks' if chunked else ''} from {SCHEMA} where {where}"

    def all_inputs(self) -> dict[str, str]:
        """Inputs declared here or inherited."""
        inherited = {}
        for parent in self.inherits:
            inherited |= PROFILES[parent].all_inputs()
        return inherited | self.inputs

    def rank(self, index, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The embedded backend's ranking: (document positions, scores), best first."""
        return fused_ranking(self, index, text, k) if self.fusion else self.embedded(index, text, k)

    @property
    def dense(self) -> bool:
        """Matches by nearestNeighbor alone: its hits are HNSW's, and served recall measures them."""
        return "nearestNeighbor(" in self.where and "userQuery()" not in self.where

    @property
    def embeds_query(self) -> bool:
        return bool(self.all_inputs())

    @property
    def single_vector(self) -> bool:
        """Needs the single-vector embedding (its field or its query input); a package of a late-interaction
        export alone has neither."""
        return "nearestNeighbor(embedding" in self.where or any(n != COLBERT_INPUT for n in self.all_inputs())

    def query_params(
        self,
        text: str,
        hits: int,
        target_hits: int,
        chunked: bool = False,
        explore_additional: int = 0,
        exact: bool = False,
    ) -> dict:
        """The Vespa query API parameters for ``text`` with this profile (``exact``: nearestNeighbor by brute
        force, the truth served recall is measured against)."""
        # The text is data: its words, weakAnd-combined, with no query syntax. Vespa's default user-text
        # syntax would read "smoking -induced" as NOT induced, "title:x" as a field and "* from" as a suffix
        # term (shown by Vespa's parser in `siamese app check`); the embedded backend's BM25 reads words only.
        params = {
            "yql": self.yql(max(hits, target_hits), chunked, explore_additional, exact),
            "query": text,
            "hits": hits,
            "ranking": self.name,
            "model.type.composite": "weakAnd",
            "model.type.syntax": "none",
        }
        for name in self.all_inputs():
            params[f"input.query({name})"] = (
                f"embed({COLBERT_EMBEDDER if name == COLBERT_INPUT else EMBEDDER}, @query)"
            )
        return params


# ------------------------------------------------------------------ the embedded backend's scoring


def _bm25(index, text, k):
    return index.lexical(text, k)


def _semantic(index, text, k):
    return index.nearest(index.embed_query(text), k)


def hybrid_first_phase(index, text, k) -> tuple[dict, dict, list]:
    """As the hybrid profiles match and rank before their global phase: nearestNeighbor OR the text; first
    phase closeness (0 for documents the nearest-neighbour search did not return). Returns the features
    ({position: closeness}, {position: BM25}) and the top ``RERANK_COUNT`` positions, in first-phase order."""
    nn_idx, nn_close = index.nearest(index.embed_query(text), k)
    bm_idx, bm_score = index.lexical(text, RERANK_COUNT)
    close = dict(zip(nn_idx.tolist(), nn_close.tolist()))
    lexical = dict(zip(bm_idx.tolist(), bm_score.tolist()))
    matched = list(dict.fromkeys(nn_idx.tolist() + bm_idx.tolist()))
    matched.sort(key=lambda i: -close.get(i, 0.0))
    return close, lexical, matched[:RERANK_COUNT]


def fusion_inputs(profile: Profile, index, text: str, k: int) -> tuple[dict, list]:
    """What a fusing profile's global phase gets, as the content nodes compute it: each feature of
    ``profile.fused`` ({position: value}) and the hits it re-ranks, in first-phase order. The candidates are
    the hybrid first phase's when the profile also matches the text, else the nearest neighbours."""
    rerank_count = profile.global_phase.rerank_count
    if "userQuery()" in profile.where:
        close, lexical, rerank = hybrid_first_phase(index, text, k)
    else:
        idx, closeness = index.nearest(index.embed_query(text), k)
        close, lexical, rerank = dict(zip(idx.tolist(), closeness.tolist())), {}, idx.tolist()
    rerank = rerank[:rerank_count]
    features = {"closeness": close, "bm25": lexical}
    if "maxsim" in profile.fused:  # a match feature: computed on the content nodes for the re-ranked hits
        features["maxsim"] = dict(
            zip(rerank, index.maxsim(text, np.asarray(rerank, dtype=np.int64)).tolist())
        )
    return features, rerank


def fused_ranking(profile: Profile, index, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A fusing profile on the embedded backend: its first phase, then its global phase's fusion."""
    features, rerank = fusion_inputs(profile, index, text, k)
    fused = profile.fuse(features, rerank, index.bm25_weight)
    order = sorted(rerank, key=lambda i: -fused[i])
    return np.asarray(order, dtype=np.int64), np.asarray([fused[i] for i in order])


def _rrf(features, rerank, weights):
    """Vespa's reciprocal_rank_fusion: Σ over features of 1 / (RRF_K + rank) (no profile weighs it)."""
    fused = dict.fromkeys(rerank, 0.0)
    for feature in features:
        for rank, i in enumerate(sorted(rerank, key=lambda i: -feature.get(i, 0.0)), 1):
            fused[i] += 1.0 / (RRF_K + rank)
    return fused


def _linear(features, rerank, weights):
    """Σ over features of weight · normalize_linear: (x − min) / (max − min) over the re-ranked hits, and 0.5
    for every hit when they are all equal (as Vespa's
    LinearNormalizer: 0.5 + scale · (x − midpoint), scale 0)."""
    fused = dict.fromkeys(rerank, 0.0)
    for feature, weight in zip(features, weights):
        values = [feature.get(i, 0.0) for i in rerank]
        low, span = min(values), max(values) - min(values)
        for i, v in zip(rerank, values):
            fused[i] += weight * ((v - low) / span if span else 0.5)
    return fused


def _binary(index, text, k):
    """Hamming closeness over packed sign bits, then cosine on the float vectors for the top hits."""
    query = index.embed_query(text)
    idx, close = index.nearest_binary(query, k)
    top = idx[:SECOND_PHASE_RERANK]
    cosine = index.cosine(query, top)
    order = np.argsort(-cosine, kind="stable")
    return np.concatenate([top[order], idx[SECOND_PHASE_RERANK:]]), np.concatenate(
        [cosine[order], close[SECOND_PHASE_RERANK:]]
    )


def _maxsim_rerank(index, text, idx, scores):
    """MaxSim of the top ``COLBERT_RERANK`` hits, re-ordered by it; the rest keep their first-phase order."""
    top = idx[:COLBERT_RERANK]
    sims = index.maxsim(text, top)
    order = np.argsort(-sims, kind="stable")
    return np.concatenate([top[order], idx[COLBERT_RERANK:]]), np.concatenate(
        [sims[order], scores[COLBERT_RERANK:]]
    )


COLBERT_INPUTS = {COLBERT_INPUT: "tensor<float>(qt{{}}, x[{c}])"}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "bm25",
            "userQuery()",
            functions={"bm25sum": "bm25(title) + bm25(text)"},
            first_phase="bm25sum",
            match_features=("bm25(title)", "bm25(text)"),
            embedded=_bm25,
        ),
        Profile(
            "semantic",
            NEAREST,
            inputs={"q": "tensor<float>(x[{d}])"},
            first_phase=CLOSENESS,
            match_features=(CLOSENESS,),
            embedded=_semantic,
        ),
        Profile(
            "hybrid",
            f"({NEAREST}) or userQuery()",
            inherits=("bm25", "semantic"),
            first_phase=CLOSENESS,
            global_phase=Phase(f"reciprocal_rank_fusion({CLOSENESS}, bm25sum)", RERANK_COUNT),
            match_features=(CLOSENESS, "bm25(title)", "bm25(text)"),
            fusion=_rrf,
            fused=("closeness", "bm25"),
        ),
        Profile(
            "hybrid-linear",
            f"({NEAREST}) or userQuery()",
            inherits=("hybrid",),
            global_phase=Phase(
                f"normalize_linear({CLOSENESS}) + {WEIGHT} * normalize_linear(bm25sum)", RERANK_COUNT
            ),
            fusion=_linear,
            fused=("closeness", "bm25"),
            weighted=True,
        ),
        Profile(
            "binary",
            "{{{ann}}}nearestNeighbor(embedding_binary, q_binary)",
            inherits=("semantic",),
            inputs={"q_binary": "tensor<int8>(x[{d8}])"},
            first_phase=BINARY_CLOSENESS,
            functions={"cosine": "cosine_similarity(query(q), attribute(embedding), x)"},
            second_phase=Phase("cosine", SECOND_PHASE_RERANK),
            match_features=(BINARY_CLOSENESS, "cosine"),
            binarized=True,
            embedded=_binary,
        ),
        Profile(
            "colbert",
            NEAREST,
            inherits=("semantic",),
            inputs=COLBERT_INPUTS,
            functions={MAXSIM_FN: MAXSIM},
            global_phase=Phase(
                f"normalize_linear({CLOSENESS}) + normalize_linear({MAXSIM_FN})", COLBERT_RERANK
            ),
            match_features=(CLOSENESS, MAXSIM_FN),
            colbert=True,
            fusion=_linear,
            fused=("closeness", "maxsim"),
        ),
        Profile(
            "colbert-maxsim",
            NEAREST,
            inherits=("semantic",),
            inputs=COLBERT_INPUTS,
            functions={MAXSIM_FN: MAXSIM},
            second_phase=Phase(MAXSIM_FN, COLBERT_RERANK),
            match_features=(CLOSENESS, MAXSIM_FN),
            colbert=True,
            embedded=lambda index, text, k: _maxsim_rerank(index, text, *_semantic(index, text, k)),
        ),
        Profile(
            "hybrid-colbert",
            f"({NEAREST}) or userQuery()",
            inherits=("hybrid",),
            inputs=COLBERT_INPUTS,
            functions={MAXSIM_FN: MAXSIM},
            global_phase=Phase(
                f"normalize_linear({CLOSENESS}) + normalize_linear(bm25sum) + normalize_linear({MAXSIM_FN})",
                RERANK_COUNT,
            ),
            match_features=(CLOSENESS, "bm25(title)", "bm25(text)", MAXSIM_FN),
            colbert=True,
            fusion=_linear,
            fused=("closeness", "bm25", "maxsim"),
        ),
        Profile(
            "bm25-colbert",
            "userQuery()",
            inherits=("bm25",),
            inputs=COLBERT_INPUTS,
            functions={MAXSIM_FN: MAXSIM},
            second_phase=Phase(MAXSIM_FN, COLBERT_RERANK),
            match_features=("bm25(title)", "bm25(text)", MAXSIM_FN),
            colbert=True,
            embedded=lambda index, text, k: _maxsim_rerank(index, text, *_bm25(index, text, k)),
        ),
    ]
}
NAMES = tuple(PROFILES)
CORE = ("bm25", "semantic", "hybrid", "hybrid-linear")  # what evaluation reports unless asked for more


def in_package(
    binarized: bool, chunked: bool = False, colbert: bool = False, single: bool = True
) -> list[Profile]:
    """The profiles a package has (``single``: it has the single-vector embedding, ``colbert``: the token
    vectors). In a chunked package the body is the ``chunks`` array: BM25 reads it in place of ``text``, and a
    profile that ranks by the embedding also returns its best chunk's label (``closest(embedding)``) so a
    client can show the passage."""
    chosen = [
        p
        for p in PROFILES.values()
        if (binarized or not p.binarized) and (colbert or not p.colbert) and (single or not p.single_vector)
    ]
    return [chunked_variant(p) for p in chosen] if chunked else chosen


def chunked_variant(p: Profile) -> Profile:
    def body(expression: str) -> str:
        return expression.replace("bm25(text)", "bm25(chunks)")

    features = tuple(body(f) for f in p.match_features)
    functions = {n: body(e) for n, e in p.functions.items()}
    if CLOSENESS not in features:
        return replace(p, functions=functions, match_features=features)
    # The chunk nearest the query: named in the match features, and (as a summary feature) the one element of
    # the chunks array the summary returns (select-elements-by), so a hit never carries a 100-page document.
    return replace(
        p,
        functions=functions | {BEST_CHUNK_FN: BEST_CHUNK},
        match_features=features + (BEST_CHUNK,),
        summary_features=(BEST_CHUNK_FN,),
    )


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}: choose one of {', '.join(NAMES)}")
    return PROFILES[name]
