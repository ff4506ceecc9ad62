"""Evaluation that cannot flatter: seen/unseen split, guard halves, forgetting named in words."""

import pytest

from common.data import Doc
from common.metrics import passage_key, positives_of, report_half, score_split, seen_queries
from siamese.evaluation import generalisation
from training.pairs import Pair


def test_seen_and_unseen_split_on_hand_made_qrels():
    corpus = {d: Doc(d, "", f"text of {d}") for d in ("d1", "d2", "d3", "d4")}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d4": 1}, "q4": {"d3": 1}}
    # d1 trained on by id; d2 by its text only (a pairs file without ids); d3, d4 never
    positives = positives_of([Pair("a", "text of d1", positive_id="d1"), Pair("b", "text of   d2")])
    assert seen_queries(qrels, corpus, positives) == {"q1", "q2"}
    run = {"q1": [("d1", 1.0)], "q2": [("d9", 1.0)], "q3": [("d4", 1.0)], "q4": [("d9", 1.0)]}
    row = score_split(run, qrels, {"q1", "q2"})
    assert row["ndcg@10 seen"] == pytest.approx(0.5) and row["ndcg@10 unseen"] == pytest.approx(0.5)
    assert row["ndcg@10"] == pytest.approx(0.5) and "ndcg@10 seen" not in score_split(run, qrels, None)
    assert passage_key("a  b\n") == passage_key("a b")


def test_the_report_half_is_fixed_and_about_half():
    qids = [str(i) for i in range(1000)]
    half = report_half(qids)
    assert half == report_half(reversed(qids)) and 400 < len(half) < 600


def test_a_guard_that_falls_is_named_in_words():
    rows = [
        {"name": "base", "ndcg@10": 0.60, "ndcg@10 unseen": 0.68, "guard cisi": 0.40, "guard medquad": 0.80},
        {
            "name": "tuned",
            "ndcg@10": 0.70,
            "ndcg@10 unseen": 0.66,
            "guard cisi": 0.39,
            "guard medquad": 0.799,
        },
    ]
    text = "\n".join(generalisation(rows, "base", "tuned"))
    assert "- all queries: +10.0 points" in text and "- unseen queries: -2.0 points" in text
    assert "more than 0.5 points below the base model on cisi." in text and "medquad." not in text
    assert "On unseen queries the fine-tuned model is worse" in text


# ------------------------------------------------------------------ losses as plug-ins


def tiny_config(tiny_model, out, **kw):
    from training.config import TrainConfig

    values = dict(
        base=str(tiny_model),
        out=str(out),
        epochs=2,
        batch_size=8,
        lr=2e-3,
        max_length=32,
        warmup_ratio=0.0,
        seed=3,
        anchor="none",
        anchor_batch=16,
        temperature=0.05,
    )
    return TrainConfig(**(values | kw))


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_the_anchor_term_is_zero_when_student_equals_teacher(kind):
    import torch

    from training.losses import Anchored, Batch, InfoNCE

    torch.manual_seed(0)
    teacher = torch.randn(10, 16)
    q, p = torch.randn(4, 16), torch.randn(4, 16)
    loss = Anchored(InfoNCE(0.05), kind, [f"t{i}" for i in range(10)], teacher, weight=10.0, per_step=5)
    texts, ids = loss.general_texts(step=3)
    assert texts == [f"t{i}" for i in ids] and loss.general_texts(step=3) == (
        texts,
        ids,
    )  # drawn from the step
    same = loss(q, p, Batch([], teacher[ids].clone(), ids))
    assert same.item() == pytest.approx(InfoNCE(0.05)(q, p, Batch([])).item(), abs=1e-5)
    moved = loss(q, p, Batch([], teacher[ids] + torch.randn(5, 16), ids))
    assert moved.item() > same.item() + 0.01


@pytest.mark.parametrize(
    "loss, anchor",
    [("infonce", "none"), ("symmetric-infonce", "none"), ("infonce", "mse"), ("infonce", "kl")],
)
def test_grad_cache_gives_the_same_gradients_with_every_loss(tmp_path, loss, anchor):
    import torch
    from conftest import build_tiny_model, toy_pairs

    from training.encoder import Encoder
    from training.loop import train_step
    from training.losses import make_loss
    from training.steps import anchor_targets

    model_dir = build_tiny_model(tmp_path / "nodrop", dropout=0.0)
    cfg = tiny_config(model_dir, tmp_path, loss=loss, anchor=anchor, anchor_batch=7)
    loss_fn = make_loss(cfg, *anchor_targets(cfg)) if anchor != "none" else make_loss(cfg)
    pairs, grads = toy_pairs(8), []
    for chunk in (0, 3):
        encoder = Encoder.load(model_dir, max_length=32).train()
        value = train_step(encoder, pairs, loss_fn, grad_cache_chunk=chunk, step=5)
        grads.append(
            (value, torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None]))
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    # chunks pad differently, so embeddings differ by float rounding (~1e-7 relative); the KL term divides
    # similarities by τ = 0.05 before a softmax, which magnifies that in a few gradients, by an amount that
    # depends on the CPU's kernels (1.55e-5 absolute on one machine). So the bound is relative to the
    # gradient's scale: a wrong chunk gradient is off by its own size, rounding by 1e-5 of it at most.
    whole, cached = grads[0][1].double(), grads[1][1].double()
    scale = whole.abs().max().item()
    assert (whole - cached).abs().max().item() <= 1e-4 * scale
    assert (whole - cached).norm().item() <= 1e-5 * whole.norm().item()


