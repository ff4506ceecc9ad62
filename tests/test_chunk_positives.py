"""Long positives trained as the chunks a chunked package serves (training/chunk_positives.py)."""

from common.data import Doc
from training.batches import plan_epoch
from training.chunk_positives import chunk_positives
from training.config import TrainConfig
from training.model_dir import default_base_model
from training.negatives import known_positives
from training.pairs import Pair

FILLER = (
    "The committee reviewed the annual budget for road maintenance in the northern district. "
    "Several councillors asked about the timetable for the new library building. "
)
ANSWER = "Vitamin D deficiency was associated with more hip fractures in adults over seventy."
DOC = Doc("d1", "Municipal report", FILLER * 6 + ANSWER + " " + FILLER * 2)
SHORT = Doc("d2", "Short", "A short abstract that fits in one window.")


def config(mode: str, **kw) -> TrainConfig:
    return TrainConfig(str(default_base_model()), "unused", max_length=48, chunk_positives=mode, **kw)


def pairs():
    return [
        Pair("does low vitamin D raise the risk of hip fracture in old age?", DOC.passage, positive_id="d1"),
        Pair("a short one", SHORT.passage, positive_id="d2"),
    ]


def test_best_chunk_is_the_part_that_answers():
    long, short = chunk_positives(pairs(), [DOC, SHORT], config("best"))
    assert ANSWER in long.positive and long.positive.startswith(
        "Municipal report "
    )  # the title leads each chunk
    assert long.positive != DOC.passage and len(long.positive) < len(DOC.passage) / 3
    assert short.positive == SHORT.passage  # fits in one window: left as it is


def test_all_chunks_become_pairs_that_never_share_a_batch():
    from common.chunking import Chunker

    chunks = Chunker.for_model(default_base_model(), 48).passage_chunks(DOC.title, DOC.text)
    out = chunk_positives(pairs(), [DOC, SHORT], config("all"))
    assert [p.positive for p in out[:-1]] == chunks and len(chunks) > 5
    assert all(p.query == out[0].query and p.positive_id == "d1" for p in out[:-1])
    assert out[-1].positive == SHORT.passage
    assert known_positives(out)[out[0].query] == set(chunks)  # siblings are positives, never negatives
    many = out + [Pair(f"other query {i}", f"other passage {i}") for i in range(30)]
    for batch in plan_epoch(many, 8, seed=1, epoch=0):
        assert len({many[i].query for i in batch}) == len(batch)


def test_pairs_without_a_document_are_chunked_from_their_text():
    text = FILLER * 4 + ANSWER
    [best] = chunk_positives([Pair("vitamin D and hip fractures in the elderly", text)], None, config("best"))
    assert ANSWER in best.positive and not best.positive.startswith("Municipal")
