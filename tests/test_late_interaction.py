"""Late interaction: MaxSim, the inputs Vespa's colbert-embedder
builds, bits, training, export, package, check."""

import shutil

import numpy as np
import pytest
import torch
from conftest import interrupted_at_step, needs_java, toy_pairs

from common.errors import ConfigError
from common.late import LateConfig, TokenStore, input_ids, maxsim
from common.vectors import unpack_bits
from training.models import load_model

LATE = LateConfig(dim=8, query_tokens=8, document_tokens=10)


# ------------------------------------------------------------------ MaxSim, by hand


def test_maxsim_against_a_hand_computation():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d1 = np.array([[0.6, 0.8], [1.0, 0.0]])  # token 1: best 1.0 (second row); token 2: best 0.8 (first row)
    d2 = np.array([[0.0, -1.0]])  # token 1: 0.0; token 2: -1.0
    assert maxsim(q, [d1, d2]) == pytest.approx([1.8, -1.0])
    assert TokenStore([d1, d2]).maxsim_all(q) == pytest.approx([1.8, -1.0])
    assert maxsim(q, [d2]) == pytest.approx([-1.0])


def test_torch_maxsim_ignores_padding_rows():
    from training.late_interaction import maxsim as torch_maxsim

    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])  # the third query row is padding
    d = torch.tensor(
        [
            [[0.6, 0.8], [1.0, 0.0], [0.0, 0.0]],  # a padded document token must not win a max of -1
            [[0.0, -1.0], [0.0, 0.0], [0.0, 0.0]],
        ]
    )
    assert torch_maxsim(q, d)[0].tolist() == pytest.approx([1.8, -1.0])


# ---------------------------------------------------------- inputs, as Vespa's colbert-embedder builds them


def test_a_short_query_is_padded_with_masks_that_do_not_attend():
    ids, attending = input_ids([7, 8], "query", LATE, skip=set())
    assert ids == [101, 1, 7, 8, 102, 103, 103, 103]
    assert attending == 5


def test_a_long_query_is_cut_to_leave_room_for_the_markers():
    ids, attending = input_ids(list(range(1000, 1020)), "query", LATE, skip=set())
    assert ids == [101, 1, 1000, 1001, 1002, 1003, 1004, 102]
    assert attending == len(ids) == LATE.query_tokens


def test_a_document_loses_its_punctuation_then_is_cut_and_never_padded():
    ids, attending = input_ids([5, 1010, 6, 1012, 7, 8, 9, 10, 11, 12], "passage", LATE, skip={1010, 1012})
    assert ids == [101, 2, 5, 6, 7, 8, 9, 10, 11, 102]
    assert attending == len(ids)
    short, _ = input_ids([5], "passage", LATE, skip=set())
    assert short == [101, 2, 5, 102]


def test_the_model_tokenizes_as_vespa_does(late_model):

    model = load_model(late_model)
    ids, attending = model.input_ids("What is a prion, really?", "query")
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["[CLS]", "[unused0]"] and tokens[attending - 1] == "[SEP]"
    assert set(tokens[attending:]) == {"[MASK]"} and len(ids) == 12
    ids, _ = model.input_ids("Prions (misfolded proteins) spread!", "passage")
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["[CLS]", "[unused1]"] and tokens[-1] == "[SEP]"
    assert not {"(", ")", "!"} & set(tokens)


def test_a_vocabulary_without_markers_is_refused():
    with pytest.raises(ConfigError, match=r"\[unused0\]"):
        LateConfig.for_vocabulary({"a": 0}, {"cls": 1, "sep": 2, "mask": 3, "pad": 0}, 128, 32, 128)


# ------------------------------------------------------------------ bits


