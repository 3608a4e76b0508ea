"""Performance predictors: learn (ArchGraph, target) pairs. No predictor imports a space."""
