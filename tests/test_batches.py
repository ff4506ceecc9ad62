from conftest import SCIFACT

from training.batches import plan_epoch
from training.pairs import Pair, load_pairs


def test_no_batch_holds_a_false_negative():
    pairs, _ = load_pairs(SCIFACT)
    known = {}
    for p in pairs:
        known.setdefault(p.query, set()).add(p.positive)
    for epoch in range(3):
        batches = plan_epoch(pairs, 32, seed=1, epoch=epoch)
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) >= len(pairs) - 1  # each pair once; a lone leftover may drop
        for batch in batches:
            passages = [pairs[i].positive for i in batch]
            assert len(passages) == len(set(passages)), "duplicate passage in a batch"
            for i in batch:
                others = set(passages) - {pairs[i].positive}
                assert not (known[pairs[i].query] & others), "a known positive serves as a negative"
            assert 2 <= len(batch) <= 32


def test_order_depends_only_on_seed_and_epoch():
    pairs = [Pair(f"q{i}", f"p{i}") for i in range(100)]
    assert plan_epoch(pairs, 8, 3, 0) == plan_epoch(pairs, 8, 3, 0)
    assert plan_epoch(pairs, 8, 3, 0) != plan_epoch(pairs, 8, 3, 1)


def test_shared_positive_is_deferred_not_dropped():
    pairs = [Pair("a", "same"), Pair("b", "same")] + [Pair(q, f"p-{q}") for q in "cdef"]
    batches = plan_epoch(pairs, 3, 0, 0)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4, 5]
    for b in batches:
        assert not {0, 1} <= set(b)


def test_given_negatives_are_kept_and_mined_ones_exclude_positives():
    from training.config import TrainConfig
    from training.loop import prepare_pairs

    pairs = [
        Pair("q1", "p1", ["n1", "p2"]),
        Pair("q1", "p2"),
        Pair("q2", "apple pie recipe"),
        Pair("q3", "banana bread recipe"),
        Pair("q4", "cherry tart recipe"),
    ]
    cfg = TrainConfig(base="-", out="-", hard_negatives=0)
    kept = prepare_pairs(pairs, None, cfg)
    assert kept[0].negatives == ["n1"]  # p2 is a known positive of q1: never its negative
    assert kept[2].negatives == []
    cfg.hard_negatives = 1
    pool = ["apple pie recipe", "apple tart recipe", "apple crumble recipe", "pear"]
    mined = prepare_pairs([Pair("apple recipe", "apple pie recipe")], pool, cfg)
    assert len(mined[0].negatives) == 1 and mined[0].negatives[0] in {
        "apple tart recipe",
        "apple crumble recipe",
    }
