"""Late interaction (ColBERT; Khattab & Zaharia, 2020): a vector per token, scored by MaxSim.

    s(q, d) = Σ_i max_j  q_i · d_j

where q_i and d_j are the encoder's token outputs through a linear map to ``dim`` (128) dimensions, each
L2-normalised. The inputs are built exactly as Vespa's colbert-embedder builds them when it serves the model
(``common/late.py`` says how: [CLS] [Q] query [SEP] padded with [MASK]s that are query vectors too; [CLS] [D]
document without punctuation [SEP]). A model directory holds the encoder as usual plus
``late_interaction.json`` (``common.late.LateConfig``: marker ids,
lengths, dimension) and ``colbert_linear.safetensors`` (the head).

Example::

    model = LateInteraction.from_encoder(Encoder.load(base), dim=128, query_tokens=32, document_tokens=128)
    q = model.embed_batch(["what is a prion?"], "query")          # (1, 32, 128)
    d = model.embed_batch(["Prions are misfolded proteins."], "passage")
    score = maxsim(q, d)                                           # (1, 1)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import device as devices
from common.batching import length_sorted_batches
from common.errors import ConfigError
from common.late import TOKENIZER_MAX, LateConfig, input_ids, skip_ids

from .encoder import Encoder
from .model_dir import EncoderConfig, ModelDirError, check_model_dir, model_kind

HEAD_FILE = "colbert_linear.safetensors"


def is_late_interaction(model_dir) -> bool:
    return model_kind(model_dir) == "late"


def maxsim(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """MaxSim of every query against every document: (B, Lq, D) × (N, Ld, D) → (B, N). Rows of zeros are
    padding (a real token vector has length 1): a padded document token never wins a max, a padded query
    token adds nothing."""
    sims = torch.einsum("bid,njd->bnij", q, d)
    pad = d.abs().sum(-1) == 0
    best = sims.masked_fill(pad[None, :, None, :], float("-inf")).amax(-1)
    return (best * (q.abs().sum(-1) > 0)[:, None, :]).sum(-1)


class LateInteraction(Encoder):
    """The encoder with a ColBERT head; ``forward`` gives a unit vector per token."""

    def __init__(self, transformer, tokenizer, config: EncoderConfig, late: LateConfig, head: nn.Linear):
        super().__init__(transformer, tokenizer, config)
        self.late, self.head = late, head
        self.skip = skip_ids(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])

    @classmethod
    def from_encoder(
        cls, encoder: Encoder, dim: int = 128, query_tokens: int = 32, document_tokens: int | None = None
    ) -> LateInteraction:
        """A new head on ``encoder``: an orthogonal projection, so the untrained model already scores with a
        random 128-dimensional view of the encoder's token space (Johnson–Lindenstrauss) instead of noise."""
        t = encoder.tokenizer
        late = LateConfig.for_vocabulary(
            t.get_vocab(),
            {"cls": t.cls_token_id, "sep": t.sep_token_id, "mask": t.mask_token_id, "pad": t.pad_token_id},
            dim,
            query_tokens,
            document_tokens or encoder.config.max_length,
        )
        head = nn.Linear(encoder.dim, dim, bias=False)
        nn.init.orthogonal_(head.weight)  # on the CPU: the same initial head whatever the device
        return cls(encoder.transformer, encoder.tokenizer, encoder.config, late, head.to(encoder.device))

    @classmethod
    def load(cls, path, device=None, **overrides) -> LateInteraction:
        from safetensors.torch import load_file

        path = check_model_dir(path)
        if not is_late_interaction(path):
            raise ModelDirError(
                f"{path}: not a late-interaction model (no {LateConfig.FILE}). Train one with "
                "`siamese train --late-interaction`."
            )
        base = Encoder.load(path, device, **overrides)
        late = LateConfig.load(path)
        head = nn.Linear(base.dim, late.dim, bias=False)
        head.load_state_dict(load_file(path / HEAD_FILE))
        return devices.place(cls(base.transformer, base.tokenizer, base.config, late, head), device)

    # ------------------------------------------------------------------ inputs, as Vespa builds them

    def input_ids(self, text: str, kind: str) -> tuple[list[int], int]:
        """One text's input ids as Vespa's colbert-embedder builds them, and how many of them attend."""
        tokens = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=TOKENIZER_MAX)[
            "input_ids"
        ]
        return input_ids(tokens, kind, self.late, self.skip)

    def tokenize(self, texts: list[str], kind: str = "passage") -> dict[str, torch.Tensor]:
        """A padded batch; ``vectors`` marks the outputs that are token vectors (a query's every position,
        [MASK]s included; a document's attending positions)."""
        rows = [self.input_ids(t, kind) for t in texts]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.late.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        vectors = torch.zeros_like(ids, dtype=torch.bool)
        for i, (row, attending) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, :attending] = 1
            vectors[i, : len(row)] = True
        return {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "vectors": vectors.to(self.device),
        }

    @property
    def dim(self) -> int:
        return self.transformer.config.hidden_size  # the encoder's width; the head's is ``late.dim``

    def token_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) unit vectors, every position: the graph the ONNX export holds (output ``contextual``).
        Only input_ids and attention_mask: Vespa's colbert-embedder feeds nothing else (a BERT's token types
        are then its default zeros)."""
        tokens = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.normalize(self.head(tokens), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token vectors with the positions that are not vectors zeroed (see ``maxsim``)."""
        out = self.token_vectors(batch["input_ids"], batch["attention_mask"])
        return out * batch["vectors"].unsqueeze(-1)

    def embed_batch(self, texts: list[str], kind: str) -> torch.Tensor:
        return self(self.tokenize(self.with_prefix(texts, kind), kind))

    @torch.inference_mode()
    def encode_tokens(
        self, texts: list[str], kind: str = "passage", batch_size: int = 32
    ) -> list[np.ndarray]:
        """Each text's token vectors, float32 (n_tokens, dim), as Vespa's embedder emits them."""
        was_training = self.training
        self.eval()
        texts = self.with_prefix(list(texts), kind)
        out: list[np.ndarray] = [None] * len(texts)
        for idx in length_sorted_batches([len(t) for t in texts], batch_size):
            batch = self.tokenize([texts[i] for i in idx], kind)
            vectors = self(batch).float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = vectors[row, : int(batch["vectors"][row].sum())]
        self.train(was_training)
        return out

    def encode(self, texts, kind: str = "passage", batch_size: int = 64, progress: bool = False):
        raise ConfigError(
            "a late-interaction model embeds a vector per token, not one per text; serve it beside a "
            "single-vector model and evaluate its MaxSim profiles: `siamese run --colbert THIS_MODEL`, "
            "then `siamese eval --backend embedded --index OUT/index --profiles colbert-maxsim`"
        )

    def save(self, path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        self.config.save(path)
        self.late.save(path)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, path / HEAD_FILE
        )
        # For sentence-transformers this is the bare transformer (token embeddings); the head is ours.
        (path / "modules.json").write_text(
            json.dumps(
                [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}],
                indent=2,
            )
        )
