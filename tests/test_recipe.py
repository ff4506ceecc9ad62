"""`--recipe auto` (training/recipe.py) and the dense miner (training/negatives.py): the dev slice is training
queries only, the guards' report halves are never used to choose, a candidate that forgets is not chosen, and
an interrupted selection resumes without training a finished candidate again."""

import json
import random

import numpy as np
import pytest

from common.data import read_beir
from common.errors import ConfigError
from siamese.cli import main
from training import recipe
from training.evaluate import guard_sets
from training.negatives import mine_dense_negatives
from training.pairs import Pair


def test_auto_is_the_default_where_a_gpu_trains_unless_the_user_chose(monkeypatch):
    import common.device

    monkeypatch.setattr(common.device, "best", lambda: "cuda")
    assert recipe.resolve(None)[0] == "auto"
    assert recipe.resolve(None, "--tower was given") == ("fixed", "--tower was given")
    assert recipe.resolve("fixed")[0] == "fixed"
    monkeypatch.setattr(common.device, "best", lambda: "cpu")
    recipe_name, why = recipe.resolve(None)
    assert recipe_name == "fixed" and "--recipe auto" in why


def test_the_dev_slice_is_whole_queries_chosen_the_same_on_any_order():
    pairs = [Pair(f"query {q}", f"passage {q} {k}") for q in range(200) for k in range(1 + q % 3)]
    kept, dev = recipe.dev_split(pairs)
    dev_queries = {p.query for p in dev}
    assert not dev_queries & {p.query for p in kept}, "a query on both sides"
    assert len(kept) + len(dev) == len(pairs) and len(dev_queries) == 50  # 15 % is 30: at least 50 of 200
    shuffled = random.Random(1).sample(pairs, len(pairs))
    assert {p.query for p in recipe.dev_split(shuffled)[1]} == dev_queries
    assert len({p.query for p in recipe.dev_split(pairs * 1)[1]}) == 50
    many = [Pair(f"q{i}", f"p{i}") for i in range(1000)]
    assert len(recipe.dev_split(many)[1]) == 150  # 15 % where that is more than 50
    few = [Pair(f"q{i}", f"p{i}") for i in range(60)]
    assert len(recipe.dev_split(few)[1]) == 20  # the rest keeps two thirds
    with pytest.raises(ConfigError, match="too few"):
        recipe.dev_split(few[:20])


def test_dev_queries_whose_positive_a_training_query_has_are_seen():
    kept = [Pair("a", "doc one"), Pair("b", "doc two")]
    dev = [Pair("c", "doc one"), Pair("d", "doc three")]
    beir, seen = recipe.dev_set(dev, kept, None)
    assert len(beir.corpus) == 3 and len(beir.queries) == 2
    assert {beir.queries[q] for q in seen} == {"c"}


def _scored(dev: dict, drops: dict) -> dict:
    return {
        name: {"dev": {"ndcg@10": dev[name]}, "guards": {"cisi": -drops[name], "medquad": 0.0}}
        for name in dev
    }


def test_a_candidate_that_forgets_is_not_chosen():
    winner, why = recipe.choose(
        _scored(
            {"query": 0.60, "shared": 0.70, "shared-merged": 0.66},
            {"query": 0.0, "shared": 0.012, "shared-merged": 0.004},
        )
    )
    assert winner == "shared-merged"
    assert "fell 1.2 points" in why and "shared weights (anchored)" in why
    winner, why = recipe.choose(_scored({"query": 0.60, "shared": 0.70}, {"query": 0.0, "shared": 0.005}))
    assert winner == "shared" and "scored best" in why  # at the bound is within it
    winner, why = recipe.choose(_scored({"query": 0.60, "shared": 0.70}, {"query": 0.02, "shared": 0.01}))
    assert winner == "shared" and "fell least" in why  # none keeps the guards: the one that forgets least
    winner, _ = recipe.choose(_scored({"query": 0.65, "shared": 0.65}, {"query": 0.0, "shared": 0.0}))
    assert winner == "query"  # a tie goes to the cheaper candidate


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


@pytest.fixture(scope="module")
def auto_run(tiny_model, small_beir, tmp_path_factory):
    """`siamese train --recipe auto` on the small SciFact slice, the slice itself as the guard; records which
    guard queries every scoring saw."""
    import training.merge
    import training.recipe

    out = tmp_path_factory.mktemp("auto") / "run"
    scored_on, real = [], training.merge.guard_scores

    def spy(model, guards, cache=None):
        scored_on.append({g: set(b.queries) for g, b in guards.items()})
        return real(model, guards, cache=cache)

    training.recipe.guard_scores = training.merge.guard_scores = spy  # the candidates' scores and merge's α
    try:
        assert (
            main(
                [
                    "train",
                    "--recipe",
                    "auto",
                    "--data",
                    str(small_beir),
                    "--base",
                    str(tiny_model),
                    "--out",
                    str(out),
                    "--epochs",
                    "1",
                    "--no-guards",
                    "--guard",
                    str(small_beir),
                ]
            )
            == 0
        )
    finally:
        training.recipe.guard_scores = training.merge.guard_scores = real
    return out, scored_on


