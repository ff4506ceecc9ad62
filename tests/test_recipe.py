"""`--recipe auto` (training/recipe.py, training/held_out.py) and the dense miner (training/negatives.py): the
held-out queries are training queries only, each held out once; the base model stays unless a trained
candidate beats it beyond noise without falling on a guard beyond noise; the query tower's length is the best
held-out step; the guards' report halves are never used to choose; an interrupted selection resumes without
training a finished candidate again."""

import json
import random

import numpy as np
import pytest

from common.data import read_beir
from common.errors import ConfigError
from siamese.cli import main
from training import held_out, recipe
from training.negatives import mine_dense_negatives
from training.pairs import Pair, load_training_data


def test_auto_is_the_default_on_every_machine_unless_the_user_chose():
    assert recipe.resolve(None)[0] == "auto"
    assert recipe.resolve(None, "--tower was given") == ("fixed", "--tower was given")
    assert recipe.resolve("fixed")[0] == "fixed"


def test_the_costly_candidates_are_tried_where_a_gpu_trains_or_where_asked(monkeypatch):
    import common.device

    monkeypatch.setattr(common.device, "best", lambda: "cpu")
    assert recipe.parse_candidates(None) == ("base", "query", "query-merged")
    assert recipe.parse_candidates("all") == tuple(recipe.BY_NAME)
    assert recipe.parse_candidates("shared") == ("base", "shared")  # the base is always one
    monkeypatch.setattr(common.device, "best", lambda: "cuda")
    assert recipe.parse_candidates(None) == tuple(recipe.BY_NAME)
    with pytest.raises(ConfigError, match="no candidate nope"):
        recipe.parse_candidates("query,nope")


def test_held_out_queries_are_whole_queries_chosen_the_same_on_any_order():
    many = [Pair(f"query {q}", f"passage {q} {k}") for q in range(1000) for k in range(1 + q % 3)]
    (only,) = held_out.held_out_groups(many)  # many queries: one dev slice of 15 %
    assert len(only) == 150
    few = [Pair(f"q{i}", f"p{i} {k}") for i in range(200) for k in range(1 + i % 2)]
    groups = held_out.held_out_groups(few)  # few: five folds, every query held out once
    assert len(groups) == held_out.FOLDS and sum(map(len, groups)) == 200
    assert set().union(*groups) == {p.query for p in few}
    shuffled = random.Random(1).sample(few, len(few))
    assert held_out.held_out_groups(shuffled) == groups
    with pytest.raises(ConfigError, match="too few"):
        held_out.held_out_groups(few[:20])


def test_k_folds_hold_out_every_training_query_exactly_once_and_never_a_test_query(small_beir):
    pairs, pool = load_training_data(str(small_beir), "train", False)
    folds = held_out.held_out_folds(pairs, pool)
    train, test = read_beir(small_beir, "train"), read_beir(small_beir, "test")
    held_ids = [p.query_id for f in folds for p in f.held_pairs]
    assert sorted(set(held_ids)) == sorted(train.qrels) and not set(held_ids) & set(test.qrels)
    held_queries = [q for f in folds for q in f.held.queries]
    assert len(held_queries) == len(set(held_queries)) == len(train.qrels)  # each exactly once
    for fold in folds:  # a fold trains on the other queries' pairs alone
        assert not {p.query for p in fold.kept} & {p.query for p in fold.held_pairs}
        assert len(fold.kept) + len(fold.held_pairs) == len(pairs)


def test_held_out_queries_whose_positive_a_kept_query_has_are_seen():
    kept = [Pair("a", "doc one"), Pair("b", "doc two")]
    held = [Pair("c", "doc one"), Pair("d", "doc three")]
    beir, seen = held_out.held_set(held, kept, held_out._corpus(kept + held, None))
    assert len(beir.corpus) == 3 and len(beir.queries) == 2
    assert {beir.queries[q] for q in seen} == {"c"}


def _scores(held, guards) -> dict:
    return {"held": dict(enumerate(held)), "guards": {g: dict(enumerate(s)) for g, s in guards.items()}}


