"""Backends run the forward pass; the engine drives them through :class:`Backend`."""