def test_pack_and_unpack_bits_round_trip_with_the_first_dimension_highest():
    from common.vectors import pack_bits

    v = np.array([[0.5, -0.1, 0.0, 2.0, -3.0, 0.1, 0.2, -0.2, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0]])
    packed = pack_bits(v).view(np.int8)
    assert packed.tolist() == [[np.int8(np.uint8(0b10010110)), np.int8(np.uint8(0b11001011))]]
    assert unpack_bits(packed).tolist() == [(v[0] > 0).astype(float).tolist()]


def test_maxsim_over_0_1_bits_orders_documents_as_over_signs():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 16))
    docs = [np.where(rng.normal(size=(int(n), 16)) > 0, 1.0, 0.0) for n in rng.integers(3, 9, size=20)]
    zero_one = maxsim(q, docs)
    signs = maxsim(q, [2 * d - 1 for d in docs])
    assert signs == pytest.approx(2 * zero_one - q.sum(), rel=1e-5)  # the same order, shifted per query


# ------------------------------------------------------------------ training


def test_gradient_caching_gives_the_same_gradients_for_token_vectors(tiny_model):
    from training.config import recipe_config
    from training.encoder import Encoder
    from training.late_interaction import LateInteraction
    from training.loop import train_step
    from training.losses import make_loss

    cfg = recipe_config(
        str(tiny_model),
        "unused",
        late_interaction=True,
        colbert_dim=16,
        query_tokens=12,
        max_length=32,
        temperature=0.05,
    )
    torch.manual_seed(0)
    model = LateInteraction.from_encoder(Encoder.load(tiny_model, max_length=32), 16, 12, 32).eval()
    grads = []
    for chunk in (0, 3):
        model.zero_grad()
        loss = train_step(model, toy_pairs(8), make_loss(cfg), chunk)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    assert max((a - b).abs().max().item() for a, b in zip(*grads)) < 1e-5
    assert loss > 0


def test_late_interaction_refuses_what_has_no_meaning_for_it(tiny_model):
    from training.config import TrainConfig, recipe_config

    assert recipe_config(str(tiny_model), "x", late_interaction=True).anchor == "none"
    with pytest.raises(ConfigError, match="anchor"):
        TrainConfig(base="b", out="o", late_interaction=True, anchor="mse").check()
    with pytest.raises(ConfigError, match="Matryoshka"):
        recipe_config(str(tiny_model), "x", late_interaction=True, matryoshka="16,8")