def test_the_base_stays_unless_a_candidate_beats_it_beyond_noise_without_falling_on_a_guard():
    rng = np.random.default_rng(0)
    base_held, base_guard = rng.uniform(0.2, 0.9, 40), rng.uniform(0.2, 0.9, 200)
    noise = rng.normal(0, 0.15, 40)
    noise -= noise.mean()
    base = _scores(base_held, {"cisi": base_guard})
    same_guard = {"cisi": base_guard}
    # a point and a half on 40 noisy queries: not beyond noise, whatever its mean says
    noisy = _scores(base_held + 0.015 + noise, same_guard)
    winner, why = recipe.choose({"base": base, "query": noisy})
    assert winner == "base" and "beyond noise" in why and "+1.5 points" in why
    # every query three points better: beyond noise
    steady = _scores(base_held + 0.03, same_guard)
    assert recipe.choose({"base": base, "query": steady})[0] == "query"
    # the same gain, but two points lost on every guard query: a fall beyond the half-point bound
    forgets = _scores(base_held + 0.03, {"cisi": base_guard - 0.02})
    winner, why = recipe.choose({"base": base, "query": forgets})
    assert winner == "base" and "fell on cisi" in why
    # a guard that wobbles within noise does not refuse it
    wobble = rng.normal(0, 0.05, 200)
    wobble -= wobble.mean()
    assert recipe.choose({"base": base, "query": _scores(base_held + 0.03, {"cisi": base_guard + wobble})})[
        0
    ] == ("query")
    # of two that win, the better on held-out queries; a tie goes to the cheaper
    better = _scores(base_held + 0.05, same_guard)
    assert recipe.choose({"base": base, "query": steady, "shared": better})[0] == "shared"
    assert recipe.choose({"base": base, "query": steady, "query-merged": steady})[0] == "query"