def test_the_dev_slice_holds_training_queries_only(auto_run, small_beir):
    out, _ = auto_run
    record = json.loads((out / "recipe.json").read_text())
    dev = set(record["dev"]["query_ids"])
    train, test = read_beir(small_beir, "train"), read_beir(small_beir, "test")
    assert dev and dev <= set(train.qrels) and not dev & set(test.qrels)
    assert record["dev"]["queries"] == len(dev) and record["train_queries"] == len(train.qrels) - len(dev)
    kept_documents = {d for q in set(train.qrels) - dev for d in train.qrels[q]}
    for tower in ("query", "shared"):  # each candidate trained on the kept queries' pairs alone
        positives = json.loads((out / "candidates" / tower / "model" / "training_positives.json").read_text())
        assert set(positives["ids"]) == kept_documents
    for candidate in record["candidates"].values():
        assert set(candidate["dev"]) == {"ndcg@10", "ndcg@10 seen", "ndcg@10 unseen"}


def test_the_guards_report_halves_are_never_used_to_choose(auto_run, small_beir):
    _, scored_on = auto_run
    selection = guard_sets([str(small_beir)], half="selection")["scifact-small"].queries
    report = guard_sets([str(small_beir)], half="report")["scifact-small"].queries
    assert len(scored_on) >= 4  # the base, each candidate trained, and merge's α at least once
    assert all(seen == {"scifact-small": set(selection)} for seen in scored_on)
    assert not set(selection) & set(report)


def test_the_choice_is_shown_with_the_model(auto_run):
    out, _ = auto_run
    record = json.loads((out / "recipe.json").read_text())
    final = out / ("merged" if record["merged"] else "model")
    card = (final / "README.md").read_text()
    assert "## How the recipe was chosen (`--recipe auto`)" in card and f"Chosen: {record['label']}" in card
    assert "| candidate | dev nDCG@10 all | seen | unseen | scifact-small Δ | training s |" in card
    assert json.loads((final / "recipe.json").read_text()) == record
    config = json.loads((out / "model" / "train_config.json").read_text())
    assert config["tower"] == record["tower"]  # the winner, trained again on every pair
    assert (
        config["pairs_fingerprint"]
        != json.loads((out / "candidates" / record["tower"] / "model" / "train_config.json").read_text())[
            "pairs_fingerprint"
        ]
    )


def test_an_interrupted_selection_resumes_without_training_a_finished_candidate(
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
        "--epochs",
        "1",
        "--no-guards",
        "--guard",
        str(small_beir),
    ]
    trained, real = [], loop.train

    def train(cfg, *a, **kw):
        trained.append(cfg.out)
        if cfg.out.endswith("candidates/shared") and len(trained) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second candidate trains
        return real(cfg, *a, **kw)

    monkeypatch.setattr(loop, "train", train)
    assert main(args) == 130
    assert (out / "candidates" / "query" / "score.json").exists()
    assert main(args) == 2  # an existing run is not overwritten
    trained.clear()
    assert main(args + ["--resume"]) == 0
    assert trained == [str(out / "candidates" / "shared"), str(out)]  # the query tower's candidate not again
    record = json.loads((out / "recipe.json").read_text())
    assert set(record["candidates"]) == {"query", "shared", "shared-merged"}
    trained.clear()
    assert main(args + ["--resume"]) == 0 and trained == [
        str(out)
    ]  # finished: nothing retrained (resume returns)


def test_recipe_auto_refuses_what_it_chooses_itself(tiny_model, small_beir, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--recipe",
                "auto",
                "--tower",
                "query",
                "--data",
                str(small_beir),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "--recipe auto chooses the tower" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--recipe",
                "auto",
                "--merge",
                "auto",
                "--data",
                str(small_beir),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "drop --merge" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "train").exists()


def test_a_run_with_recipe_auto_reports_the_candidates_and_serves_the_winner(
    tiny_model, small_beir, tmp_path
):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--recipe",
                "auto",
                "--data",
                str(small_beir),
                "--base",
                str(tiny_model),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--no-sts",
                "--no-guards",
                "--guard",
                str(small_beir),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    record = json.loads((out / "train" / "recipe.json").read_text())
    assert results["record"]["recipe"]["chosen"] == record["chosen"]
    report = (out / "report.md").read_text()
    assert "## Recipe" in report and "| candidate | dev nDCG@10 all |" in report and record["why"] in report
    assert (out / "merged").exists() == record["merged"]
