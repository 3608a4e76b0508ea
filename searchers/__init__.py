"""Searchers: propose architectures (ask) and learn from evaluated ones (tell)."""
