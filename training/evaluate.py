"""The exact-search core that training's own decisions use: a model as an embed function, BM25 and MaxSim
runs, STS-B Spearman, a cheap evaluation while training, and the guards' two halves (one to report on, one to
choose on: merge's α, `--recipe auto`). The report's rows and verdicts are the product floor's
(``siamese/evaluation.py``)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from common.bm25 import BM25
from common.bundled import GUARDS
from common.data import Beir, Doc, limit_queries, load_beir, read_beir
from common.errors import ConfigError, MissingInputError
from common.late import TokenStore
from common.metrics import Run, report_half, score_run, spearman
from common.vectors import cached_vectors, cosine, dense_run, to_run, top_k

from . import distributed
from .encoder import Encoder


def embed_fn(encoder: Encoder, progress: bool = False):
    """The encoder as an embed function ``(texts, kind) -> vectors`` (see ``common.vectors``)."""
    return partial(encoder.encode, progress=progress)


def late_run(doc_tokens: list, query_tokens: list, beir: Beir, k: int = 100) -> Run:
    """Exact MaxSim of every query against every document (``doc_tokens``/``query_tokens``: each text's token
    vectors, in ``beir``'s corpus and query order): what re-ranking approximates."""
    import numpy as np

    store = TokenStore(doc_tokens)  # index order = beir.corpus order
    scores = np.stack([store.maxsim_all(q) for q in query_tokens])
    idx, top = top_k(scores, k)
    return to_run(list(beir.queries), list(beir.corpus), idx, top)


def bm25_run(corpus: dict[str, Doc], queries: dict[str, str], k: int = 100) -> Run:
    doc_ids = list(corpus)
    qids = list(queries)
    idx, scores = BM25([corpus[d].passage for d in doc_ids]).search([queries[q] for q in qids], k)
    return to_run(qids, doc_ids, idx, scores)


def sts_score(encoder: Encoder, rows, cache: str | None = None) -> float:
    """Spearman between cosine similarity and the gold scores; both sides embedded as queries (symmetric
    task). ``cache``: a key naming the model (``model_cache_key``), whose vectors are kept as a corpus's."""

    def embed(texts: list[str]):
        compute = lambda: encoder.encode(texts, "query")  # noqa: E731
        return cached_vectors(f"sts query {cache}", texts, compute) if cache else compute()

    a, b = embed([r[0] for r in rows]), embed([r[1] for r in rows])
    return spearman(cosine(a, b), [r[2] for r in rows])


def during_training(data, split: str = "test", n_queries: int = 50, pool_depth: int = 50):
    """An evaluation cheap enough to run every few hundred steps: nDCG@10 / MRR@10 on ``n_queries`` queries,
    ranking only a candidate pool (BM25's top ``pool_depth`` per query plus the judged documents) instead of
    the whole corpus. The figures track progress; they are not comparable with full-corpus ones."""
    beir = limit_queries(read_beir(data, split), n_queries)
    qids = list(beir.queries)
    pool = {d for q in qids for d in beir.qrels[q]}
    for row in bm25_run(beir.corpus, beir.queries, pool_depth).values():
        pool |= {d for d, _ in row}
    candidates = Beir({d: beir.corpus[d] for d in pool}, beir.queries, beir.qrels)

    def eval_fn(encoder) -> dict:

        def embed(texts, kind):  # under torchrun, each rank embeds its share
            return distributed.encode_shared(lambda share: encoder.encode(share, kind), texts)

        scores = score_run(dense_run(embed, candidates), beir.qrels)
        return {"pool_ndcg@10": scores["ndcg@10"], "pool_mrr@10": scores["mrr@10"]}

    return eval_fn


def guard_sets(names_or_dirs, half: str = "report") -> dict[str, Beir]:
    """Guard sets by bundled name (``common.bundled.GUARDS``) or BEIR folder, each cut to the fixed half of
    its queries that figures are reported on (or, with ``half="selection"``, the other half, where choices
    such as a merge's α are made)."""
    guards = {}
    for item in names_or_dirs:
        folder = GUARDS.get(item, item)
        if not Path(folder).exists():
            raise MissingInputError(
                f"guard {item}: no such folder (give a BEIR folder with corpus.jsonl, "
                "queries.jsonl and qrels/test.tsv, or a bundled guard: "
                f"{', '.join(GUARDS)})"
            )
        beir = load_beir(folder, "test")
        reported = report_half(beir.qrels)
        keep = reported if half == "report" else set(beir.qrels) - reported
        name = item if item in GUARDS else Path(item).name
        if name in guards:  # two folders of one name: keep both, told apart
            name = f"{name}-{len([g for g in guards if g.startswith(name)]) + 1}"
        if not keep:
            raise ConfigError(
                f"guard {item}: its {half} half holds no judged query (of {len(beir.qrels)}); a guard "
                "needs judged queries in both halves (a fixed half each): give it more queries"
            )
        guards[name] = Beir(beir.corpus, {q: beir.queries[q] for q in keep}, {q: beir.qrels[q] for q in keep})
    return guards
