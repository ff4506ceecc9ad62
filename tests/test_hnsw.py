"""HNSW settings chosen for the corpus size, given ones in their place, refused where HNSW cannot build."""

import pytest

from common.errors import ConfigError
from vespa_app.hnsw import CHOICES, HnswSettings, for_corpus
from vespa_app.package.options import AppOptions


def test_each_size_gets_its_rows_settings_and_past_the_last_the_last_said_plainly():
    for up_to, links, insert, extra in CHOICES:
        chosen = for_corpus(up_to)
        assert (chosen.max_links, chosen.explore_at_insert, chosen.explore_additional) == (
            links,
            insert,
            extra,
        )
        assert f"up to {up_to:,}" in chosen.why
    beyond = for_corpus(5 * CHOICES[-1][0])
    assert beyond.max_links == CHOICES[-1][1] and "measure served recall" in beyond.why
    # more vectors never get fewer links or less exploration
    rows = [for_corpus(n) for n in (1, 50_000, 500_000, 2_000_000)]
    assert all(
        a.max_links <= b.max_links and a.explored(100) <= b.explored(100) for a, b in zip(rows, rows[1:])
    )


def test_given_settings_replace_the_chosen_ones_and_are_named():
    given = for_corpus(10_000, max_links=40, explore_additional=7)
    assert (given.max_links, given.explore_at_insert, given.explore_additional) == (40, CHOICES[0][2], 7)
    assert "given: max_links 40, explore_additional 7" in given.why
    assert given.explored(100) == 107


@pytest.mark.parametrize("links, insert, extra", [(1, 200, 0), (32, 16, 0), (16, 200, -1)])
def test_settings_hnsw_cannot_build_with_are_refused(links, insert, extra):
    with pytest.raises(ConfigError, match="HNSW needs"):
        HnswSettings(links, insert, extra)
    with pytest.raises(ConfigError, match="HNSW needs"):
        AppOptions(
            max_links_per_node=links, neighbors_to_explore_at_insert=insert, explore_additional=extra
        ).check()


def test_a_record_written_before_the_settings_reads_as_what_it_was_built_with():
    old = HnswSettings.from_record(None)
    assert (old.max_links, old.explore_at_insert, old.explore_additional) == (16, 200, 0)
    assert HnswSettings.from_record(for_corpus(123).record()) == for_corpus(123)
