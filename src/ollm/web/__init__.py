"""The built web UI: ``dist/`` is written by ``scripts/build-web.sh`` (source in ``web/``)
and shipped as package data, so an installed ollm serves it without node."""

from __future__ import annotations

from pathlib import Path

DIST = Path(__file__).resolve().parent / "dist"
