"""System: what the host has (CPU, memory, accelerators) and what the server runs."""
