"""`siamese run`: ``options`` (its flags as data), ``pipeline`` (every stage in order), ``rows`` (the report's
exact-search rows), ``fusion_weight`` (hybrid-linear's BM25 weight) and ``report`` (report.md, plot.png)."""
