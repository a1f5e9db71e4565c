"""Models: names, the registry of what is installed, pulls, residency in memory and the service
that loads a model onto a backend."""
