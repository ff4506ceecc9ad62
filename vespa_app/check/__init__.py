"""Is a package one Vespa accepts, and does it serve what we trained? ``structure`` (files, the config model,
the embedder) and ``container`` (feed and query through Vespa's own container code) drive Vespa's Java in
``verify/``; ``judges`` (with ``query_tree`` and ``colbert_bits``)
judges its answers against the bounds of ``bounds``."""