def test_training_lowers_the_loss_and_saves_a_model_that_loads_back(late_model):
    import json

    from training.late_interaction import LateInteraction

    log = json.loads((late_model / "train_metrics.json").read_text())["log"]["loss"]
    assert log[-1] < log[0]
    model = load_model(late_model)
    assert isinstance(model, LateInteraction) and model.late.dim == 16
    vectors = model.encode_tokens(["a query", "another, longer query text"], "query")
    assert [v.shape for v in vectors] == [(12, 16), (12, 16)]
    assert np.allclose(np.linalg.norm(vectors[0], axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="per token"):
        model.encode(["x"])


# ------------------------------------------------------------------ export, package, Vespa


def test_the_export_says_colbert_and_matches_pytorch_per_token(late_export):
    from exporter.manifest import Manifest

    m = Manifest.load(late_export)
    assert (m.kind, m.output, m.inputs, m.dimension) == (
        "colbert",
        "contextual",
        ["input_ids", "attention_mask"],
        16,
    )
    assert m.colbert["query_tokens"] == 12 and m.colbert["document_tokens"] == 32
    for kind in ("query", "passage"):
        assert m.parity["fp32"][kind]["max_abs_diff"] <= 1e-5


def test_a_colbert_export_alone_or_beside_and_what_is_refused(late_export, tiny_export, tmp_path):
    from vespa_app.package.build import write_package
    from vespa_app.package.options import AppOptions

    alone = write_package(late_export, tmp_path / "alone")
    schema = (alone / "schemas" / "doc.sd").read_text()
    assert "field colbert type tensor<int8>(dt{}, x[2])" in schema and "field embedding" not in schema
    assert "hugging-face-embedder" not in (alone / "services.xml").read_text()
    assert "rank-profile bm25-colbert" in schema and "rank-profile colbert " not in schema
    beside = write_package(
        tiny_export, tmp_path / "beside", AppOptions(colbert_cells="bfloat16"), colbert_dir=late_export
    )
    schema = (beside / "schemas" / "doc.sd").read_text()
    assert "field colbert type tensor<bfloat16>(dt{}, x[16])" in schema and "field embedding" in schema
    assert "sum(reduce(sum(query(qt) * attribute(colbert), x), max, dt), qt)" in schema
    with pytest.raises(ConfigError, match="single-vector export first"):
        write_package(late_export, tmp_path / "a", colbert_dir=late_export)
    with pytest.raises(ConfigError, match="single-vector|late-interaction"):
        write_package(tiny_export, tmp_path / "b", colbert_dir=tiny_export)
    with pytest.raises(ConfigError, match="chunk"):
        write_package(tiny_export, tmp_path / "c", AppOptions(chunk_tokens=16), colbert_dir=late_export)
    with pytest.raises(ConfigError, match="--binarized"):
        write_package(late_export, tmp_path / "d", AppOptions(binarized=True))


def test_the_embedded_backend_reranks_by_maxsim(late_export, tiny_export, small_beir, tmp_path):
    from common.data import read_beir
    from vespa_app.embedded import EmbeddedIndex
    from vespa_app.profiles import PROFILES

    beir = read_beir(small_beir, "test")
    docs = list(beir.corpus.values())
    index = EmbeddedIndex.build(
        tmp_path / "index", tiny_export, docs, colbert_dir=late_export, progress=False
    )
    index = EmbeddedIndex.open(tmp_path / "index")
    text = next(iter(beir.queries.values()))
    semantic = [h.id for h in index.query(text, "semantic", hits=100)]
    for cells in ("int8", "float"):
        index.colbert_cells = cells
        hits = index.query(text, "colbert-maxsim", hits=100)
        assert sorted(h.id for h in hits) == sorted(semantic)  # the same candidates, re-ordered
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        q = index.colbert_embedder.embed_one(text, "query")
        first = [i for i, d in enumerate(docs) if d.id == hits[0].id][0]
        assert hits[0].score == pytest.approx(float(maxsim(q, [index.doc_tokens(first)])[0]), rel=1e-5)
        # colbert: normalize_linear(closeness) + normalize_linear(MaxSim) over the same candidates, by hand
        fused = {h.id: h.score for h in index.query(text, "colbert", hits=100)}
        close = {
            d.id: c
            for d, c in zip(
                *[
                    [docs[i] for i in index.nearest(index.embed_query(text), 100)[0]],
                    index.nearest(index.embed_query(text), 100)[1],
                ]
            )
        }
        late = {h.id: h.score for h in hits}

        def scaled(values, key):
            return (values[key] - min(values.values())) / (max(values.values()) - min(values.values()))

        assert fused == pytest.approx({d: scaled(close, d) + scaled(late, d) for d in fused})
    for profile in [p.name for p in PROFILES.values() if p.colbert]:
        hits = index.query(text, profile, hits=10)
        assert len({h.id for h in hits}) == 10, profile
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), profile


def test_an_index_without_token_vectors_says_so(tiny_export, small_beir, tmp_path):
    from common.data import read_beir
    from vespa_app.embedded import EmbeddedIndex

    beir = read_beir(small_beir, "test")
    index = EmbeddedIndex.build(tmp_path / "index", tiny_export, list(beir.corpus.values()), progress=False)
    with pytest.raises(ConfigError, match="late-interaction export"):
        index.query("x", "colbert")


