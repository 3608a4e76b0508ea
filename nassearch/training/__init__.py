"""Training networks for real: datasets, the train/evaluate loops, final training (``nassearch retrain``)."""
