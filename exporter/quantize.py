"""Dynamic int8 quantization with per-channel weights.

Per-tensor int8 drifted to cosine ≈ 0.95 against fp32 on MiniLM; one scale per output channel keeps the
weights' spread and stays ≥ 0.99. Activations are quantized at run time (dynamic), which needs no
calibration data and runs on a stock ONNX Runtime, as inside Vespa.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic


def quantize_int8(fp32_model, int8_model) -> Path:
    # onnxruntime writes scratch files to the working directory: keep them out of the user's.
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            quantize_dynamic(
                str(Path(cwd, fp32_model)),
                str(Path(cwd, int8_model)),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
        finally:
            os.chdir(cwd)
    return Path(int8_model)