def test_the_anchor_keeps_general_text_where_the_base_model_put_it(tiny_model, tmp_path):
    import numpy as np
    from conftest import toy_pairs

    from common.bundled import STSB_TEST
    from common.data import read_sts_csv
    from training.encoder import Encoder
    from training.loop import train

    general = [a for a, _, _ in read_sts_csv(STSB_TEST)[:200]]  # held out: the anchor trains on STS-B train
    base = Encoder.load(tiny_model, max_length=32).encode(general, "query")

    def drift(model_dir):
        moved = Encoder.load(model_dir).encode(general, "query")
        return float(np.mean(np.sum(moved * base, axis=1)))

    free = train(tiny_config(tiny_model, tmp_path / "free"), toy_pairs(), progress=False)
    anchored = train(
        tiny_config(tiny_model, tmp_path / "anchored", anchor="mse", anchor_weight=10.0),
        toy_pairs(),
        progress=False,
    )
    assert drift(anchored) > drift(free) + 0.05, (drift(anchored), drift(free))


# ------------------------------------------------------------------ weight merging


def test_a_merge_with_alpha_0_is_the_base_and_1_the_tuned_model_bit_for_bit(
    tiny_model, tiny_trained, tmp_path
):
    import torch

    from training.encoder import Encoder
    from training.merge import merge

    base = Encoder.load(tiny_model, max_length=48).transformer.state_dict()
    tuned = Encoder.load(tiny_trained)
    for alpha, expected in ((0.0, base), (1.0, tuned.transformer.state_dict())):
        merged = Encoder.load(
            merge(tiny_model, tiny_trained, tmp_path / f"m{alpha}", alpha, say=lambda _: None)
        )
        for name, tensor in merged.transformer.state_dict().items():
            assert torch.equal(tensor, expected[name]), (alpha, name)
        assert merged.config == tuned.config  # prefixes, pooling and window are the tuned model's
    half = Encoder.load(tmp_path / "m0.0").transformer.state_dict()
    middle = Encoder.load(merge(tiny_model, tiny_trained, tmp_path / "m", 0.5, say=lambda _: None))
    name = "encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(
        middle.transformer.state_dict()[name], (half[name] + tuned.transformer.state_dict()[name]) / 2
    )


def test_a_merged_model_is_an_ordinary_model_directory(tiny_model, tiny_trained, tmp_path):
    import json

    from exporter.manifest import Manifest
    from siamese.cli import main
    from training.model_dir import read_positives

    assert (
        main(["merge", str(tiny_model), str(tiny_trained), str(tmp_path / "merged"), "--alpha", "0.3"]) == 0
    )
    merged = tmp_path / "merged"
    assert json.loads((merged / "merge.json").read_text())["alpha"] == 0.3
    assert read_positives(merged) == read_positives(tiny_trained)  # seen/unseen still known
    assert main(["export", str(merged), str(tmp_path / "export")]) == 0
    assert Manifest.load(tmp_path / "export").merge["alpha"] == 0.3


def test_auto_alpha_chooses_on_the_selection_half_within_the_bound(
    tiny_model, tiny_trained, small_beir, tmp_path
):
    from training.evaluate import guard_sets
    from training.merge import BOUND, merge

    out = merge(
        tiny_model, tiny_trained, tmp_path / "auto", "auto", guards=[str(small_beir)], say=lambda _: None
    )
    import json

    record = json.loads((out / "merge.json").read_text())
    choice = record["choice"]
    assert choice["method"] == "auto" and choice["guards"] == {
        "scifact-small": len(guard_sets([str(small_beir)], half="selection")["scifact-small"].queries)
    }
    tried = {float(a): drops for a, drops in choice["tried"].items()}
    assert (
        list(tried) == [1.0, 0.75, 0.5, 0.25][: len(tried)]
    )  # from the top, stopping at the first that passes
    chosen = record["alpha"]
    assert chosen == 0.0 or all(d <= BOUND for d in tried[chosen].values())
    assert all(any(d > BOUND for d in drops.values()) for a, drops in tried.items() if a > chosen)


