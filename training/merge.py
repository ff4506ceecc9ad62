"""Weight merging against forgetting: θ = (1 − α)·θ_base + α·θ_tuned, layer by layer.

α = 0 is the base model and α = 1 the fine-tuned one, bit for bit (``torch.lerp`` is exact at both ends).
``--alpha auto`` takes the largest α of a grid (1, ¾, ½, ¼) whose nDCG@10 on every guard set stays within half
a point of the base model, measured on the *selection* half of each guard's queries only; every figure
reported elsewhere is on the other half, so the choice is not tuned on the figures that report it.

    siamese merge base runs/latest/train/model runs/merged --alpha auto

A query tower over the base's frozen document tower (``--tower query``) merges its query side alone: the
document side is the base already, its files are kept byte for byte, so the merged model's documents keep
the vectors they were fed and indexed with (WiSE-FT / LM-Cocktail on the side that trained).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from common.atomic import atomic_dir, check_output
from common.metrics import score_run
from common.vectors import dense_run

from .encoder import Encoder
from .evaluate import embed_fn, guard_sets
from .model_card import write_card
from .model_dir import (
    MERGE_FILE,
    POSITIVES_FILE,
    RECIPE_FILE,
    TOWERS_FILE,
    TRAIN_CONFIG_FILE,
    TRAIN_METRICS_FILE,
    EncoderConfig,
    ModelDirError,
    check_model_dir,
    model_cache_key,
    model_kind,
)
from .models import load_model

BOUND = 0.005  # the largest drop on a guard that auto α accepts: half a point of nDCG@10


def merge_weights(base: dict, tuned: dict, alpha: float) -> dict:
    """Interpolate every floating-point tensor; integer buffers (position ids) come from the tuned model."""
    if base.keys() != tuned.keys() or any(base[k].shape != tuned[k].shape for k in tuned):
        raise ModelDirError(
            "the base and the fine-tuned model are not the same architecture; merge a model "
            "with the base it was fine-tuned from"
        )
    return {
        k: torch.lerp(base[k].to(t.device), t, alpha) if t.is_floating_point() else t
        for k, t in tuned.items()
    }


def merged_encoder(base_dir, tuned_dir, alpha: float) -> Encoder:
    """The fine-tuned model (its pooling, prefixes and window) with interpolated transformer weights; a query
    tower over a frozen document tower with its query side interpolated."""
    from transformers import AutoModel

    encoder = load_model(tuned_dir)
    base = AutoModel.from_pretrained(check_model_dir(base_dir)).state_dict()
    trained = _frozen_documents(tuned_dir) and encoder.query or encoder
    trained.transformer.load_state_dict(merge_weights(base, trained.transformer.state_dict(), alpha))
    return encoder


def _frozen_documents(model_dir) -> bool:
    """A two-tower model whose document side is the base, frozen (``--tower query``)."""
    if model_kind(model_dir) != "towers":
        return False
    towers = json.loads((check_model_dir(model_dir) / TOWERS_FILE).read_text())
    return towers.get("frozen") == "document" and towers.get("variant") == "query"


def guard_scores(encoder: Encoder, guards: dict, cache: str | None = None) -> dict[str, float]:
    """nDCG@10 of ``encoder`` on each guard."""
    return {
        name: score_run(dense_run(embed_fn(encoder), guard, cache=cache), guard.qrels)["ndcg@10"]
        for name, guard in guards.items()
    }


def choose_alpha(
    base_dir, tuned_dir, guards: dict, grid=(1.0, 0.75, 0.5, 0.25), say=print
) -> tuple[float, dict]:
    """The largest α of ``grid`` (tried from the top) whose drop on each guard's selection half is ≤
    ``BOUND``, else 0 (the base model); returns α and the record of what was tried. A descending grid rather
    than a bisection: guard halves are small (CISI: ~35
    queries), so the drop need not fall steadily with α."""
    tried = {}
    base = Encoder.load(base_dir, max_length=EncoderConfig.load(check_model_dir(tuned_dir)).max_length)
    before = guard_scores(base, guards, cache=model_cache_key(base_dir, base.config))  # once, not per α
    for alpha in grid:
        if alpha == 1.0:  # the tuned model itself (lerp is exact at 1): its vectors may be cached already
            tuned = load_model(tuned_dir)
            after = guard_scores(tuned, guards, cache=model_cache_key(tuned_dir, tuned.config))
        else:  # a frozen document tower's vectors are the same at every α
            merged = merged_encoder(base_dir, tuned_dir, alpha)
            frozen = model_cache_key(tuned_dir, merged.config) if _frozen_documents(tuned_dir) else None
            after = guard_scores(merged, guards, cache=frozen)
        drops = tried[alpha] = {name: round(before[name] - after[name], 4) for name in guards}
        ok = all(d <= BOUND for d in drops.values())
        say(
            f"α {alpha:.2f}: change on the selection half "
            + ", ".join(f"{g} {-100 * d:+.2f}" for g, d in drops.items())
            + (" points: within the bound" if ok else " points: too much")
        )
        if ok:
            return alpha, {"tried": tried}
    return 0.0, {"tried": tried}


def merge(
    base_dir,
    tuned_dir,
    out,
    alpha: float | str = "auto",
    guards=None,
    force: bool = False,
    say=print,
    chosen_by: str = "given",
) -> Path:
    """Write the merged model directory (one every other command accepts) and return it. ``chosen_by``: how
    a given α was chosen (the record and the card say it)."""
    base_dir, tuned_dir = check_model_dir(base_dir), check_model_dir(tuned_dir)
    if model_kind(tuned_dir) == "towers" and not _frozen_documents(tuned_dir):
        variant = json.loads((tuned_dir / TOWERS_FILE).read_text())["variant"]
        raise ModelDirError(
            f"{tuned_dir}: two trained towers (--tower {variant}); merging averages one model's weights "
            "with its base: merge a shared-weights model (--tower shared) or a query tower (--tower query)"
        )
    check_output(out, "model", force, inputs=[base_dir, tuned_dir])
    choice = {"method": chosen_by}
    if alpha == "auto":
        selection = guard_sets(guards or [], half="selection")
        if not selection:
            raise ModelDirError("--alpha auto needs guard sets to choose on")
        alpha, record = choose_alpha(base_dir, tuned_dir, selection, say=say)
        choice = {
            "method": "auto",
            "bound": BOUND,
            "selection": "selection half of each guard's queries",
            "guards": {g: len(b.queries) for g, b in selection.items()},
            "tried": {f"{a:.3f}": drops for a, drops in record["tried"].items()},
        }
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ModelDirError(f"α must be in [0, 1], not {alpha}")
    encoder = merged_encoder(base_dir, tuned_dir, alpha)
    record = {
        "base": str(base_dir.resolve()),
        "tuned": str(tuned_dir.resolve()),
        "alpha": alpha,
        "choice": choice,
    }

    def write(tmp: Path):
        if _frozen_documents(tuned_dir):  # the document side's files as they are: its vectors stay the same
            encoder.save(tmp, base_dir=tuned_dir)
        else:
            encoder.save(tmp)
        for name in (POSITIVES_FILE, TRAIN_CONFIG_FILE, TRAIN_METRICS_FILE, RECIPE_FILE):
            if (tuned_dir / name).exists():  # what the tuned model was trained on stays true of the merge
                shutil.copyfile(tuned_dir / name, tmp / name)
        (tmp / MERGE_FILE).write_text(json.dumps(record, indent=2))
        write_card(tmp)

    return atomic_dir(out, write, "model", replace=force, inputs=[base_dir, tuned_dir])
