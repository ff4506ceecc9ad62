"""Query through the Vespa query API: the request for a rank profile, the hits of its answer, and
``VespaBackend``, the search backend interface over a running Vespa."""

from __future__ import annotations

import json
import re
import sys

import httpx

from vespa_app import profiles
from vespa_app.backend import Hit
from vespa_app.client.feed import FeedResult, feed
from vespa_app.client.http import VespaError, VespaUnreachable, base_url, ensure_reachable
from vespa_app.serving import TARGET_HITS

QUERY_TIMEOUT_S = 4.0  # the whole answer must come within 5 s: connect, send, Vespa search, read


def query_body(
    text: str,
    profile: str = "semantic",
    hits: int = 10,
    target_hits: int = TARGET_HITS,
    chunked: bool = False,
    explore_additional: int = 0,
    exact: bool = False,
) -> dict:
    """The query API request for ``text`` with a rank profile of ``profiles.PROFILES``; ``chunked``: for a
    chunked package, whose hits then carry their best chunk; ``explore_additional``: the package's HNSW
    exploration beyond targetHits (``AppPackage.hnsw``); ``exact``: nearestNeighbor by brute force."""
    params = profiles.get(profile).query_params(text, hits, target_hits, chunked, explore_additional, exact)
    return params | {"timeout": f"{QUERY_TIMEOUT_S:.0f}s"}


def hits_from_response(body: dict) -> list[Hit]:
    """The hits of a query API response. In a chunked package each hit also carries its best chunk: the one
    element its ``chunks`` summary holds (the package selects it by ``closest(embedding)``), or, from a
    package whose summary holds them all, the element at the label ``closest(embedding)`` names."""
    hits = []
    for rank, h in enumerate(body["root"].get("children", []), 1):
        fields = h.get("fields", {}) if isinstance(h, dict) else {}
        doc_id = fields.get("id", h.get("id") if isinstance(h, dict) else None)
        try:
            relevance = float(h["relevance"])
        except (KeyError, TypeError, ValueError):
            relevance = None
        if doc_id is None or relevance is None:
            missing = " and no ".join(w for w, v in (("id", doc_id), ("relevance", relevance)) if v is None)
            raise VespaError(
                f"Vespa's answer is malformed: hit {rank} has no {missing} ({json.dumps(h)[:200]}); "
                "is the query going to a Vespa container?"
            )
        hits.append(Hit(str(doc_id), relevance, str(fields.get("title", "")), _best_chunk(fields)))
    return hits


def _best_chunk(fields: dict) -> str:
    chunks = fields.get("chunks")
    closest = (fields.get("matchfeatures") or {}).get(profiles.BEST_CHUNK)
    if not chunks or not isinstance(closest, dict):
        return ""
    if len(chunks) == 1:
        return chunks[0]
    # Tensor JSON: short form {"type", "cells": {label: value}}, long form cells [{"address", "value"}], or
    # short-value {label: value} (format.tensors); the nearest chunk is the cell of value 1.
    cells = closest.get("cells", closest)
    if isinstance(cells, list):
        cells = {c["address"]["chunk"]: c["value"] for c in cells}
    labels = [label for label, value in cells.items() if value]
    if not labels or not labels[0].isdigit() or int(labels[0]) >= len(chunks):
        return ""
    return chunks[int(labels[0])]


class VespaBackend:
    """The search backend interface over a running Vespa: the query API over plain HTTP, with a hard
    5-second budget per query so a dead or wrong endpoint is reported at once, not after retries."""

    def __init__(self, url: str, chunked: bool = False, explore_additional: int = 0):
        """``chunked``: the deployed package is chunked (``AppPackage.chunked``): ask for each hit's best
        chunk; ``explore_additional``: its HNSW exploration beyond targetHits (``AppPackage.hnsw``)."""
        self.url, self.chunked, self.explore_additional = base_url(url), chunked, explore_additional
        ensure_reachable(self.url)
        self.client = httpx.Client(timeout=httpx.Timeout(QUERY_TIMEOUT_S))

    def query(self, text: str, profile: str = "semantic", hits: int = 10, exact: bool = False) -> list[Hit]:
        endpoint = f"{self.url}/search/"
        body = query_body(
            text, profile, hits, chunked=self.chunked, explore_additional=self.explore_additional, exact=exact
        )
        try:
            r = self.client.post(endpoint, json=body)
        except httpx.TimeoutException:
            raise VespaUnreachable(
                f"query to {endpoint} failed: no answer within {QUERY_TIMEOUT_S:.0f} s"
            ) from None
        except httpx.HTTPError as e:
            raise VespaUnreachable(
                f"query to {endpoint} failed: {e.__class__.__name__}: {str(e)[:200]}. "
                "Is this the container's query endpoint (port 8080)?"
            ) from None
        try:
            body = r.json()
        except ValueError:
            raise VespaUnreachable(
                f"query to {endpoint} failed: HTTP {r.status_code} with a body that is not "
                f"JSON ({r.text[:120]!r}); this is not a Vespa query endpoint"
            ) from None
        if r.status_code != 200 or "root" not in body:
            errors = body.get("root", {}).get("errors") or body
            raise VespaUnreachable(
                f"query to {endpoint} failed: HTTP {r.status_code}: {json.dumps(errors)[:500]}"
            )
        return hits_from_response(body)

    def feed(self, docs, ledger="feed-ledger.jsonl", failed_file="feed-failed.jsonl", **kw) -> FeedResult:
        return feed(self.url, docs, ledger, failed_file, **kw)


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``): a title from Vespa or from the user's corpus
    must not move the cursor, retitle the terminal or hide what was printed before it."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def print_hits(hits: list[Hit], out=None) -> None:
    out = out or sys.stdout
    for rank, h in enumerate(hits, 1):
        print(f"{rank:3d}. {h.score:9.4f}  {printable(h.id):>12}  {printable(h.title[:90])}", file=out)
        if h.passage:  # chunked: the best chunk, the part that matched
            print(f"{'':29}{printable(h.passage[:160])}", file=out)
