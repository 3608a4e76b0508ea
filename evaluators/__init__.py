"""Evaluators: architecture -> Result (benchmark tables, surrogates, or real training)."""
