"""Inference: one completion from a prompt or messages, queued fairly, streamed back."""
