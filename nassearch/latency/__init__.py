"""Network graphs of built models and latency timing."""
