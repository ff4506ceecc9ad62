"""Many texts on an accelerator: batches fitted to its memory, half precision where it embeds as fp32 does.

On the CPU, ``Encoder.encode`` runs batches of 16 through ONNX Runtime (``training/onnx_encode.py``). A GPU
wants hundreds of texts a batch and tensor cores, which need half precision: every call on CUDA runs under
fp16 autocast (matrix products in fp16, LayerNorm and softmax in fp32, as torch.autocast does), and its first
batch also in fp32. Where one vector of that batch has a cosine below ``HALF_MIN_COSINE`` to its fp32 twin,
the fp16 path is turned off for that encoder and fp32 is used from then on, so a vector that differs more is
never returned. ``SIAMESE_HALF_ENCODE=0`` turns half precision off everywhere. The vectors come back as
float32 on the host: caches, indexes and the embedded backend never see half precision (the cache key says
which precision made a vector: ``model_dir.model_cache_key``).

    encoder.encode(texts)   # calls it on an accelerator:
    accelerator_encode(encoder, texts, batch_size, progress)
"""

from __future__ import annotations

import sys
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from common import device as devices
from common.batching import length_sorted_batches

# fp16 against fp32, the worst vector of the first batch (float32 rounding: ~1 - 1e-7)
HALF_MIN_COSINE = 0.9999
MAX_BATCH, MIN_BATCH = 1024, 16
_FP32_ONLY: weakref.WeakSet = weakref.WeakSet()  # encoders whose fp16 vectors missed the bound


def fitted_batch_size(encoder) -> int:
    """Texts per batch for the device's free memory: a quarter of it for one batch's largest activations at
    the encoder's window (the feed-forward block and the attention scores of every head, in fp16, with a
    factor 4 of slack), as a power of two in [16, 1024]."""
    device = encoder.device
    if device.type != "cuda":
        return 64
    free, _ = torch.cuda.mem_get_info(device)
    hf = encoder.transformer.config
    tokens = encoder.config.max_length
    per_text = tokens * (hf.intermediate_size + 4 * hf.hidden_size + hf.num_attention_heads * tokens) * 2 * 4
    fits = max(MIN_BATCH, min(MAX_BATCH, free // 4 // per_text))
    return 1 << (int(fits).bit_length() - 1)


@torch.inference_mode()
def accelerator_encode(
    encoder, texts: list[str], batch_size: int | None, progress: bool
) -> np.ndarray | None:
    """``encoder.encode``'s vectors of already prefixed ``texts`` on its accelerator; None on the CPU."""
    if not devices.is_accelerator(encoder.device):
        return None
    half = devices.half_encoding(encoder.device) and encoder not in _FP32_ONLY
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    label = progress and f"encode ({encoder.device.type}{', fp16' if half else ''})"
    batches = length_sorted_batches([len(t) for t in texts], batch_size or fitted_batch_size(encoder), label)
    for n, idx in enumerate(batches):
        batch = encoder.tokenize([texts[i] for i in idx])
        with torch.autocast(encoder.device.type, dtype=torch.float16, enabled=half):
            vectors = encoder(batch).float()
        if half and n == 0:
            exact = encoder(batch).float()
            worst = float(F.cosine_similarity(vectors, exact, dim=-1).min())
            if worst < HALF_MIN_COSINE:
                print(
                    f"encode: fp16 vectors at cosine {worst:.6f} to fp32 (< {HALF_MIN_COSINE}); fp32 from "
                    "here on",
                    file=sys.stderr,
                )
                _FP32_ONLY.add(encoder)
                half, vectors = False, exact
        out[idx] = vectors.cpu().numpy()
    return out
