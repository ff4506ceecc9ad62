"""``--recipe auto``, the default: what is served is chosen on the user's own held-out training queries, the
untrained base model is always a candidate, and a trained one replaces it only where it wins beyond noise.

1. Training queries are held out (``held_out.py``): one dev slice where they are many, k folds where they
   are few, so every query is held out once.
2. Each candidate (``CANDIDATES``) trains on the kept pairs of each fold (``OUT/candidates/TOWER/fold-F``):
   - ``base``: the base model as it is, at its own window; never trained, always a candidate;
   - ``query``: the query tower over the base's frozen document vectors, its *length* chosen along training:
     held-out nDCG@10 is measured at every tenth of the planned steps (queries only: the documents keep
     the base's cached vectors) and the tenth that scores best over all held-out queries is kept;
   - ``query-merged``: that query tower merged back into the base (α ¾, ½ or ¼: the best on held-out queries
     that falls on no guard beyond noise; WiSE-FT, LM-Cocktail);
   - costly, tried where a GPU trains or ``--candidates`` names them: ``shared`` (shared weights, anchored)
     and ``shared-merged`` (merged back the same way); they embed the corpus and each guard per model.
3. Each is scored per query: nDCG@10 on every held-out query, and on each guard's *selection* half (never
   the report half every reported figure uses).
4. ``choose``: a trained candidate replaces the base only where its held-out gain is beyond noise (a paired
   sign-flip test, one-sided, p ≤ 0.05: ``common/significance.py``) and it falls on no guard beyond noise (the
   same test, against a fall of more than half a point, ``FORGETTING_BOUND``); of those, the best on the
   held-out queries (ties: the cheaper). Where none does, the base is shipped.
5. The winner is trained again on every pair, for the share of the steps it was chosen at (and merged at
   its α), into ``OUT/model``; the base is written there as it is.

``OUT/recipe.json`` and the model's own copy (its card shows it) hold every candidate's figures, each test,
and the choice in a sentence. A finished fold or candidate is never trained or scored again: an interrupted
selection resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from common import device
from common.atomic import atomic_dir
from common.data import Beir, Doc
from common.errors import ConfigError
from common.metrics import passage_key, per_query_ndcg
from common.significance import ALPHA, Paired, p_text, paired_test
from common.vectors import cached_vectors, dense_run, exact_search, normalize, to_run

from . import loop
from .config import TrainConfig, recipe_config
from .encoder import Encoder
from .evaluate import embed_fn, guard_sets
from .held_out import Fold, held_out_folds
from .merge import BOUND, merge, merge_weights, merged_encoder
from .model_card import UNSEEN, write_card
from .model_dir import (
    RECIPE_FILE,
    TRAIN_METRICS_FILE,
    ModelRecord,
    check_model_dir,
    model_cache_key,
    write_positives,
)
from .models import load_model
from .pairs import Pair
from .towers import copy_base

FORGETTING_BOUND = BOUND  # the fall on a guard that matters: half a point of nDCG@10
FRACTIONS = tuple(round(i / 10, 1) for i in range(1, 11))  # where the query tower's length is measured
ALPHAS = (0.75, 0.5, 0.25)  # merge weights tried (1 is the candidate itself, 0 the base)


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    tower: str | None = None  # what it trains; None: the base, untrained
    merged: bool = False  # trained as ``tower``, then merged back into the base (α chosen as above)
    costly: bool = False  # embeds the corpus and the guards per model: on a CPU, only where asked


# In the order a tie goes (the cheapest first).
CANDIDATES = (
    Candidate("base", "the base model, untrained"),
    Candidate("query", "query tower", "query"),
    Candidate("query-merged", "query tower merged back into the base", "query", merged=True),
    Candidate("shared", "shared weights (anchored)", "shared", costly=True),
    Candidate(
        "shared-merged", "shared weights merged back into the base", "shared", merged=True, costly=True
    ),
)
BY_NAME = {c.name: c for c in CANDIDATES}
CHEAP = tuple(c.name for c in CANDIDATES if not c.costly)


def resolve(asked: str | None, fixed_by: str | None = None) -> tuple[str, str]:
    """(fixed | auto, why): as asked; fixed where the user already chose what auto would (``fixed_by``: a
    tower, a merge, settings only shared weights take); else auto, on every machine."""
    if asked:
        return asked, "asked for with --recipe"
    if fixed_by:
        return "fixed", fixed_by
    return "auto", "the default: chosen on your held-out training queries"


def default_candidates() -> tuple[str, ...]:
    """Every candidate where a GPU trains; the cheap ones (frozen document vectors) on a CPU."""
    return tuple(BY_NAME) if device.best() != "cpu" else CHEAP


def parse_candidates(text: str | None) -> tuple[str, ...]:
    """``--candidates``: names separated by commas, ``cheap`` or ``all``; the base is always one."""
    if not text:
        return default_candidates()
    names = {"all": tuple(BY_NAME), "cheap": CHEAP}.get(text) or tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ConfigError(
            f"--candidates: no candidate {', '.join(unknown)}; choose from {', '.join(BY_NAME)}, cheap or all"
        )
    return tuple(n for n in BY_NAME if n in names or n == "base")


def candidate_configs(base: str, full: bool, data: str, settings: dict) -> Callable[[str, str], TrainConfig]:
    """The one place a candidate's configuration comes from (`siamese train` and `siamese run` alike): the
    recipe with the user's settings on top, for a tower, in a folder. ConfigError: the settings do not fit
    that tower, and the candidate is not tried."""

    def make(tower: str, folder: str) -> TrainConfig:
        return recipe_config(base, folder, full, data=data, **settings | {"tower": tower})

    return make


# ----------------------------------------------------------------------------------------------- scoring


class Scorer:
    """Per-query nDCG@10 on the held-out queries and on the guards' selection halves. A query tower's
    documents are the base's vectors: embedded (and cached) once here, so scoring one embeds queries only."""

    def __init__(self, base: str, pool, held: Beir, guards: dict[str, Beir]):
        self.base = Encoder.load(base).eval()
        self.key = model_cache_key(base, self.base.config)  # hashes the weights: once
        self.sets = {"held": held} | guards
        self.documents = {"held": self._held_documents(pool, held)}
        for name, beir in guards.items():  # in the order, and so under the cache key, evaluation uses
            ids = list(beir.corpus)
            self.documents[name] = (ids, normalize(self._vectors([beir.corpus[d].passage for d in ids])))

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return cached_vectors(
            self.key, texts, lambda: self.base.encode(texts, "passage", progress=len(texts) > 1000)
        )

    def _held_documents(self, pool, held: Beir):
        """The held-out corpus's vectors: the pool's in the pool's order (the query tower's bank and the
        evaluation cache them so), then the positives the pool lacks."""
        texts = [d.passage if isinstance(d, Doc) else d for d in pool or []]
        known = dict(zip(map(passage_key, texts), range(len(texts))))
        extra = [d.passage for d in held.corpus.values() if passage_key(d.passage) not in known]
        vectors = np.concatenate(
            [
                v
                for v in (
                    self._vectors(texts) if texts else None,
                    self.base.encode(extra, "passage") if extra else None,
                )
                if v is not None
            ]
        )
        known |= {passage_key(t): len(texts) + i for i, t in enumerate(extra)}
        ids = list(held.corpus)
        return ids, normalize(vectors[[known[passage_key(held.corpus[d].passage)] for d in ids]])

    def frozen(self, encode_queries, name: str, beir: Beir | None = None) -> dict[str, float]:
        """Queries embedded by ``encode_queries`` against the base's document vectors of set ``name``."""
        beir = beir or self.sets[name]
        ids, vectors = self.documents[name]
        qids = list(beir.queries)
        idx, top = exact_search(encode_queries([beir.queries[q] for q in qids]), vectors, 100)
        return per_query_ndcg(to_run(qids, ids, idx, top), beir.qrels)

    def towers(self, query_encoder: Encoder, held: Beir) -> dict:
        """A query tower over the base's documents: held-out and guard scores."""
        encode = lambda texts: query_encoder.encode(texts, "query")  # noqa: E731
        return {"held": self.frozen(encode, "held", held), "guards": self.guards(encode)}

    def guards(self, encode) -> dict[str, dict[str, float]]:
        return {g: self.frozen(encode, g) for g in self.sets if g != "held"}

    def model(self, model, held: Beir, cache: str | None) -> dict:
        """A model that embeds its own documents (shared weights): the corpus and each guard embedded."""
        embed = embed_fn(model)
        return {
            "held": per_query_ndcg(dense_run(embed, held, cache=cache), held.qrels),
            "guards": {
                g: per_query_ndcg(dense_run(embed, b, cache=cache), b.qrels)
                for g, b in self.sets.items()
                if g != "held"
            },
        }


