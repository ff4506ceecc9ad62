"""``README.md`` in every model directory we write: what the model is, from the directory's own records.

The card is derived, never typed, from a ``ModelRecord`` (``training/model_dir.py``: ``siamese.json``, how it
embeds; ``train_config.json`` / ``train_metrics.json``, base, revision, recipe, data; ``merge.json``,
``distill.json``, ``onnx_import.json`` and, once `siamese run` has evaluated it, ``evaluation.json``, the
run's figures), read once by whoever holds the folder. Writing it again after any of those changes keeps it
true. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.metrics import GUARD
from common.significance import p_text

from .model_dir import CARD_FILE, IMPORT_FILE, ModelDirError, ModelRecord, check_model_dir
from .train_log import log_table

UNSEEN = "unseen held-out"  # the held-out queries none of whose positives a kept query has (recipe.py)

FIGURES = ("ndcg@10", "ndcg@10 seen", "ndcg@10 unseen", "recall@100", "mrr@10", "sts_spearman")
LICENCES = {
    "scifact": "SciFact: claims CC BY 4.0, abstracts ODC-By 1.0",
    "stsb": "STS Benchmark: CC BY-SA 4.0 (scores); texts under their sources' terms",
    "medquad": "MedQuAD: CC BY 4.0",
    "cisi": "CISI: free for research (University of Glasgow IR group)",
}
RECIPE_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "max_length",
    "train_length",
    "temperature",
    "anchor",
    "anchor_weight",
    "hard_negatives",
    "corpus_pairs",
    "tower",
)
BASE_LICENCES = {"all-MiniLM-L6-v2": "Apache-2.0", "bge-small-en-v1.5": "MIT"}


def _table(rows: list[dict]) -> list[str]:

    guards = sorted({k for r in rows for k in r if k.startswith(GUARD)})
    columns = [c for c in FIGURES if any(c in r for r in rows)] + guards
    lines = ["| system | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), (int, float)) else "–" for c in columns]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return lines


def _licences(names: list[str]) -> list[str]:
    text = " ".join(names).lower()
    return [line for key, line in LICENCES.items() if key in text]


def recipe_lines(recipe: dict) -> list[str]:
    """``--recipe auto``'s candidates as a table (held-out nDCG@10 over all, seen and unseen queries; the
    change against the base model with its p-value; each guard's change on its selection half with the
    p-value of a fall beyond half a point; the length or α chosen; training time), then the choice."""
    held, guards = recipe["held_out"], list(recipe["guards"])
    header = [
        "candidate",
        "held-out nDCG@10",
        "seen",
        "unseen",
        "change (p)",
        "unseen Δ (p)",
        *(f"{g} Δ (p)" for g in guards),
        "length / α",
        "training s",
    ]
    rows = []
    for name, c in recipe["candidates"].items():
        label = name + (" **shipped**" if name == recipe["chosen"] else "")
        figures = [_figure(c["held_out"].get(k)) for k in FIGURES[:3]]
        if name == "base":
            rows.append([label, *figures, "–", "–", *(f"{c['guards'][g]:.4f}" for g in guards), "–", "–"])
            continue
        gain = c["gain"]
        falls = [
            f"{100 * c['falls'][g]['change']:+.1f} ({p_text(c['falls'][g]['p'])})" if g in c["falls"] else "–"
            for g in (UNSEEN, *guards)
        ]
        chosen = (f"α {c['alpha']}" if "alpha" in c else "") or (
            f"{c['length']:.0%}" if "length" in c else "full"
        )
        rows.append(
            [
                label,
                *figures,
                f"{100 * gain['change']:+.1f} ({p_text(gain['p'])})",
                *falls,
                chosen,
                f"{c.get('train_s', 0):.0f}",
            ]
        )
    rows += [
        [f"{name} (not tried: {why})", *("–" for _ in header[1:])]
        for name, why in recipe["not_tried"].items()
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    halves = ", ".join(f"{g} {n} queries" for g, n in recipe["guards"].items()) or "no guard sets given"
    rule = recipe["rule"]
    return [
        f"{held['queries']} of the {recipe['train_queries']} training queries held out ({held['method']}; "
        f"{held['seen']} seen: a positive shared with a kept query), each candidate trained without them. "
        "Change: points of nDCG@10 against the base on the held-out queries, with the one-sided p-value of "
        f"a paired sign-flip test; guard columns: change on each guard's selection half ({halves}, never the "
        "half figures are reported on) and on the unseen held-out queries, with the p-value of a fall beyond "
        f"{100 * rule['forgetting_bound']:.1f} point. A trained candidate replaces the base only with a gain "
        f"of p ≤ {rule['alpha']} and no such fall of p ≤ {rule['alpha']}. Length: the share of the steps "
        "kept, chosen on the held-out queries along training.",
        "",
        *lines,
        "",
        *_curve(recipe),
        f"Shipped: {recipe['label']}: {recipe['why']}.",
    ]


def _curve(recipe: dict) -> list[str]:
    """The query tower's held-out nDCG@10 along its steps, the length kept marked."""
    query = recipe["candidates"].get("query") or {}
    if "curve" not in query:
        return []
    points = ", ".join(
        f"**{float(f):.0%} {v:.4f}**" if float(f) == query["length"] else f"{float(f):.0%} {v:.4f}"
        for f, v in query["curve"].items()
    )
    return [f"Held-out nDCG@10 along the query tower's steps (share of the planned steps): {points}.", ""]


