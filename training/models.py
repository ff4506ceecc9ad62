"""One loader for every kind of model directory: ``load_model`` picks the class from the directory's marker
(``model_dir.model_kind``), so ``Encoder.load`` stays what its name says, one single-vector encoder.

Example::

    model = load_model("runs/latest/train/model")   # an Encoder, a LateInteraction or a TwoTowers
    model.encode(["a query"], "query")              # TwoTowers picks its query tower
"""

from __future__ import annotations

from .encoder import Encoder
from .late_interaction import LateInteraction
from .model_dir import check_model_dir, model_kind
from .towers import TwoTowers


def load_model(path, device=None, **overrides):
    """The model at ``path`` (a directory, a run folder or a hub id) on ``device`` (default: the chosen one,
    ``common/device.py``); ``overrides`` as for ``Encoder.load``."""
    path = check_model_dir(path)
    kind = model_kind(path)
    if kind == "towers":
        return TwoTowers.load(path, device, **overrides)
    if kind == "late":
        return LateInteraction.load(path, device, **overrides)
    return Encoder.load(path, device, **overrides)
