"""Placeholder: filled in by the training-time methods work (issue 5)."""
