"""Serving defaults, in one place: the Vespa package and the embedded backend both read them. HNSW's settings
depend on the corpus size: ``hnsw.py``."""

SCHEMA = "doc"  # the document type, its schema and its namespace
EMBEDDER = "embedder"  # the hugging-face-embedder component's id: every query embeds with it
# A two-tower package's second hugging-face-embedder: the schema's indexing embeds documents with it, while
# queries keep naming EMBEDDER (the query tower), so no client needs to know which kind of package it queries.
DOCUMENT_EMBEDDER = "document-embedder"
QUERY_TOWER_DIR = "models/query"  # a two-tower package's query model files, tokenizer and manifest
COLBERT_EMBEDDER = "colbert"  # the colbert-embedder component's id (packages built with --colbert)
COLBERT_DIR = "models/colbert"  # its model files, tokenizer and manifest
TARGET_HITS = 100  # nearestNeighbor targetHits unless more hits are asked for
RERANK_COUNT = 1000  # global-phase rerank-count of the hybrid profiles
SECOND_PHASE_RERANK = 200  # second-phase rerank-count of the binary profile
COLBERT_RERANK = 100  # second-phase rerank-count of the MaxSim profiles (per content node)
RRF_K = 60  # Vespa's reciprocal_rank_fusion default
BM25_WEIGHT = 1.0  # hybrid-linear's weight of normalised BM25 beside normalised closeness, unless chosen
# What `siamese run` chooses from, on the training queries. Not 0: that is the semantic profile, and the
# training queries, which the model has learnt, pull towards it (docs/fusion.md).
BM25_WEIGHT_GRID = (0.1, 0.2, 0.3, 0.5, 1.0)