def test_the_length_kept_is_the_best_held_out_step_over_every_fold_and_ties_go_shorter():
    def curve(fold, values):  # one fold: two held-out queries at each tenth of the steps
        return {f: {f"{fold}a": v, f"{fold}b": v} for f, v in zip(recipe.FRACTIONS, values)}

    rising = curve("one", [0.1 * i for i in range(1, 11)])
    peaked = curve("two", [0.5, 0.6, 0.9, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    length, pooled = recipe.choose_length([rising, peaked])
    assert length == max(pooled, key=pooled.get) == 1.0  # 0.55 + 0.5 at the end beats 0.15 + 0.9 at 30 %
    assert recipe.choose_length([peaked])[0] == 0.3  # alone, the peak
    flat = curve("three", [0.4] * 10)
    assert recipe.choose_length([flat])[0] == 0.1


def test_merging_keeps_the_best_alpha_that_falls_on_no_guard_beyond_noise():
    base = _scores(np.full(50, 0.5), {"cisi": np.full(100, 0.5)})
    per_alpha = {
        0.75: _scores(np.full(50, 0.60), {"cisi": np.full(100, 0.45)}),  # best, but falls 5 points
        0.5: _scores(np.full(50, 0.58), {"cisi": np.full(100, 0.499)}),
        0.25: _scores(np.full(50, 0.55), {"cisi": np.full(100, 0.5)}),
    }
    assert recipe.choose_alpha(per_alpha, base) == 0.5


TRAIN = ["--epochs", "1", "--no-guards"]


@pytest.fixture(scope="module")
def auto_run(tiny_model, small_beir, tmp_path_factory):
    """`siamese train --recipe auto` on the small SciFact slice (40 training queries: five folds), the slice
    itself as the guard; records which guard queries every scoring saw and every training's steps."""
    import training.recipe

    out = tmp_path_factory.mktemp("auto") / "run"
    seen_sets, real = [], training.recipe.Scorer.__init__

    def spy(self, base, pool, held, guards):
        seen_sets.append({g: set(b.queries) for g, b in guards.items()})
        real(self, base, pool, held, guards)

    training.recipe.Scorer.__init__ = spy
    try:
        args = [
            "train",
            "--recipe",
            "auto",
            "--data",
            str(small_beir),
            "--base",
            str(tiny_model),
            "--out",
            str(out),
        ]
        assert main(args + TRAIN + ["--guard", str(small_beir)]) == 0
    finally:
        training.recipe.Scorer.__init__ = real
    return out, seen_sets


def test_every_candidate_is_listed_by_name_with_its_figures_and_the_one_shipped_is_named(
    auto_run, small_beir
):
    out, _ = auto_run
    record = json.loads((out / "recipe.json").read_text())
    assert set(record["candidates"]) == {"base", "query", "query-merged"}
    assert record["chosen"] in record["candidates"] and record["why"]
    assert record["held_out"]["method"] == "5 folds" and record["held_out"]["queries"] == 40
    for name, candidate in record["candidates"].items():
        assert set(candidate["held_out"]) == {"ndcg@10", "ndcg@10 seen", "ndcg@10 unseen"}
        assert set(candidate["guards"]) == {"scifact-small"}
        if name != "base":
            assert {"change", "p", "resolves", "queries"} <= set(candidate["gain"])
            assert candidate["gain"]["queries"] == 40  # every training query, held out once
    assert set(record["not_tried"]) == {"shared", "shared-merged"}  # costly on a CPU


def test_the_query_towers_length_is_its_best_held_out_step_and_the_shipped_model_trains_for_it(auto_run):
    out, _ = auto_run
    record = json.loads((out / "recipe.json").read_text())
    query = record["candidates"]["query"]
    curve = {float(f): v for f, v in query["curve"].items()}
    assert query["length"] == max(curve, key=lambda f: (curve[f], -f))
    if record["chosen"] in ("query", "query-merged"):
        trained = out / ("model" if record["chosen"] == "query" else "final/model")
        config = json.loads((trained / "train_config.json").read_text())
        assert config["length"] == query["length"] and config["tower"] == "query"


def test_the_guards_report_halves_are_never_used_to_choose(auto_run, small_beir):
    from training.evaluate import guard_sets

    _, seen_sets = auto_run
    selection = guard_sets([str(small_beir)], half="selection")["scifact-small"].queries
    report = guard_sets([str(small_beir)], half="report")["scifact-small"].queries
    assert seen_sets == [{"scifact-small": set(selection)}] and not set(selection) & set(report)


def test_the_choice_is_shown_with_the_model(auto_run):
    out, _ = auto_run
    record = json.loads((out / "recipe.json").read_text())
    card = (out / "model" / "README.md").read_text()
    assert "## How the recipe was chosen (`--recipe auto`)" in card and f"Shipped: {record['label']}" in card
    assert (
        "| candidate | held-out nDCG@10 | seen | unseen | change (p) | unseen Δ (p) | scifact-small Δ (p) |"
        in card
    )
    assert json.loads((out / "model" / "recipe.json").read_text()) == record


def test_watching_held_out_queries_does_not_change_what_training_makes(tiny_model, tmp_path):
    from conftest import toy_pairs

    from training.config import recipe_config
    from training.loop import train

    calls = []

    def watch(step, steps, towers):
        calls.append(step)
        towers.query.encode(["apple river stone"], "query")

    made = {}
    for name, hook in (("plain", None), ("watched", watch)):
        cfg = recipe_config(str(tiny_model), str(tmp_path / name), epochs=1, batch_size=8, anchor="none")
        made[name] = train(cfg, toy_pairs(32), progress=False, watch=hook)
    assert calls == list(range(1, len(calls) + 1)) and calls
    for weights in ("query/model.safetensors",):
        assert (made["plain"] / weights).read_bytes() == (made["watched"] / weights).read_bytes()


def test_an_interrupted_selection_resumes_without_training_a_finished_candidate_or_fold(
    tiny_model, small_beir, tmp_path, monkeypatch
):
    from training import loop

    out = tmp_path / "run"
    args = [
        "train",
        "--recipe",
        "auto",
        "--data",
        str(small_beir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
    ]
    args += TRAIN + ["--guard", str(small_beir)]
    trained, real = [], loop.train

    def train(cfg, *a, **kw):
        trained.append(cfg.out)
        if cfg.out.endswith("fold-2") and len(trained) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third fold trains
        return real(cfg, *a, **kw)

    monkeypatch.setattr(loop, "train", train)
    assert main(args) == 130
    assert (out / "candidates" / "query" / "fold-1" / "model").exists()
    assert main(args) == 2  # an existing run is not overwritten
    trained.clear()
    assert main(args + ["--resume"]) == 0
    folds = [str(out / "candidates" / "query" / f"fold-{i}") for i in range(2, 5)]
    assert trained[:3] == folds  # the finished folds are not trained again
    record = json.loads((out / "recipe.json").read_text())
    trained.clear()
    assert main(args + ["--resume"]) == 0 and trained == []  # a finished selection trains nothing
    assert json.loads((out / "recipe.json").read_text()) == record


def test_a_run_that_keeps_the_base_ships_it_byte_for_byte_and_says_so_first(
    tiny_model, small_beir, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        recipe, "choose", lambda scored, unseen: ("base", "no trained candidate beat the base model")
    )
    out = tmp_path / "run"
    args = ["run", "--data", str(small_beir), "--base", str(tiny_model), "--out", str(out), "--no-sts"]
    assert main(args + TRAIN + ["--guard", str(small_beir)]) == 0
    served = out / "train" / "model"
    assert (served / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert not (served / "towers.json").exists() and not (out / "train" / "final").exists()
    report = (out / "report.md").read_text()
    opening = report.split("## Results")[0]
    assert "did not improve on the base model beyond noise: serving the base model, untrained" in opening
    assert "served: the base model, untrained (exact)" in report
    record = json.loads((out / "train" / "recipe.json").read_text())
    assert record["chosen"] == "base" and "query" in record["candidates"]


def test_recipe_auto_refuses_what_it_chooses_itself(tiny_model, small_beir, tmp_path, capsys):
    base = ["--data", str(small_beir), "--base", str(tiny_model)]
    assert main(["train", "--recipe", "auto", "--tower", "query", *base, "--out", str(tmp_path / "a")]) == 2
    assert "--recipe auto chooses the tower" in capsys.readouterr().err
    assert main(["run", "--recipe", "auto", "--merge", "auto", *base, "--out", str(tmp_path / "b")]) == 2
    assert "drop --merge" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "train").exists()


def test_the_dense_miner_draws_from_the_window_below_the_margin():
    rng = np.random.default_rng(0)
    pool = [f"doc {i}" for i in range(40)]
    vectors = {t: rng.normal(size=8) for t in pool + ["query"]}
    vectors["doc 0"] = vectors["query"] + 0.01  # the positive: the query's nearest

    def embed(texts, kind):
        return np.stack([vectors[t] for t in texts])

    unit = {t: v / np.linalg.norm(v) for t, v in vectors.items()}
    score = {t: float(unit["query"] @ unit[t]) for t in pool}
    ranked = sorted((t for t in pool if t != "doc 0"), key=lambda t: -score[t])
    pair = Pair("query", "doc 0")
    drawn = set()
    for seed in range(30):
        (mined,) = mine_dense_negatives([pair], pool, embed, n=2, window=(3, 10), margin=0.0, seed=seed)
        assert len(mined.negatives) == 2
        drawn |= set(mined.negatives)
    assert drawn == set(ranked[3:10]), (
        "negatives come from ranks 3-9 of the non-positives, all of them in turn"
    )
    (mined,) = mine_dense_negatives(
        [pair], pool, embed, n=7, window=(0, 10), margin=score["doc 0"] - score[ranked[4]]
    )
    assert set(mined.negatives) == set(ranked[4:10]), (
        "within the margin of the positive: taken for a positive"
    )
    given = Pair("query", "doc 0", negatives=["doc 5"])
    assert mine_dense_negatives([given], pool, embed)[0].negatives == ["doc 5"]
