"""``--recipe auto``: the recipe chosen on the user's own data, not by a default fixed for every user.

Which recipe wins depends on the data (docs/recipes.md): on SciFact the query tower beats shared weights on
every column; on a set with more pairs, shared weights take
points the query tower leaves, and forget a little. So:

1. a dev slice of the training *queries* is held out (``dev_split``: about 15 %, at least 50 where there are
   150 or more; by query, so no dev query has a pair in training; dev queries whose positives are positives of
   training queries are scored apart, as "seen", as the test split's are);
2. each candidate (``CANDIDATES``) trains on the rest, in ``OUT/candidates/NAME`` (a finished one is reused,
   so an interrupted selection resumes where it stopped);
3. each is scored on the dev slice (nDCG@10) and on each guard's *selection* half (never the report half that
   every reported figure uses);
4. the best on dev whose drop on every guard is within ``FORGETTING_BOUND`` of the base model wins, and is
   trained again on all the pairs (``OUT/model``; merged back: ``OUT/merged``).

``OUT/recipe.json`` (and the final model's ``recipe.json``, shown by its card) holds every candidate's figures
and the choice with its reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import device
from common.data import Beir, Doc
from common.errors import ConfigError
from common.metrics import passage_key, score_split
from common.vectors import dense_run

from . import loop
from .config import TrainConfig
from .encoder import Encoder
from .evaluate import embed_fn, guard_sets
from .merge import BOUND, guard_scores, merge
from .model_card import write_card
from .model_dir import MERGE_FILE, RECIPE_FILE, TRAIN_CONFIG_FILE, TRAIN_METRICS_FILE, model_cache_key
from .models import load_model
from .pairs import Pair

FORGETTING_BOUND = BOUND  # the largest guard drop a winner may have: half a point of nDCG@10, as merge's α
DEV_FRACTION, DEV_MINIMUM, FEWEST_QUERIES = 0.15, 50, 30


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    tower: str
    merged: bool = False  # trained as ``tower``, then merged back into the base (α chosen on the guards)


# In the order a tie goes (the cheapest first). More earn a
# place here when measurement says they win somewhere.
CANDIDATES = (
    Candidate("query", "query tower", "query"),
    Candidate("shared", "shared weights (anchored)", "shared"),
    Candidate("shared-merged", "shared weights merged back (α auto)", "shared", merged=True),
)


def resolve(asked: str | None, fixed_by: str | None = None) -> tuple[str, str]:
    """(fixed | auto, why): as asked; else fixed where the user already chose what auto would (``fixed_by``: a
    tower, a merge, no guard sets to choose on); else auto where an accelerator trains (three candidates cost
    little there) and fixed on a CPU (the bundled run would take
    about four times as long: docs/recipes.md)."""
    if asked:
        return asked, "asked for with --recipe"
    if fixed_by:
        return "fixed", fixed_by

    where = device.best()
    if where == "cpu":
        return "fixed", (
            "the default on a CPU, where trying three candidates triples the training time; "
            "`--recipe auto` tries the query tower, shared weights and shared weights merged back on a "
            "dev slice of your queries and keeps the best that forgets nothing"
        )
    return "auto", f"the default where a GPU trains ({where})"


def dev_split(
    pairs: list[Pair], fraction: float = DEV_FRACTION, minimum: int = DEV_MINIMUM, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, dev pairs), split by query: ``fraction`` of the queries (at least ``minimum`` while
    the rest keeps two thirds), chosen by a seeded hash of the
    query's text, so the split is the same on any order."""
    queries = sorted(
        {p.query for p in pairs}, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest()
    )
    if len(queries) < FEWEST_QUERIES:
        raise ConfigError(
            f"--recipe auto holds out a dev slice of the training queries to choose on: "
            f"{len(queries)} queries are too few (it needs {FEWEST_QUERIES}). Give more pairs, or "
            "choose a recipe yourself (drop --recipe auto)"
        )
    size = max(round(fraction * len(queries)), min(minimum, len(queries) // 3))
    dev = set(queries[:size])
    return [p for p in pairs if p.query not in dev], [p for p in pairs if p.query in dev]


def dev_set(dev: list[Pair], kept: list[Pair], pool: list | None) -> tuple[Beir, set[str]]:
    """The dev pairs as a retrieval set over the corpus (the training pool, or every positive where there is
    none), and its seen queries: those with a positive that a kept training pair has too."""
    corpus: dict[str, Doc] = {}
    for item in pool or []:
        doc = item if isinstance(item, Doc) else Doc(f"text-{passage_key(item)}", "", item)
        corpus.setdefault(passage_key(doc.passage), doc)
    for p in [*kept, *dev]:
        corpus.setdefault(passage_key(p.positive), Doc(f"text-{passage_key(p.positive)}", "", p.positive))
    queries, qrels = {}, {}
    for p in dev:
        qid = f"dev-{passage_key(p.query)}"
        queries[qid] = p.query
        qrels.setdefault(qid, {})[corpus[passage_key(p.positive)].id] = 1
    trained = {passage_key(p.positive) for p in kept}
    seen = {f"dev-{passage_key(p.query)}" for p in dev if passage_key(p.positive) in trained}
    return Beir({d.id: d for d in corpus.values()}, queries, qrels), seen


def _score(model_dir: Path, dev: Beir, seen: set[str], guards: dict, before: dict) -> dict:

    model = load_model(model_dir).eval()
    cache = model_cache_key(model_dir, model.config)  # a query tower is named by its frozen document side
    row = score_split(dense_run(embed_fn(model), dev, cache=cache), dev.qrels, seen)
    after = guard_scores(model, guards, cache=cache)
    return {
        "dev": {k: round(v, 4) for k, v in row.items() if k.startswith("ndcg@10")},
        "guards": {g: round(after[g] - before[g], 4) for g in guards},
    }


def choose(scored: dict[str, dict]) -> tuple[str, str]:
    """The winner and why, in one sentence: the best dev nDCG@10 among candidates whose every guard drop is
    within the bound (ties: the earlier candidate); if none is, the one that forgets least."""

    def drop(name):
        return max([0.0, *(-d for d in scored[name]["guards"].values())])

    def dev(name):
        return scored[name]["dev"]["ndcg@10"]

    label = {c.name: c.label for c in CANDIDATES}
    kept = [n for n in scored if drop(n) <= FORGETTING_BOUND + 1e-9]
    best = max(scored, key=dev)
    if not kept:
        winner = min(scored, key=drop)
        return winner, (
            f"every candidate fell more than {100 * FORGETTING_BOUND:.1f} point on a guard; the "
            f"{label[winner]} fell least ({100 * drop(winner):.1f} points)"
        )
    winner = max(kept, key=dev)
    if winner == best:
        # a merge at α 1 is the shared model itself: not a runner-up
        others = [n for n in scored if n != winner and scored[n]["dev"] != scored[winner]["dev"]]
        margin = f", {100 * (dev(winner) - max(map(dev, others))):.1f} points over the next" if others else ""
        return winner, (
            f"the {label[winner]} scored best on the dev queries (nDCG@10 {dev(winner):.4f}{margin}) "
            f"and kept every guard within {100 * FORGETTING_BOUND:.1f} point"
        )
    return winner, (
        f"the {label[best]} scored best on the dev queries ({dev(best):.4f}) but fell "
        f"{100 * drop(best):.1f} points on a guard; the {label[winner]} is the best that kept every "
        f"guard within {100 * FORGETTING_BOUND:.1f} point ({dev(winner):.4f})"
    )


def select_recipe(
    make_config: Callable[[str, str], TrainConfig],
    pairs: list[Pair],
    pool,
    out: Path,
    guards: list[str],
    base: str,
    say=print,
) -> tuple[Path, dict]:
    """Choose the recipe on a dev slice and train the winner on every pair; returns the final model directory
    and the record. ``make_config(tower, out)``: the recipe's configuration for a tower (ConfigError: the
    user's settings do not fit that candidate, which is then not tried)."""
    out.mkdir(parents=True, exist_ok=True)
    if not guards:
        raise ConfigError(
            "--recipe auto scores every candidate on the guards' selection halves: give guard sets"
        )
    kept, dev_pairs = dev_split(pairs)
    dev, seen = dev_set(dev_pairs, kept, pool)
    selection = guard_sets(guards, half="selection")
    say(
        f"recipe auto: {len(dev.queries)} dev queries held out ({len(seen)} seen), "
        f"{len({p.query for p in kept})} "
        f"train the candidates; guards' selection halves: "
        + ", ".join(f"{g} {len(b.queries)} queries" for g, b in selection.items())
    )
    base_model = Encoder.load(base).eval()
    key = model_cache_key(base, base_model.config)  # hashes the weights: once
    before = guard_scores(base_model, selection, cache=key)
    base_dev = score_split(dense_run(embed_fn(base_model), dev, cache=key), dev.qrels, seen)
    del base_model
    candidates, skipped, scored = {}, {}, {}
    for c in CANDIDATES:
        try:
            candidates[c.name] = make_config(c.tower, str(out / "candidates" / c.tower))
        except ConfigError as refused:
            skipped[c.name] = str(refused).split(": ", 1)[-1]
            say(f"recipe auto: {c.label} not tried ({skipped[c.name]})")
    if not candidates:
        raise ConfigError(
            "--recipe auto: your settings fit no candidate recipe: " + "; ".join(skipped.values())
        )
    for c in (c for c in CANDIDATES if c.name in candidates):
        cfg = candidates[c.name]
        folder = out / "candidates" / c.name
        score_file = folder / "score.json"
        if score_file.exists():  # scored before an interruption: neither trained nor scored again
            scored[c.name] = json.loads(score_file.read_text())
            say(f"recipe auto: {c.label}: scored before, reused")
            continue
        model = _train_candidate(loop.train, cfg, kept, pool, say, c)
        seconds = json.loads((model / TRAIN_METRICS_FILE).read_text())["wall_s"]
        if c.merged:
            started = time.time()
            model = _merged(base, model, folder / "merged", guards, say)
            seconds += time.time() - started
        alpha = json.loads((model / MERGE_FILE).read_text())["alpha"] if c.merged else None
        if alpha == 1.0 and "shared" in scored:  # merged at α 1: the shared model itself, scored already
            result = {k: scored["shared"][k] for k in ("dev", "guards")}
        elif alpha == 0.0:  # merged at α 0: the base model's weights, scored before any candidate
            result = {
                "dev": {k: round(v, 4) for k, v in base_dev.items() if k.startswith("ndcg@10")},
                "guards": {g: 0.0 for g in selection},
            }
        else:
            say(f"recipe auto: scoring {c.label} on the dev queries and the guards' selection halves")
            result = _score(model, dev, seen, selection, before)
        result |= {"train_s": round(seconds, 1), "model": str(model)} | ({"alpha": alpha} if c.merged else {})
        folder.mkdir(parents=True, exist_ok=True)
        score_file.write_text(json.dumps(result, indent=2))
        scored[c.name] = result
    winner, why = choose(scored)
    say(f"recipe auto: {why}")
    chosen = next(c for c in CANDIDATES if c.name == winner)
    record = {
        "chosen": winner,
        "label": chosen.label,
        "tower": chosen.tower,
        "merged": chosen.merged,
        "why": why,
        "bound": FORGETTING_BOUND,
        "dev": {
            "queries": len(dev.queries),
            "seen": len(seen),
            "query_ids": sorted({p.query_id for p in dev_pairs if p.query_id}),
        },
        "train_queries": len({p.query for p in kept}),
        "guards": {g: len(b.queries) for g, b in selection.items()},
        "base": {
            "dev": {k: round(v, 4) for k, v in base_dev.items() if k.startswith("ndcg@10")},
            "guards": {g: round(v, 4) for g, v in before.items()},
        },
        "candidates": scored,
        "not_tried": skipped,
    }
    (out / RECIPE_FILE).write_text(json.dumps(record, indent=2))
    final = make_config(chosen.tower, str(out))
    say(f"recipe auto: training the {chosen.label} on all {len(pairs)} pairs")
    model = loop.train(final, pairs, pool, resume=(out / TRAIN_CONFIG_FILE).exists())
    return model, record


def _train_candidate(train, cfg: TrainConfig, pairs, pool, say, c: Candidate) -> Path:
    """A candidate's model, trained unless a finished one is there (an interrupted one starts over: the towers
    keep no checkpoint)."""
    out = Path(cfg.out)
    if (out / "model").exists():
        say(f"recipe auto: {c.label}: trained before, reused")
        return out / "model"
    if out.exists():
        shutil.rmtree(out)
    say(f"recipe auto: training the {c.label} on the candidates' pairs")
    return train(cfg, pairs, pool)


def _merged(base: str, tuned: Path, target: Path, guards: list[str], say) -> Path:
    if (target / MERGE_FILE).exists():
        return target
    return merge(base, tuned, target, "auto", guards, force=target.exists(), say=say)


def read_recipe(model_dir) -> dict | None:
    path = Path(model_dir) / RECIPE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def keep_record(model_dir: Path, record: dict) -> None:
    """The choice beside the model it chose, so its card shows it."""
    (Path(model_dir) / RECIPE_FILE).write_text(json.dumps(record, indent=2))
    write_card(model_dir)
