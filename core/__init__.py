"""Shared by the model and serving stages: the feature definitions (offline and online)."""
