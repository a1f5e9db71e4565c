"""``python -m ollm`` is the ``ollm`` command."""

from ollm.cli.main import app

app()
