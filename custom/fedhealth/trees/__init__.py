"""Gradient-boosted trees (XGBoost) for tabular tasks, FLARE-free: the model, its matrices, bagging."""