@pytest.mark.java
@needs_java()
def test_export_then_app_check_with_vespas_colbert_embedder(late_export, tiny_export, tmp_path):
    from vespa_app.check.java import vespa_model_check
    from vespa_app.check.structure import PackageError, check_package
    from vespa_app.package.build import write_package
    from vespa_app.package.options import AppOptions

    for cells in ("int8", "bfloat16"):
        package = write_package(
            tiny_export, tmp_path / f"app-{cells}", AppOptions(colbert_cells=cells), colbert_dir=late_export
        )
        report = check_package(package)
        c = report.colbert
        assert c["query_min_cosine"] >= 0.9999 and c["document_min_cosine"] >= 0.9999
        assert c["bits_equal_beyond_noise"] >= 0.999
        assert c["config"]["max_query_tokens"] == 12 and c["config"]["attend_to_expansion_tokens"]
        assert all(d["colbert_agree"] >= 0.999 for d in report.container.documents)
        assert {"colbert", "colbert-maxsim", "hybrid-colbert", "bm25-colbert"} <= {
            q["profile"] for q in report.container.queries
        }
        assert {"colbert", "hybrid-colbert"} <= set(report.container.fusion)
        assert all(f["hits"] > 0 and f["max_diff"] <= 1e-6 for f in report.container.fusion.values())
    alone = check_package(write_package(late_export, tmp_path / "alone"))
    assert alone.embedding is None and alone.colbert["query_min_cosine"] >= 0.9999
    assert {q["profile"] for q in alone.container.queries} == {"bm25", "bm25-colbert"}
    assert all(d["colbert_agree"] >= 0.999 for d in alone.container.documents)
    # MaxSim reduced over a dimension the colbert field does not have: Vespa's config model refuses it.
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "app-int8", broken)
    schema = broken / "schemas" / "doc.sd"
    schema.write_text(schema.read_text().replace("max, dt)", "max, tok)"))
    with pytest.raises(PackageError, match="second-phase expression must produce a double"):
        vespa_model_check(broken)


def test_a_late_interaction_run_with_hard_negatives_resumes_bit_for_bit(tiny_model, tmp_path, monkeypatch):
    """Checkpoints hold the head too: a run killed after a checkpoint and resumed ends where an uninterrupted
    run ends, hard negatives (BM25-mined, as passages beside the positives) included."""
    from training.config import recipe_config
    from training.loop import train

    pairs = toy_pairs(24)
    corpus = [p.positive for p in pairs]

    def config(out):
        return recipe_config(
            str(tiny_model),
            str(out),
            late_interaction=True,
            colbert_dim=16,
            query_tokens=12,
            max_length=32,
            epochs=2,
            batch_size=8,
            hard_negatives=1,
            checkpoint_every=2,
        )

    whole = train(config(tmp_path / "whole"), pairs, corpus, progress=False)
    with interrupted_at_step(monkeypatch, 5), pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "part"), pairs, corpus, progress=False)
    resumed = train(config(tmp_path / "part"), pairs, corpus, resume=True, progress=False)
    a, b = load_model(whole).state_dict(), load_model(resumed).state_dict()
    assert "head.weight" in a and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_teacher_term_is_zero_when_maxsim_ranks_the_batch_as_the_teacher_does():
    """KL(softmax(teacher cosines / τ) ‖ softmax(scores / τ)): 0 when the scores are the teacher's cosines,
    positive when they disagree."""
    from training.losses import Batch, MaxSimInfoNCE

    rng = np.random.default_rng(0)
    vectors = {
        "query": rng.normal(size=(4, 8)).astype(np.float32),
        "passage": rng.normal(size=(4, 8)).astype(np.float32),
    }

    class Teacher:
        def encode(self, texts, kind):
            return vectors[kind][: len(texts)]

    pairs = toy_pairs(4)
    loss = MaxSimInfoNCE(0.05, teacher=Teacher(), teacher_weight=1.0)
    unit = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in vectors.items()}
    agreeing = torch.from_numpy(unit["query"] @ unit["passage"].T)
    assert loss._teacher_kl(agreeing, Batch(pairs)).item() == pytest.approx(0.0, abs=1e-6)
    assert loss._teacher_kl(agreeing.flip(1), Batch(pairs)).item() > 0.1
