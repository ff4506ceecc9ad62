"""`siamese ui RUN`: open the run, build what answers the columns, serve the page on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import sys

from common.errors import ConfigError
from siamese.ui.app import create_app
from siamese.ui.run_folder import RunFolder
from siamese.ui.systems import BaseColumn, Systems
from training.model_dir import ModelRecord
from vespa_app.client.query import VespaBackend
from vespa_app.embedded import EmbeddedIndex

SERVED = "fine-tuned (served)"
KEPT = "served: the base, untrained"


def systems_for(run: RunFolder, vespa: str | None = None) -> Systems:
    """The columns of ``run``: its index (or a live Vespa) and its base model."""
    if run.index is None:
        raise ConfigError(
            f"{run.path}: no embedded index (index/meta.json): the run has not built it yet, or it "
            "served Vespa; search needs the index's documents"
        )
    index = EmbeddedIndex.open(run.index)
    model = (
        ModelRecord.read(run.path / "train" / "model") if (run.path / "train" / "model").is_dir() else None
    )
    kept = bool(model and model.recipe and model.recipe["chosen"] == "base")
    frozen = kept or bool(model and model.towers and model.towers.get("frozen") == "document")
    base = (
        (run.results or {}).get("record", {}).get("base") or (model.train or {}).get("base")
        if model
        else None
    )
    return Systems(
        index,
        BaseColumn(base, index, frozen, run.export) if base else None,
        KEPT if kept else SERVED,
        VespaBackend(vespa, explore_additional=index.hnsw_settings.explore_additional) if vespa else None,
    )


def serve(
    path, port: int = 8400, host: str = "127.0.0.1", vespa: str | None = None, debug: bool = False
) -> int:
    run = RunFolder.open(path)
    if not ipaddress.ip_address(host).is_loopback:
        print(
            f"warning: serving {run.path} on {host}: anyone who can reach this machine can read the run's "
            "documents and queries (the default, 127.0.0.1, serves this machine alone)",
            file=sys.stderr,
        )
    app = create_app(run, lambda: systems_for(run, vespa))
    print(f"siamese ui: http://{host}:{port}/  ({run.path}; Ctrl-C stops it)", file=sys.stderr)
    app.run(host=host, port=port, debug=debug, use_reloader=False)
    return 0