class Curve:
    """The query tower's held-out scores at every tenth of its steps (``FRACTIONS``), and its weights there
    (``steps/step-N.safetensors``, fp16: enough to score guards and merges with, half the disk)."""

    def __init__(self, scorer: Scorer, fold: Fold, folder: Path):
        self.scorer, self.fold, self.folder = scorer, fold, folder
        self.points: dict[float, dict] = {}
        self.steps: dict[float, int] = {}

    def __call__(self, step: int, steps: int, towers) -> None:
        due = [f for f in FRACTIONS if max(1, round(f * steps)) == step]
        if not due:
            return
        scores = self.scorer.frozen(lambda t: towers.query.encode(t, "query"), "held", self.fold.held)
        (self.folder / "steps").mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to("cpu", torch.float16).contiguous() for k, v in towers.query.state_dict().items()
        }
        save_file(state, str(self.folder / "steps" / f"step-{step}.safetensors"))
        for f in due:
            self.points[f], self.steps[f] = scores, step

    def save(self) -> None:
        (self.folder / "curve.json").write_text(
            json.dumps(
                {
                    "points": {str(f): s for f, s in self.points.items()},
                    "steps": {str(f): s for f, s in self.steps.items()},
                }
            )
        )

    @staticmethod
    def load(folder: Path) -> tuple[dict[float, dict], dict[float, int]] | None:
        path = folder / "curve.json"
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return (
            {float(f): s for f, s in saved["points"].items()},
            {float(f): s for f, s in saved["steps"].items()},
        )


