"""NanoBEIR: the 13 small BEIR sets (50 queries each, a few thousand documents) that sentence-transformers'
``NanoBEIREvaluator`` and pyvespa's NanoBEIR leaderboard quote, read from the hub's dataset files
(``zeta-alpha-ai/Nano<Set>``: ``corpus``, ``queries`` and ``qrels`` as parquet) into the same ``Beir`` every
other evaluation takes. Downloaded once into the hub's cache; offline (``HF_HUB_OFFLINE=1``), read from it.

Example::

    siamese eval --models runs/latest/train/model --benchmark nanobeir:SciFact,NFCorpus --hybrid
"""

from __future__ import annotations

from pathlib import Path

from .data import Beir, Doc
from .errors import ConfigError, MissingInputError

SETS = (
    "ArguAna",
    "ClimateFEVER",
    "DBPedia",
    "FEVER",
    "FiQA2018",
    "HotpotQA",
    "MSMARCO",
    "NFCorpus",
    "NQ",
    "QuoraRetrieval",
    "SCIDOCS",
    "SciFact",
    "Touche2020",
)
REPO = "zeta-alpha-ai/Nano{}"


def benchmark_sets(text: str) -> list[str]:
    """``nanobeir`` (all 13) or ``nanobeir:SciFact,NFCorpus``
    (names as in ``SETS``, any case, "Nano" optional)."""
    name, _, chosen = text.partition(":")
    if name.lower() != "nanobeir":
        raise ConfigError(f"--benchmark {text!r}: the benchmark is nanobeir (or nanobeir:SET,SET)")
    by_lower = {s.lower(): s for s in SETS}
    sets = []
    for item in filter(None, (c.strip() for c in chosen.split(","))):
        key = item.lower().removeprefix("nano")
        if key not in by_lower:
            raise ConfigError(f"--benchmark: no NanoBEIR set {item!r}; the sets are {', '.join(SETS)}")
        sets.append(by_lower[key])
    return sets or list(SETS)


def _rows(folder: Path, part: str) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((folder / part).glob("*.parquet"))
    if not files:
        raise MissingInputError(
            f"{folder}: no {part}/*.parquet (an incomplete download: remove the folder and run again online)"
        )
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def load_nanobeir(name: str) -> Beir:
    """One set from the hub (or its cache) as ``Beir``; every judged pair counts as relevant (grade 1)."""
    try:
        import pyarrow  # noqa: F401  (the sets are parquet)
    except ImportError:
        raise ConfigError("NanoBEIR's files are parquet: pip install pyarrow") from None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = REPO.format(name)
    try:
        folder = Path(
            snapshot_download(repo, repo_type="dataset", allow_patterns=["corpus/*", "queries/*", "qrels/*"])
        )
    except LocalEntryNotFoundError:
        raise MissingInputError(
            f"NanoBEIR {name}: not in the hub's cache and the hub is not reachable (offline?). "
            f"Run once online to download {repo}."
        ) from None
    except OSError as e:
        raise MissingInputError(
            f"NanoBEIR {name}: cannot download {repo} ({e.__class__.__name__}: {str(e)[:160]})"
        ) from None
    corpus = {
        str(r["_id"]): Doc(str(r["_id"]), str(r.get("title") or ""), str(r["text"]))
        for r in _rows(folder, "corpus")
    }
    queries = {str(r["_id"]): str(r["text"]) for r in _rows(folder, "queries")}
    qrels: dict[str, dict[str, int]] = {}
    for r in _rows(folder, "qrels"):
        q, d = str(r["query-id"]), str(r["corpus-id"])
        if q in queries and d in corpus and int(r.get("score", 1)) > 0:
            qrels.setdefault(q, {})[d] = int(r.get("score", 1))
    if not qrels:
        raise MissingInputError(
            f"NanoBEIR {name}: {folder} holds no judgement linking its queries and corpus"
        )
    return Beir(corpus, {q: queries[q] for q in qrels}, qrels)
