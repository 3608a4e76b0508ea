"""Evaluators: architecture -> Result (benchmark tables, surrogates, real training, or latency measured here)."""
