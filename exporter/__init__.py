"""ONNX export for Vespa's hugging-face-embedder, with parity checks and int8 quantization."""