# ----------------------------------------------------------------------------------------------- choice


def _mean(scores: dict[str, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else 0.0


def _paired(candidate: dict[str, float], base: dict[str, float], **kw) -> Paired:
    qids = sorted(base)
    return paired_test([candidate[q] for q in qids], [base[q] for q in qids], **kw)


def tests(scores: dict, base: dict, unseen: frozenset | set = frozenset()) -> dict:
    """A candidate against the base: the held-out gain's test, and the test of a fall (beyond half a point)
    on each guard and on the ``unseen`` held-out queries, where new queries live: a gain that comes from
    memorised documents alone must not cost them."""
    falls = {g: _fall(s, base["guards"][g]) for g, s in scores["guards"].items()}
    held_unseen = {q: s for q, s in base["held"].items() if q in unseen}
    if held_unseen:
        falls[UNSEEN] = _fall(scores["held"], held_unseen)
    return {"gain": _paired(scores["held"], base["held"]), "falls": falls}


def _fall(candidate: dict[str, float], base: dict[str, float]) -> Paired:
    return _paired(candidate, base, shift=-FORGETTING_BOUND, larger=False)


def wins(result: dict) -> bool:
    """Beats the base beyond noise on held-out queries, and falls neither on a guard nor on the unseen
    held-out queries beyond noise."""
    gain = result["gain"]
    return gain.change > 0 and gain.beyond_noise and not any(f.beyond_noise for f in result["falls"].values())


def choose(scored: dict[str, dict], unseen: frozenset | set = frozenset()) -> tuple[str, str]:
    """The candidate to ship and why, in one sentence. ``scored``: each candidate's per-query scores
    (``held``, ``guards``); ``base`` among them. The base stays unless a trained candidate ``wins``."""
    base = scored["base"]
    results = {n: tests(s, base, unseen) for n, s in scored.items() if n != "base"}
    eligible = [n for n in results if wins(results[n])]
    if not eligible:
        best = max(results, key=lambda n: results[n]["gain"].change, default=None)
        if best is None:
            return "base", "no trained candidate was tried"
        gain, falls = results[best]["gain"], results[best]["falls"]
        fell = [g for g, f in falls.items() if f.beyond_noise]
        reason = (
            f"the best of them, the {BY_NAME[best].label}, fell on {', '.join(fell)} beyond noise"
            if fell and gain.beyond_noise and gain.change > 0
            else f"the best of them, the {BY_NAME[best].label}, changed held-out nDCG@10 by "
            f"{100 * gain.change:+.1f} points ({p_text(gain.p_value)}; {gain.queries} queries resolve about "
            f"{100 * gain.resolves:.1f})"
        )
        return "base", f"no trained candidate beat the base model beyond noise: {reason}"
    winner = max(eligible, key=lambda n: (round(_mean(scored[n]["held"]), 9), -list(BY_NAME).index(n)))
    gain = results[winner]["gain"]
    return winner, (
        f"the {BY_NAME[winner].label} beat the base model on {gain.queries} held-out queries by "
        f"{100 * gain.change:+.1f} points of nDCG@10 ({p_text(gain.p_value)}) and fell beyond noise neither "
        "on a guard nor on the unseen held-out queries"
        + ("" if len(eligible) == 1 else f"; the best of the {len(eligible)} that did")
    )


def choose_length(curves: list[dict[float, dict[str, float]]]) -> tuple[float, dict[float, float]]:
    """The share of the steps to keep: the one whose held-out nDCG@10, over every fold's held-out queries
    together, is best (ties: the shorter); and that pooled curve."""
    pooled = {f: _mean({q: s for points in curves for q, s in points[f].items()}) for f in FRACTIONS}
    return max(FRACTIONS, key=lambda f: (round(pooled[f], 9), -f)), pooled


def choose_alpha(per_alpha: dict[float, dict], base: dict, unseen: frozenset | set = frozenset()) -> float:
    """The merge weight: the best on held-out queries of those that fall beyond noise neither on a guard nor
    on the unseen held-out queries (every one falls: the smallest)."""
    safe = [
        a
        for a, s in per_alpha.items()
        if not any(f.beyond_noise for f in tests(s, base, unseen)["falls"].values())
    ]
    if not safe:
        return min(per_alpha)
    return max(safe, key=lambda a: (round(_mean(per_alpha[a]["held"]), 9), -a))


# ----------------------------------------------------------------------------------------------- selection


def select_recipe(
    make_config: Callable[[str, str], TrainConfig],
    pairs: list[Pair],
    pool,
    out: Path,
    guards: list[str],
    base: str,
    candidates: tuple[str, ...] | None = None,
    say=print,
) -> tuple[Path, dict]:
    """Choose on held-out training queries, then write the shipped model to ``out/model``; returns it and
    the record. ``make_config(tower, folder)``: a candidate's configuration (``candidate_configs``)."""
    names = candidates or default_candidates()
    folds = held_out_folds(
        pairs, pool
    )  # before any work: too few queries, or a candidate refused, touch nothing
    configs, skipped = {}, {}
    for c in CANDIDATES[1:]:
        if c.name not in names:
            skipped[c.name] = "costly on a CPU: `--candidates all` tries it" if c.costly else "not asked for"
            continue
        try:
            configs[c.tower] = configs.get(c.tower) or make_config(c.tower, str(out / "candidates" / c.tower))
        except ConfigError as refused:
            skipped[c.name] = str(refused).split(": ", 1)[-1]
            say(f"recipe auto: {c.label} not tried ({skipped[c.name]})")
    for tower, cfg in configs.items():
        Encoder.checked_config(cfg.base, **cfg.encoding)
        configs[tower] = loop.from_the_base(cfg, pairs)
    selection = guard_sets(guards, half="selection")
    out.mkdir(parents=True, exist_ok=True)
    held_all = Beir(
        folds[0].held.corpus,
        {q: t for f in folds for q, t in f.held.queries.items()},
        {q: r for f in folds for q, r in f.held.qrels.items()},
    )
    seen = set().union(*(f.seen for f in folds))
    unseen = set(held_all.queries) - seen
    how = "a dev slice" if len(folds) == 1 else f"{len(folds)} folds (every training query held out once)"
    say(
        f"recipe auto: {len(held_all.queries)} training queries held out in {how} ({len(seen)} seen); "
        "guards' selection halves: "
        + (", ".join(f"{g} {len(b.queries)} queries" for g, b in selection.items()) or "none")
    )
    scorer = Scorer(base, pool, held_all, selection)
    scored = {"base": scorer.towers(scorer.base, held_all)}
    extra = {}
    if "query" in configs:
        query, merged, extra["query"] = _query_candidates(
            configs["query"],
            folds,
            pool,
            scorer,
            scored["base"],
            unseen,
            say,
            want_merged="query-merged" not in skipped,
        )
        if "query" not in skipped:
            scored["query"] = query
        if merged:
            scored["query-merged"] = merged
    if "shared" in configs:
        shared, merged, extra["shared"] = _shared_candidates(
            configs["shared"],
            folds,
            pool,
            scorer,
            base,
            scored["base"],
            unseen,
            say,
            want_merged="shared-merged" not in skipped,
        )
        if "shared" not in skipped:
            scored["shared"] = shared
        if merged:
            scored["shared-merged"] = merged
    winner, why = choose(scored, unseen)
    say(f"recipe auto: {why}")
    record = _record(
        winner, why, scored, extra, skipped, folds, held_all, seen, unseen, selection, pairs, base
    )
    (out / RECIPE_FILE).write_text(json.dumps(record, indent=2))
    model = _ship(winner, record, make_config, configs, pairs, pool, base, out, say)
    keep_record(model, record)
    return model, record


def _query_candidates(cfg, folds, pool, scorer, base_scores, unseen, say, want_merged):
    """``query`` and ``query-merged``: each fold's query tower followed along its steps; the length chosen on
    every held-out query; guards and merges scored at that length."""
    folder = Path(cfg.out)
    done = folder / "score.json"
    if done.exists():
        say("recipe auto: the query tower: scored before, reused")
        saved = json.loads(done.read_text())
        return saved["query"], saved.get("query-merged"), saved["extra"]
    curves, seconds = [], 0.0
    for fold in folds:
        fold_dir = folder / f"fold-{fold.number}"
        curve = Curve(scorer, fold, fold_dir)
        loaded = Curve.load(fold_dir) if (fold_dir / "model").exists() else None
        if loaded:
            curve.points, curve.steps = loaded
            say(
                f"recipe auto: the query tower, fold {fold.number + 1} of {len(folds)}: trained before, "
                "reused"
            )
        else:
            shutil.rmtree(fold_dir, ignore_errors=True)
            say(
                f"recipe auto: training the query tower, fold {fold.number + 1} of {len(folds)} "
                f"({fold.kept_queries} queries; held-out nDCG@10 at every tenth of its steps)"
            )
            loop.train(replace(cfg, out=str(fold_dir)), fold.kept, pool, watch=curve)
            curve.save()
        seconds += json.loads((fold_dir / "model" / TRAIN_METRICS_FILE).read_text())["wall_s"]
        curves.append(curve)
    length, pooled = choose_length([c.points for c in curves])
    say(
        "recipe auto: held-out nDCG@10 along the query tower's steps: "
        + ", ".join(f"{f:.0%} {pooled[f]:.4f}" for f in FRACTIONS)
        + f"; kept {length:.0%}"
    )
    tuned, per_alpha = [], {a: [] for a in ALPHAS}
    encoder = Encoder.load(cfg.base, **cfg.encoding).eval()
    base_state = {k: v.clone() for k, v in encoder.state_dict().items()}
    for curve in curves:  # held-out scores as measured in training; guards and merges from the weights kept
        state = load_file(str(curve.folder / "steps" / f"step-{curve.steps[length]}.safetensors"))
        state = {k: v.to(torch.float32) for k, v in state.items()}
        encoder.load_state_dict(state)
        encode = lambda texts: encoder.encode(texts, "query")  # noqa: E731
        tuned.append({"held": curve.points[length], "guards": scorer.guards(encode)})
        for alpha in ALPHAS if want_merged else ():
            encoder.load_state_dict(merge_weights(base_state, state, alpha))
            per_alpha[alpha].append(scorer.towers(encoder, curve.fold.held))
    query = _pooled(tuned)
    extra = {
        "length": length,
        "curve": {str(f): round(pooled[f], 4) for f in FRACTIONS},
        "steps": [c.steps[length] for c in curves],
        "train_s": round(seconds, 1),
    }
    merged = None
    if want_merged:
        alphas = {a: _pooled(per_alpha[a]) for a in ALPHAS}
        extra["alpha"] = choose_alpha(alphas, base_scores, unseen)
        extra["alphas"] = {str(a): round(_mean(s["held"]), 4) for a, s in alphas.items()}
        merged = alphas[extra["alpha"]]
    done.write_text(json.dumps({"query": query, "query-merged": merged, "extra": extra}))
    for curve in curves:  # scored: the shipped model is trained again, so the folds' weights go
        shutil.rmtree(curve.folder / "steps", ignore_errors=True)
        shutil.rmtree(curve.folder / "model", ignore_errors=True)
    return query, merged, extra


def _shared_candidates(cfg, folds, pool, scorer, base, base_scores, unseen, say, want_merged):
    """``shared`` and ``shared-merged``: each fold's shared model, its corpus and guards embedded."""
    folder = Path(cfg.out)
    done = folder / "score.json"
    if done.exists():
        say("recipe auto: shared weights: scored before, reused")
        saved = json.loads(done.read_text())
        return saved["shared"], saved.get("shared-merged"), saved["extra"]
    tuned, per_alpha, seconds = [], {a: [] for a in ALPHAS}, 0.0
    for fold in folds:
        fold_dir = folder / f"fold-{fold.number}"
        if not (fold_dir / "model").exists():
            shutil.rmtree(fold_dir, ignore_errors=True)
            say(f"recipe auto: training shared weights, fold {fold.number + 1} of {len(folds)}")
            loop.train(replace(cfg, out=str(fold_dir)), fold.kept, pool)
        model_dir = fold_dir / "model"
        seconds += json.loads((model_dir / TRAIN_METRICS_FILE).read_text())["wall_s"]
        model = load_model(model_dir).eval()
        tuned.append(scorer.model(model, fold.held, model_cache_key(model_dir, model.config)))
        for alpha in ALPHAS if want_merged else ():
            say(f"recipe auto: shared weights merged at α {alpha}, fold {fold.number + 1}")
            per_alpha[alpha].append(
                scorer.model(merged_encoder(base, model_dir, alpha).eval(), fold.held, None)
            )
    shared = _pooled(tuned)
    extra, merged = {"train_s": round(seconds, 1)}, None
    if want_merged:
        alphas = {a: _pooled(per_alpha[a]) for a in ALPHAS}
        extra["alpha"] = choose_alpha(alphas, base_scores, unseen)
        extra["alphas"] = {str(a): round(_mean(s["held"]), 4) for a, s in alphas.items()}
        merged = alphas[extra["alpha"]]
    done.write_text(json.dumps({"shared": shared, "shared-merged": merged, "extra": extra}))
    for fold in folds:  # scored: the shipped model is trained again, so the folds' weights go
        shutil.rmtree(folder / f"fold-{fold.number}" / "model", ignore_errors=True)
    return shared, merged, extra


def _pooled(per_fold: list[dict]) -> dict:
    """Each fold's held-out scores together (every held-out query once), and each guard query's mean over the
    folds' models (each scored the same guard queries)."""
    held = {q: s for scores in per_fold for q, s in scores["held"].items()}
    guards = {
        g: {q: float(np.mean([p["guards"][g][q] for p in per_fold])) for q in per_fold[0]["guards"][g]}
        for g in per_fold[0]["guards"]
    }
    return {"held": held, "guards": guards}


# ----------------------------------------------------------------------------------------------- records


def _figures(scores: dict, seen: set[str]) -> dict:
    held = scores["held"]
    row = {"ndcg@10": _mean(held)}
    for name, part in (
        ("seen", {q for q in held if q in seen}),
        ("unseen", {q for q in held if q not in seen}),
    ):
        if part:
            row[f"ndcg@10 {name}"] = _mean({q: held[q] for q in part})
    return {k: round(v, 4) for k, v in row.items()}


def _record(
    winner, why, scored, extra, skipped, folds, held_all, seen, unseen, selection, pairs, base
) -> dict:
    candidates = {}
    for name, scores in scored.items():
        entry = {
            "held_out": _figures(scores, seen),
            "guards": {g: round(_mean(s), 4) for g, s in scores["guards"].items()},
        }
        if name != "base":
            result = tests(scores, scored["base"], unseen)
            entry["gain"] = result["gain"].as_record()
            entry["falls"] = {
                g: f.as_record() | {"beyond_noise": f.beyond_noise} for g, f in result["falls"].items()
            }
            entry["wins"] = wins(result)
            tower = BY_NAME[name].tower
            entry |= {
                k: v for k, v in extra.get(tower, {}).items() if k in ("length", "curve", "steps", "train_s")
            }
            if BY_NAME[name].merged:
                entry |= {"alpha": extra[tower]["alpha"], "alphas": extra[tower]["alphas"]}
        candidates[name] = entry
    chosen = BY_NAME[winner]
    return {
        "chosen": winner,
        "label": chosen.label,
        "tower": chosen.tower,
        "merged": chosen.merged,
        "why": why,
        "rule": {
            "test": "paired sign-flip randomization, one-sided",
            "alpha": ALPHA,
            "forgetting_bound": FORGETTING_BOUND,
        },
        "held_out": {
            "method": "dev slice" if len(folds) == 1 else f"{len(folds)} folds",
            "queries": len(held_all.queries),
            "seen": len(seen),
            "query_ids": sorted({p.query_id for f in folds for p in f.held_pairs if p.query_id}),
        },
        "train_queries": len({p.query for p in pairs}),
        "base": base,
        "guards": {g: len(b.queries) for g, b in selection.items()},
        "candidates": candidates,
        "not_tried": skipped,
    }


def _ship(winner, record, make_config, configs, pairs, pool, base, out, say) -> Path:
    """The chosen candidate, trained on every pair for its length (merged at its α), in ``out/model``."""
    target = out / "model"
    if target.exists():
        say(f"recipe auto: {target} was shipped before, kept")
        return target
    chosen = BY_NAME[winner]
    if chosen.tower is None:
        say("recipe auto: shipping the base model as it is")
        return _write_base(base, pairs, target)
    entry = record["candidates"][winner]
    cfg = replace(configs[chosen.tower], out=str(out), length=entry.get("length", 1.0))
    if not chosen.merged:
        say(
            f"recipe auto: training the {chosen.label} on all {len(pairs)} pairs"
            + (f" for {cfg.length:.0%} of its steps" if cfg.length < 1 else "")
        )
        return loop.train(cfg, pairs, pool)
    cfg = replace(cfg, out=str(out / "final"))
    say(
        f"recipe auto: training the {chosen.label} on all {len(pairs)} pairs, "
        f"then merging at α {entry['alpha']}"
    )
    trained = Path(cfg.out) / "model"
    if not trained.exists():
        loop.train(cfg, pairs, pool)
    return merge(base, trained, target, entry["alpha"], say=say, chosen_by="recipe auto: held-out queries")


def _write_base(base: str, pairs: list[Pair], target: Path) -> Path:
    """The base model served as it is: its files byte for byte (its cached vectors stay its own), with the
    training positives (seen and unseen queries are still told apart) and the choice beside them."""

    def write(tmp: Path):
        copy_base(check_model_dir(base), tmp)
        write_positives(tmp, [p for p in pairs if p.source == "labelled"])

    return atomic_dir(target, write, "model")


def read_recipe(model_dir) -> dict | None:
    path = Path(model_dir) / RECIPE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def keep_record(model_dir: Path, record: dict) -> None:
    """The choice beside the model it chose, so its card shows it."""
    (Path(model_dir) / RECIPE_FILE).write_text(json.dumps(record, indent=2))
    write_card(model_dir, ModelRecord.read(model_dir))
