"""The query tree Vespa's YQL parser builds from our client's request, judged against what the rank profile
means (``check.container`` runs Vespa's code; these rules read its answer)."""

from __future__ import annotations

import re

from vespa_app import profiles
from vespa_app.serving import TARGET_HITS


def check_tree(
    tree: dict,
    profile: profiles.Profile,
    text: str,
    hits: int,
    fields: dict,
    inputs: dict,
    explore_additional: int = 0,
) -> str:
    """'' when the tree is the one the profile means for ``text``, else what is wrong. Every node must be
    either a nearestNeighbor item over a tensor field of the schema, with a query tensor the rank profile
    declares (both as Vespa reads the package, in ``fields`` and ``inputs``), the client's targetHits and the
    package's HNSW exploration (``explore_additional``), approximate; or a
    term from the text, as a word; or a node that joins those. Nothing the user did not ask for."""
    nearest, terms, joins = [], [], []

    def walk(node):
        if node["type"] == "NEAREST_NEIGHBOR":
            nearest.append(node)
        elif "term" in node:
            terms.append(node)
        elif node["type"] != "NULL":
            joins.append(node["type"])
        for child in node.get("children", []):
            walk(child)

    walk(tree)
    want = profile.where.count("nearestNeighbor(")
    if len(nearest) != want:
        return f"{len(nearest)} nearestNeighbor items, the profile has {want}"
    for nn in nearest:
        if not fields.get(nn["index"], "").startswith("tensor"):
            return (
                f"nearestNeighbor over {nn['index']!r}, which is not a tensor field of the schema "
                f"({sorted(fields)})"
            )
        if nn["query_tensor"] not in inputs:
            return (
                f"nearestNeighbor with query({nn['query_tensor']}), which rank profile {profile.name!r} "
                f"does not declare ({sorted(inputs)})"
            )
        if nn["target_hits"] != max(hits, TARGET_HITS):
            return f"targetHits {nn['target_hits']}, the client asked for {max(hits, TARGET_HITS)}"
        if nn.get("explore_additional_hits", 0) != explore_additional:
            return (
                f"hnsw.exploreAdditionalHits {nn.get('explore_additional_hits', 0)}, the package's HNSW "
                f"settings ask for {explore_additional}"
            )
        if not nn.get("approximate", True):
            return "approximate:false: brute force over every document, which a served query never asks"
    user_text = "userQuery()" in profile.where
    if not user_text and terms:
        return f"terms {[t['term'][:40] for t in terms][:5]} in a query that parses no user text"

    # The text must arrive as data: plain words (and numbers) of the text on the default fieldset, joined by
    # weakAnd (AND or PHRASE where Vespa's tokenizer splits one word, as
    # TNF-α), with no operators, fields or wildcards from it.
    def letters(s):
        return re.sub(r"\W", "", s.casefold())

    folded = letters(text)
    stray = [
        t
        for t in terms
        if t["type"] not in ("WORD", "INT") or t.get("index") or letters(t["term"]) not in folded
    ]
    if stray:
        terms = [(t["type"], t.get("index"), t["term"][:40]) for t in stray][:5]
        return f"terms the text did not give as words: {terms}"
    allowed = {"OR", "WEAK_AND", "AND", "PHRASE"}
    if set(joins) - allowed:
        return f"operators the user did not ask for: {sorted(set(joins) - allowed)}"
    if joins.count("OR") > (1 if want and user_text else 0):
        return "an OR that is not the profile's nearestNeighbor OR user text"
    if want and user_text and (tree["type"] != "OR" or tree["children"][0]["type"] != "NEAREST_NEIGHBOR"):
        return f"expected OR(nearestNeighbor, user text), got {tree['type']}"
    return ""


def tree_shape(tree: dict) -> str:
    """The tree in a few words: nearestNeighbor items spelt out, the parsed user text as 'user text'."""

    def has_nn(node):
        return node["type"] == "NEAREST_NEIGHBOR" or any(has_nn(k) for k in node.get("children", []))

    def short(node):
        if node["type"] == "NEAREST_NEIGHBOR":
            return (
                f"nearestNeighbor({node['index']}, {node['query_tensor']}, targetHits {node['target_hits']})"
            )
        if not has_nn(node):
            return "user text"
        return f"{node['type'].lower()}({', '.join(short(k) for k in node.get('children', []))})"

    return short(tree)