def _figure(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def card_text(model: ModelRecord) -> str:
    config, train, metrics, recipe, towers = (
        model.encoding,
        model.train,
        model.metrics,
        model.recipe,
        model.towers,
    )
    merged, distilled, imported, evaluation = model.merge, model.distill, model.imported, model.evaluation
    lines = [
        f"# {_title(model)}",
        "",
        "A sentence-embedding bi-encoder written by siamese-vespa "
        "(loads with `transformers.AutoModel` and `sentence_transformers.SentenceTransformer`).",
        "",
        "## How it embeds",
        "",
        f"- pooling: {config.pooling}; normalised: {'yes' if config.normalize else 'no'}; "
        f"window: {config.max_length} tokens",
        f"- query prefix: {json.dumps(config.query_prefix)}; "
        f"document prefix: {json.dumps(config.document_prefix)}",
    ]
    bases = []
    if train:
        base = model.name(train["base"])
        bases.append(_base_source(train["base"]) or base)
        revision = train.get("base_revision")
        lines += [
            "",
            "## Training",
            "",
            f"- base model: {base}" + (f" (revision {revision})" if revision else ""),
            f"- data: {train.get('data') or 'not recorded'}",
            "- recipe: "
            + ", ".join(f"{k} {train[k]}" for k in RECIPE_KEYS if train.get(k) not in (None, "")),
        ]
        if metrics:
            lines.append(
                f"- {metrics['steps']} steps over {metrics['pairs']} pairs in {metrics['wall_s']} s, "
                f"final loss {metrics['final_loss']:.4f}"
                if metrics.get("final_loss") is not None
                else f"- {metrics['steps']} steps"
            )
            if metrics.get("log"):
                lines += ["", "### Training log", "", *log_table(metrics["log"])]
    if recipe:
        lines += ["", "## How the recipe was chosen (`--recipe auto`)", "", *recipe_lines(recipe)]
    if towers:
        frozen = towers.get("frozen") == "document"
        lines += [
            "",
            "## Two towers",
            "",
            f"- `--tower {towers['variant']}`: this folder embeds documents"
            + (" (the base model's files, frozen: its vectors are the base model's)" if frozen else "")
            + f"; `{towers['query']}/` embeds queries",
            "- `siamese app build` serves each with its own hugging-face-embedder"
            + (
                "; deployed over documents fed with the same document tower, it needs no re-feed"
                if frozen
                else ""
            ),
        ]
    if merged:
        lines += [
            "",
            "## Merge",
            "",
            f"- θ = (1 − α)·base + α·tuned with α {merged['alpha']:.3f} "
            f"({merged['choice']['method']}); base {model.name(merged['base'])}",
        ]
        bases.append(model.name(merged["base"]))
    if distilled:
        lines += [
            "",
            "## Distillation",
            "",
            f"- student of {model.name(distilled['teacher'])}: teacher layers "
            f"{distilled.get('teacher_layers')}, {distilled.get('texts')} texts",
        ]
    if imported:
        lines += [
            "",
            "## Imported from ONNX",
            "",
            f"- rebuilt from {imported['onnx']} + {imported['tokenizer']}"
            + (f" ({imported['source']})" if imported.get("source") else "")
            + f": {imported['heads']} attention heads; last_hidden_state equals the graph's on "
            f"{imported['texts']} texts, max |Δ| {imported['max_abs_diff']:.2e} "
            f"(bound {imported['tolerance']:g})",
        ]
        bases.append(imported.get("source") or imported["onnx"])
    if evaluation and evaluation.get("rows"):
        lines += ["", "## Figures of the run that made it", "", *_table(evaluation["rows"]), ""]
        if evaluation.get("note"):
            lines += [evaluation["note"], ""]
        lines.append(
            "seen: queries whose relevant document was a training positive; unseen: the others. guard "
            "columns: out-of-domain sets (forgetting)."
        )
    else:
        lines += [
            "",
            "## Figures",
            "",
            "Not evaluated yet: `siamese eval --models THIS_DIR --guards --hybrid --sts` "
            "gives all / seen / unseen queries, the guards and STS-B beside the base model.",
        ]
    lines += [
        "",
        "## Serving it with Vespa",
        "",
        "```",
        "siamese export THIS_DIR EXPORT_DIR",
        "siamese app build EXPORT_DIR APP_DIR",
        "siamese deploy APP_DIR --target docker",
        "```",
        "",
        "## Licences",
        "",
    ]
    for base in bases:
        known = next((v for k, v in BASE_LICENCES.items() if k.lower() in base.lower()), None)
        lines.append(f"- base {base}: {known or 'see the base model’s own card'}")
    data = [train.get("data", "")] if train else []
    lines += [f"- data: {line}" for line in _licences(data + [json.dumps(evaluation or {})])]
    return "\n".join(lines) + "\n"


def _title(model: ModelRecord) -> str:
    train, merged = model.train, model.merge
    if model.recipe and model.recipe["chosen"] == "base":
        return f"{model.name(model.recipe['base'])}, untrained (no candidate beat it on the held-out queries)"
    data = Path(train.get("data") or "").name if train else ""
    if merged:
        tuned, base = model.name(merged["tuned"]), model.name(merged["base"])
        return f"{tuned} merged with {base} (α {merged['alpha']:.2f})"
    if model.distill:
        return f"a student of {model.name(model.distill['teacher'])}"
    if train:
        return f"{model.name(train['base'])} fine-tuned" + (f" on {data}" if data else "")
    if model.imported:
        return Path(model.imported["onnx"]).stem
    return model.folder.name


def _base_source(base: str) -> str | None:
    """Where an imported base came from (its licence is named there), if the base records it."""
    try:
        record = check_model_dir(base) / IMPORT_FILE
    except ModelDirError:
        return None
    return json.loads(record.read_text()).get("source") if record.exists() else None


# What the hub shows and indexes: a model the sentence-transformers library loads, served by Vespa.
TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction", "vespa", "siamese-vespa")


def front_matter(model: ModelRecord) -> dict:
    """The card's YAML header, as the hub reads it (sentence-transformers writes the same keys): where the
    model came from, what it was trained on, and the figures of the run that made it."""
    train, evaluation = model.train, model.evaluation
    header = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": list(TAGS),
    }
    if train:
        base = model.name(train["base"])
        header["base_model"] = base
        header["license"] = BASE_LICENCES.get(base, "other").lower()
        if train.get("data"):
            header["datasets"] = [Path(train["data"]).name]
    tuned = next((r for r in (evaluation or {}).get("rows", []) if r.get("kind") == "tuned"), None)
    if tuned:
        header["metrics"] = [k for k in ("ndcg@10", "recall@100", "mrr@10") if k in tuned]
        header["model-index"] = [
            {
                "name": model.folder.name,
                "results": [
                    {
                        "task": {"type": "retrieval"},
                        "dataset": {"name": header.get("datasets", ["evaluation"])[0], "type": "beir"},
                        "metrics": [
                            {"type": k.replace(" ", "_"), "value": round(float(tuned[k]), 4)}
                            for k in FIGURES
                            if k in tuned
                        ],
                    }
                ],
            }
        ]
    return header


def card_document(model: ModelRecord) -> str:
    """The card as the hub reads it: the YAML front matter, then the text."""
    import yaml

    return "---\n" + yaml.safe_dump(front_matter(model), sort_keys=False) + "---\n" + card_text(model)


def write_card(model_dir, model: ModelRecord | None = None) -> Path:
    """The card of ``model_dir`` from ``model`` (its record, as its caller holds it), or from its files."""
    model = model or ModelRecord.read(model_dir)
    path = Path(model_dir) / CARD_FILE
    path.write_text(card_document(model))
    return path
