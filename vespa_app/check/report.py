"""What `siamese app check` found: ``CheckReport`` (the package, Vespa's config model, the embedders) holding
``ContainerReport`` (the feed and query path through Vespa's container code)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vespa_app.check.samples import HOSTILE_QUERIES


@dataclass
class CheckReport:
    structural: list[str] = field(default_factory=list)  # what Python checked
    vespa: str = "skipped"  # accepted | rejected | skipped
    vespa_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    embedding: dict | None = None
    colbert: dict | None = None  # per token: Vespa's ColBertEmbedder vs our ONNX Runtime
    container: ContainerReport | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"structure: ok ({', '.join(self.structural)})"]
        if self.vespa == "accepted":
            lines.append("Vespa config model: accepted")
        else:
            lines.append(
                f"Vespa config model: {self.vespa}" + (f" — {self.vespa_reason}" if self.vespa_reason else "")
            )
        lines += [f"  note: {n}" for n in self.not_checked]
        if self.embedding:
            e = self.embedding
            lines.append(
                f"Vespa HuggingFaceEmbedder vs ONNX Runtime ({e['texts']} texts): min cosine "
                f"document {e['document_min_cosine']:.6f}, query {e['query_min_cosine']:.6f}"
            )
        if self.colbert:
            c = self.colbert
            lines.append(
                f"Vespa ColBertEmbedder vs ONNX Runtime ({c['texts']} texts, {c['query_tokens']} query and "
                f"{c['document_tokens']} document token vectors): min cosine per token query "
                f"{c['query_min_cosine']:.6f}, document {c['document_min_cosine']:.6f}; packed bits "
                f"equal for {100 * c['bits_equal']:.3f} % of document tokens "
                f"({100 * c['bits_equal_beyond_noise']:.3f} % with signs of values near 0 aside)"
            )
        if self.container:
            lines += self.container.lines()
        return "\n".join(lines)


@dataclass
class ContainerReport:
    documents: list[dict] = field(default_factory=list)  # {kind, id, cosine}
    queries: list[dict] = field(default_factory=list)  # {profile, text, tree, cosine}
    fusion: dict = field(default_factory=dict)  # profile → {queries, hits, max_diff}
    rejected: list[dict] = field(default_factory=list)  # {what, message}
    responses: int = 0  # rendered by Vespa's JSON renderer and read back by our client unchanged
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = []
        if self.documents and self.documents[0]["cosine"] is not None:
            kinds = ", ".join(d["kind"] for d in self.documents)
            chunks = sum(d["chunks"] or 0 for d in self.documents)
            out.append(
                f"Vespa indexing statements + embedder on {len(self.documents)} corpus documents ({kinds})"
                + (f", {chunks} chunks, labels in feed order" if chunks else "")
                + f": min cosine to ours {min(d['cosine'] or 0.0 for d in self.documents):.6f}"
            )
        colbert = [d for d in self.documents if "colbert_agree" in d]
        if colbert:
            out.append(
                f"Vespa colbert-embedder by the indexing statement on the same documents: "
                f"{sum(d['colbert_tokens'] for d in colbert)} token vectors, agreeing with ours for "
                f"{100 * min(d['colbert_agree'] for d in colbert):.2f} % of tokens or more"
            )
        if self.queries:
            trees = sorted({q["shape"] for q in self.queries})
            cos = [q["cosine"] for q in self.queries if q["cosine"] is not None]
            out.append(
                f"Vespa query stack (query profile, embed, YQL parser) on {len(self.queries)} client "
                f"requests ({len(HOSTILE_QUERIES)} hostile texts each profile): trees {'; '.join(trees)}"
                + (f"; query tensors (per token for query(qt)) min cosine {min(cos):.6f}" if cos else "")
            )
        for name, f in self.fusion.items():
            out.append(
                f"Vespa global phase ({name}) on the embedded backend's first-phase features: {f['queries']} "
                f"queries, {f['hits']} hits, max |Δ score| {f['max_diff']:.2e}"
            )
        if self.responses:
            out.append(
                f"Vespa's JSON renderer on {self.responses} results; our client reads back every hit's id "
                "and score"
                + (
                    ", and its best chunk (closest(embedding) into the chunks summary)"
                    if any(d["chunks"] for d in self.documents)
                    else ""
                )
            )
        if self.rejected:
            out.append(
                f"Vespa rejects what it must ({len(self.rejected)}): "
                + "; ".join(r["what"] for r in self.rejected)
            )
        return [line for line in out if line]