def test_merging_another_architecture_is_refused(tiny_model, tmp_path):
    from conftest import build_tiny_model
    from transformers import BertConfig, BertModel

    from training.merge import merge

    other = tmp_path / "other"
    build_tiny_model(other)
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    ).save_pretrained(other)
    with pytest.raises(Exception, match="not the same architecture"):
        merge(tiny_model, other, tmp_path / "m", 0.5, say=lambda _: None)


# ------------------------------------------------------------------ pairs from the corpus itself


def scifact_docs(n=300):
    from common.bundled import SCIFACT
    from common.data import read_corpus

    return list(read_corpus(SCIFACT / "corpus.jsonl.gz").values())[:n]


@pytest.mark.parametrize("kind", ["title", "ict", "crop"])
def test_corpus_pairs_never_pair_a_text_with_itself(kind):
    import random

    from training.corpus_pairs import MAKERS

    pairs = MAKERS[kind](scifact_docs(), random.Random(0))
    assert len(pairs) > 200 and all(p.source == kind for p in pairs)
    assert all(p.query.strip() and p.positive.strip() and p.query != p.positive for p in pairs)
    if kind == "ict":  # the sentence is removed from its passage
        assert all(p.query not in p.positive for p in pairs)


def test_pair_makers_on_bad_input():
    import random

    from common.data import Doc
    from training.corpus_pairs import corpus_pairs, crop_pairs, ict_pairs, title_pairs

    docs = [
        Doc("1", "", "No title here but a body long enough to count as a passage of text."),  # empty title
        Doc("2", "A title", "One sentence only, long enough to be a passage on its own."),  # one sentence
        Doc("3", "Same text", "Same text"),  # title equal to body
        Doc("4", "", "short"),
        Doc("5", "", ""),
    ]
    rng = random.Random(0)
    assert [p.query for p in title_pairs(docs, rng)] == ["A title"]
    assert ict_pairs(docs, rng) == []
    assert all(p.query != p.positive for p in crop_pairs(docs, rng))
    assert corpus_pairs([], ["title", "ict", "crop"], 10) == []


def test_batches_keep_to_one_source(tiny_model, tmp_path):
    from training.batches import plan_epoch
    from training.config import TrainConfig
    from training.loop import prepare_pairs
    from training.pairs import Pair

    labelled = [Pair(f"question {i}", f"answer {i} " * 3, positive_id=str(i)) for i in range(40)]
    cfg = TrainConfig(base="-", out="-", corpus_pairs="title,crop", corpus_pairs_ratio=1.0)
    pairs = prepare_pairs(labelled, scifact_docs(100), cfg)
    assert len(pairs) == 80 and {p.source for p in pairs} == {"labelled", "title", "crop"}
    batches = plan_epoch(pairs, 8, seed=1, epoch=0)
    assert all(len({pairs[i].source for i in b}) == 1 for b in batches)
    assert len({pairs[b[0]].source for b in batches[:6]}) > 1  # sources take turns
    with pytest.raises(Exception, match="needs a corpus"):
        prepare_pairs(labelled, None, cfg)


def test_general_pairs_are_mixed_in_as_their_own_source_without_repeats():
    from common.bundled import STSB_TRAIN
    from training.batches import plan_epoch
    from training.config import TrainConfig
    from training.loop import prepare_pairs
    from training.pairs import Pair

    labelled = [Pair(f"question {i}", f"answer {i} " * 3, positive_id=str(i)) for i in range(40)]
    labelled.append(Pair("A plane is taking off.", "An air plane is taking off."))  # also in STS-B train
    cfg = TrainConfig(base="-", out="-", general_pairs=str(STSB_TRAIN), general_pairs_ratio=0.5)
    pairs = prepare_pairs(labelled, None, cfg)
    general = [p for p in pairs if p.source == "general"]
    assert len(general) == 20 and len(pairs) == 61
    assert not {t for p in general for t in (p.query, p.positive)} & {"A plane is taking off."}
    assert len({(p.query, p.positive) for p in general}) == 20
    assert all(len({pairs[i].source for i in b}) == 1 for b in plan_epoch(pairs, 8, seed=2, epoch=1))


def test_siamese_eval_reports_seen_unseen_and_guards(tiny_trained, small_beir, capsys):
    from siamese.cli import main

    assert (
        main(
            [
                "eval",
                "--models",
                str(tiny_trained),
                "--data",
                str(small_beir),
                "--train-data",
                str(small_beir),
                "--guard",
                str(small_beir),
                "--hybrid",
                "--max-length",
                "48",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| ndcg@10 seen | ndcg@10 unseen |" in out and "| guard scifact-small |" in out
    assert (
        "+ BM25 (RRF)" in out and "seen: queries with a relevant document that was a training positive" in out
    )
