"""The life of a deployment, over HTTP: ``deploy`` a package, ``feed`` documents, ``query`` through the Vespa
query API; ``http`` holds what all three share (reaching Vespa, its two errors)."""
