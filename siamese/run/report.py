"""report.md and plot.png for `siamese run`: every gain beside its unseen-query and guard figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from common.metrics import GUARD, format_table
from siamese.evaluation import against_reference, generalisation
from siamese.run.stages import RunRecord
from training.model_card import recipe_lines
from vespa_app.hnsw import RECALL_GOAL

COLUMNS = (("ndcg@10", "all"), ("ndcg@10 seen", "seen"), ("ndcg@10 unseen", "unseen"))


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """An exponential moving average (TensorBoard's smoothing),
    debiased so the first steps are not pulled to 0."""
    out, mean = [], 0.0
    for i, v in enumerate(values, 1):
        mean = weight * mean + (1 - weight) * v
        out.append(mean / (1 - weight**i))
    return out


def first(rows: list[dict], kind: str, of: str | None = None) -> dict | None:
    """The first row of a kind (``siamese.evaluation.KINDS``; fused rows: of which kind)."""
    return next((r for r in rows if r.get("kind") == kind and (of is None or r.get("of") == of)), None)


def ours(rows: list[dict]) -> list[dict]:
    """What the left panel draws as stems: the fine-tuned model, fused with BM25, served hybrid-linear, and
    the base fused with BM25 (what a user gets without training)."""
    served = next(
        (r for r in rows if r.get("kind") == "served" and r.get("profile") == "hybrid-linear"), None
    )
    return [
        r
        for r in (first(rows, "tuned"), first(rows, "fused", "tuned"), served, first(rows, "fused", "base"))
        if r
    ]


def plot(rows: list[dict], train_log: dict, path) -> Path:
    """Left: each system's change in nDCG@10 against the base model as deployed (the report's first base row),
    per column (all, seen, unseen queries, each guard; STS-B's Spearman), the axis on the range of
    the changes; BM25 and any reference as marks. Right: the training curve, smoothed, with the learning rate
    and any evaluation during training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = {r["name"]: r for r in rows}
    base_row = first(rows, "base")
    columns = [c for c in COLUMNS if base_row and c[0] in base_row]
    columns += [(k, k[len(GUARD) :]) for k in sorted(k for k in (base_row or {}) if k.startswith(GUARD))]
    columns += [("sts_spearman", "STS-B (ρ)")] if base_row and "sts_spearman" in base_row else []
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    if base_row and columns:
        xs = range(len(columns))
        marks = [r["name"] for r in rows if r.get("kind") in ("bm25", "reference")]
        tuned = first(rows, "tuned")
        series = [r["name"] for r in ours(rows)] + marks
        for i, name in enumerate(series):
            delta = [
                100 * (named[name][k] - base_row[k]) if k in named[name] else float("nan") for k, _ in columns
            ]
            shifted = [
                x + 0.5 * (i - (len(series) - 1) / 2) / len(series) for x in xs
            ]  # side by side, not stacked
            mark = (
                {"marker": "D" if name == "BM25" else "^", "s": 45}
                if name in marks
                else {"marker": "o", "s": 55}
            )
            left.scatter(
                shifted, delta, color="0.3" if name == "BM25" else f"C{i}", label=name, zorder=3, **mark
            )
            left.vlines(shifted, 0, delta, color="0.3" if name == "BM25" else f"C{i}", lw=1, alpha=0.5)
            if tuned and name == tuned["name"]:
                for x, d in zip(shifted, delta):
                    if d == d:
                        left.annotate(
                            f"{d:+.1f}",
                            (x, d),
                            textcoords="offset points",
                            xytext=(-4, 6),
                            fontsize=8,
                            ha="right",
                        )
        guards_from = next((i for i, (k, _) in enumerate(columns) if k.startswith(GUARD)), None)
        if guards_from:
            left.axvline(guards_from - 0.5, color="0.6", lw=0.8, ls=":")
        left.axhline(0, color="black", lw=1)
        left.text(-0.45, 0, f"{base_row['name']} = 0", va="bottom", ha="left", fontsize=8)
        left.set_xticks(list(xs), [label for _, label in columns])
        left.set(
            ylabel="change against the base model (points)",
            title="nDCG@10 against the base as deployed: in-domain queries | out-of-domain guards",
        )
        left.legend(fontsize=7, loc="best")
        left.grid(axis="y", alpha=0.3)
    if train_log.get("loss"):
        right.plot(train_log["step"], train_log["loss"], lw=0.5, color="tab:blue", alpha=0.25)
        right.plot(
            train_log["step"], smoothed(train_log["loss"]), lw=1.8, color="tab:blue", label="loss (smoothed)"
        )
        right.set(xlabel="step", ylabel="loss", title="training")
        lr = right.twinx()
        lr.plot(train_log["step"], train_log["lr"], lw=1, color="tab:orange", ls="--", label="learning rate")
        lr.set_ylabel("learning rate", color="tab:orange")
        for point in train_log.get("eval", []):
            for k, v in point.items():
                if k != "step":
                    lr.scatter([point["step"]], [v], s=12, color="tab:green")
        right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def check_summary(run: RunRecord) -> list[str]:
    """The run's checks in a short table, a line each: what was checked, on what, and what it found."""
    rows = []
    for kind, figures in (run.parity or {}).items():
        cosines = [
            figures[side]["min_cosine"]
            for side in ("query", "passage")
            if isinstance(figures, dict) and "min_cosine" in figures.get(side, {})
        ]
        if cosines:
            rows.append(
                (
                    f"ONNX ({kind}) against PyTorch",
                    f"{figures.get('texts', '?')} texts",
                    f"min cosine {min(cosines):.6f}",
                )
            )
    if run.vespa_check:
        rows.append(("Vespa's config model on the package", "the package", str(run.vespa_check)))
    if run.vespa_embedder:
        embedder = run.vespa_embedder
        rows.append(
            (
                "Vespa's HuggingFaceEmbedder against ours",
                f"{embedder['texts']} texts",
                f"min cosine documents {embedder['document_min_cosine']:.6f}, queries "
                f"{embedder['query_min_cosine']:.6f}",
            )
        )
    if run.bm25_weight:
        rows.append(
            ("hybrid-linear's BM25 weight", run.bm25_weight["method"], f"{run.bm25_weight['weight']:g}")
        )
    if run.chunking:
        rows.append(("chunking", "the corpus", run.chunking))
    if run.merge:
        rows.append(("merge with the base", run.merge["method"], f"α {run.merge['alpha']}"))
    if run.feed:
        rows.append(("feed", "Vespa", run.feed))
    return ["| check | on | found |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]


def opening(recipe: dict | None) -> list[str]:
    """What is served, in plain words, before any table: the model `--recipe auto` shipped and why."""
    if not recipe:
        return []
    queries = recipe["train_queries"]
    if recipe["chosen"] == "base":
        return [
            f"**Your {queries} training queries did not improve on the base model beyond noise: serving the "
            "base model, untrained, with BM25 (`hybrid-linear`).** "
            + recipe["why"][0].upper()
            + recipe["why"][1:]
            + "; each candidate's figures are under *Recipe* below.",
            "",
        ]
    return [
        f"**Serving the {recipe['label']}, trained on your {queries} training queries:** {recipe['why']}.",
        "",
    ]


def recipe_summary(asked: dict | None, recipe: dict | None, train_config) -> list[str]:
    """Which recipe made the served model: auto's candidates and choice, or the fixed recipe."""
    if recipe:
        return [f"`--recipe auto` ({asked['why'] if asked else 'asked for'}):", "", *recipe_lines(recipe)]
    tower = (
        "a query tower over the base model's document vectors"
        if train_config.tower == "query"
        else f"--tower {train_config.tower}"
    )
    why = asked["why"] if asked else ""
    return [
        f"Fixed recipe: {tower}"
        + (f" ({why})." if why else ".")
        + " Nothing was compared with the base model before serving it: `--recipe auto` (the default) does."
    ]


def served_recall_lines(run: RunRecord) -> list[str]:
    """What the served index finds of exact search's top hits, each served dense profile, and the settings."""
    recall, hnsw = run.served_recall or {}, run.hnsw or {}
    if not recall:
        return []
    queries = next(iter(recall.values()))["queries"]
    lines = [
        "## Served recall",
        "",
        "How much of exact search's top hits (the same vectors, brute force) the served index returns, on "
        f"the {queries} test queries. HNSW: {hnsw.get('max_links')} links a node, "
        f"{hnsw.get('explore_at_insert')} explored at insert, targetHits + "
        f"{hnsw.get('explore_additional')} explored a query; {hnsw.get('why', '')}.",
        "",
        "| profile | recall@10 | recall@100 |",
        "|---|---|---|",
        *[f"| {p} | {r['@10']:.4f} | {r['@100']:.4f} |" for p, r in recall.items()],
        "",
    ]
    low = [p for p, r in recall.items() if r["@10"] < RECALL_GOAL]
    if low:
        lines += [
            f"**{', '.join(low)}: below {RECALL_GOAL} recall@10**: the served index misses documents exact "
            "search ranks in the top 10. Raise `--explore-additional` (query time) or `--max-links` "
            "(a new index) and run again.",
            "",
        ]
    else:
        lines += [f"Every served dense profile finds at least {RECALL_GOAL} of exact search's top 10.", ""]
    return lines


def write_report(
    out: Path,
    rows: list[dict],
    timings: dict,
    train_config,
    run: RunRecord,
    deploy_commands: str,
    recipe: dict | None = None,
) -> Path:
    evaluation = run.evaluation or {}
    if not rows:
        lines = ["# siamese run", "", "## Results", "", f"No evaluation: {run.evaluation_skipped}", ""]
        evaluation = None
    else:
        lines = [
            "# siamese run",
            "",
            *opening(recipe),
            "## Results",
            "",
            format_table(rows),
            "",
            "Rows marked *served* (or *vespa*) come from the search backend "
            f"({run.backend}); the others are exact search: the base model in PyTorch, "
            "the fine-tuned model as exported to ONNX (parity checks prove it equal to PyTorch), and each "
            "fused with BM25 by reciprocal rank fusion.",
            "",
        ]
    if evaluation:
        lines += [
            f"*seen*: the {evaluation['seen']} queries with a relevant document that was a training positive "
            f"(a gain there may be memorised documents); *unseen*: the other {evaluation['unseen']}. "
            "*guard* columns: nDCG@10 on the report half of each out-of-domain set ("
            + ", ".join(f"{g}: {n} queries" for g, n in evaluation["guards"].items())
            + ").",
            "",
        ]
    lines += served_recall_lines(run)
    base, tuned = first(rows, "base"), first(rows, "tuned")
    if base and tuned and train_config is not None:
        lines += [
            "## Generalisation and forgetting",
            "",
            f"{tuned['name']} against {base['name']}, from this run:",
            "",
            *generalisation(rows, base["name"], tuned["name"]),
            "",
        ]
        for reference in (r["name"] for r in rows if r.get("kind") == "reference"):
            lines += [
                f"### Against {reference}",
                "",
                "An off-the-shelf model a user could deploy instead, zero-shot, at its own window:",
                "",
                *against_reference(rows, reference, tuned["name"]),
                "",
            ]
    lines += ["## Recipe", "", *recipe_summary(run.recipe, recipe, train_config), ""]
    lines += [
        "![training loss and metrics](plot.png)",
        "",
        "## Timings (seconds)",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    if run.vespa_container:
        lines += [
            "",
            "## Vespa's own code on this package",
            "",
            "Run in-process from Maven Central's Vespa artifacts (`siamese app check`): the config model, "
            "the indexing statements with the embedder on documents of this corpus, the query stack on "
            "every request our client builds, and the global phase on the embedded backend's features.",
            "",
            *[f"- {line}" for line in run.vespa_container],
        ]
    (out / "checks.json").write_text(json.dumps(asdict(run), indent=2) + "\n")
    lines += [
        "",
        "## Checks",
        "",
        *check_summary(run),
        "",
        "Every figure behind these lines: `checks.json`.",
        "",
        "## Training configuration",
        "",
        "```",
        json.dumps(asdict(train_config), indent=2)
        if train_config
        else "none: the base model is served untrained",
        "```",
        "",
        "## Deploy to Vespa",
        "",
        "```",
        deploy_commands,
        "```",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
