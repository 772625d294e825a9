"""Helpers shared by ess's own tests (importable as ``support``: pyproject sets ``pythonpath = ["tests"]``)."""
