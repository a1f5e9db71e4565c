"""Dialect-neutral chat messages and prompt rendering with the model's own template."""
