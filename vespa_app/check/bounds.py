"""Every bound `siamese app check` holds Vespa's code and ours to, in one place (the checks name them)."""

# Vespa's HuggingFaceEmbedder (and the indexing statements, the query stack) against our ONNX Runtime path:
# the same graph and tokenizer in Java and Python differ by float rounding only.
MIN_COSINE = 0.9999
# An int8 graph: Vespa's ONNX Runtime (Java) and ours round its quantised kernels differently; a 3-layer
# student's vectors then differ by up to 0.0021 (measured: cosine 0.9979). Embedding another text than the
# feed sends (a dropped title) shows as 0.94-0.97, still below this.
MIN_COSINE_INT8 = 0.99
# hybrid profiles: Vespa's GlobalPhaseRanker against the embedded backend's fusion, score by score
MAX_FUSION_DIFF = 1e-6

# ColBERT: Vespa's ColBertEmbedder against ours, token by token
MIN_TOKEN_COSINE = 0.9999
MIN_BITS_EQUAL = 0.999  # share of document tokens whose packed bits equal ours, beyond float noise
MIN_COSINE_BF16 = 0.999  # a bfloat16 cell keeps 8 bits of mantissa
MIN_COLBERT_AGREE = 0.999  # share of document tokens whose packed bits (or bfloat16 vector) match ours
# a value this close to 0 has no determined sign: PyTorch, ONNX Runtime and Java differ by ~1e-7
SIGN_NOISE = 1e-5
