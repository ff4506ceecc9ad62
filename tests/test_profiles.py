"""One definition per rank profile: every profile a package has exists on the embedded backend and in the
Vespa client, and each declares (and so embeds) exactly the query inputs it uses."""

import re

import pytest
from test_vespa_package import build

from vespa_app import profiles
from vespa_app.client.query import query_body
from vespa_app.package.options import AppOptions


def rank_profiles(sd: str) -> dict[str, str]:
    """Rank profile name → its text in a schema."""
    starts = [(m.group(1), m.start()) for m in re.finditer(r"^    rank-profile ([\w-]+)", sd, re.M)]
    return {
        name: sd[start : (starts[i + 1][1] if i + 1 < len(starts) else len(sd))]
        for i, (name, start) in enumerate(starts)
    }


def declared_inputs(name: str, in_package: dict[str, str]) -> set[str]:
    text = in_package[name]
    declared = set(re.findall(r"query\((\w+)\) tensor", text))
    parents = re.search(r"inherits ([\w, -]+) \{", text)
    for parent in parents.group(1).split(", ") if parents else []:
        declared |= declared_inputs(parent, in_package)
    return declared


@pytest.mark.parametrize("binarized", [False, True])
def test_every_package_profile_has_an_embedded_twin_and_a_client_query(tmp_path, binarized):
    sd = (build(tmp_path, AppOptions(binarized=binarized)) / "schemas" / "doc.sd").read_text()
    in_package = rank_profiles(sd)
    assert set(in_package) == {p.name for p in profiles.in_package(binarized)}
    assert ("binary" in in_package) == binarized
    for name in in_package:
        profile = profiles.PROFILES[name]
        assert callable(profile.embedded) or (profile.fusion and profile.fused)
        body = query_body("a question", name, hits=5)
        assert body["ranking"] == name and body["query"] == "a question" and body["hits"] == 5
        sent = set(re.findall(r"input\.query\((\w+)\)", " ".join(body)))
        # what the client sends is what the profile declares, itself or through the profiles it inherits
        assert sent == declared_inputs(name, in_package), name
        # and the YQL asks nearestNeighbor for exactly those tensors
        assert set(re.findall(r"nearestNeighbor\(\w+, (\w+)\)", body["yql"])) <= sent


def test_a_bm25_query_embeds_nothing():
    body = query_body("a question", "bm25")
    assert not any(k.startswith("input.") for k in body)
    assert "nearestNeighbor" not in body["yql"]
    assert not profiles.get("bm25").embeds_query and profiles.get("hybrid-linear").embeds_query


def test_unknown_profile_is_a_user_error():
    from common.errors import UserError

    with pytest.raises(UserError, match="choose one of bm25, semantic, hybrid, hybrid-linear, binary"):
        query_body("q", "nope")
