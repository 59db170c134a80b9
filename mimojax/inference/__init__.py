"""Restored models at inference: evaluation as the papers report it."""
