"""The Vespa application: package, checks with Vespa's own
code, deploy, feed, query, and an embedded backend."""
