"""Services: the layer between API routes and the engine, one subpackage per domain.

Each subpackage's ``__init__`` holds only a docstring: importing a module never pulls in a
sibling domain, which keeps the import graph free of cycles.
"""
