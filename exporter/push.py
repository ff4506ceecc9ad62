"""`siamese push MODEL_DIR HUB_ID`: publish a model directory on the Hugging Face hub, as
sentence-transformers' ``push_to_hub`` does: the model with its card, whose YAML front matter
(``training.model_card.front_matter``: base_model, library_name, pipeline_tag, tags, datasets, the run's
metrics, licence) is what the hub indexes; with ``--export``, the ONNX
export Vespa's hugging-face-embedder loads, under ``onnx/``.

Example::

    siamese push runs/latest/train/model you/scifact-minilm --export runs/latest/export
"""

from __future__ import annotations

from pathlib import Path

from common.errors import UserError
from exporter.manifest import Manifest
from training.model_card import card_document
from training.model_dir import ModelRecord, check_model_dir

NOT_PUSHED = {".siamese-artifact"}


class PushError(UserError):
    """The hub could not be reached, or refused the push."""


def files_to_push(model_dir, export_dir=None) -> dict[str, Path]:
    """path in the repository → local file: the model directory, and the export under ``onnx/``."""
    model_dir = check_model_dir(model_dir)
    files = {
        str(p.relative_to(model_dir)): p
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name not in NOT_PUSHED and p.name != "README.md"
    }  # the card: made fresh
    if export_dir is not None:
        Manifest.load(export_dir)  # checks every file against the manifest's hashes
        export_dir = Path(export_dir)
        files |= {
            f"onnx/{p.relative_to(export_dir)}": p
            for p in sorted(export_dir.rglob("*"))
            if p.is_file() and p.name not in NOT_PUSHED
        }
    return files


def push(
    model_dir,
    hub_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    export_dir=None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Create ``hub_id`` (kept if it exists) and commit the model, its card and the export in one commit;
    returns the commit's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    operations = [
        CommitOperationAdd(path, str(local)) for path, local in files_to_push(model_dir, export_dir).items()
    ]
    card = card_document(ModelRecord.read(model_dir))
    operations.append(CommitOperationAdd("README.md", card.encode()))
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(hub_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(hub_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            hub_id, operations, commit_message=f"siamese push {Path(model_dir).name}", revision=revision
        )
    except OfflineModeIsEnabled:
        raise PushError(
            "cannot push: the hub is switched off here (HF_HUB_OFFLINE=1); unset it on a machine "
            "that reaches the hub"
        ) from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        why = (
            "not authorised: log in with `hf auth login` or set HF_TOKEN"
            if status in (401, 403)
            else str(e).splitlines()[0][:200]
        )
        raise PushError(f"cannot push to {hub_id}: HTTP {status}: {why}") from None
    except (OSError, ConnectionError) as e:  # no network, DNS, refused connection
        raise PushError(
            f"cannot push to {hub_id}: the hub is not reachable ({e.__class__.__name__}: {str(e)[:160]})"
        ) from None
    return info.commit_url
