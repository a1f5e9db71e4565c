"""Making a model as Ollama's ``/api/create`` does: a name for existing weights (another
model's, or an uploaded GGUF blob's) with a preset layered over them.

No weights are copied or converted: a created model is one more manifest record, naming
the same file as its base, with its :class:`~ollm.services.models.preset.ModelPreset`.
Everything is checked before anything is written, so a refused create changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollm.chat.messages import ChatMessage, Role
from ollm.chat.template import ChatTemplate
from ollm.errors import InvalidRequestError, OllmError
from ollm.model_names import canonical_name
from ollm.services.models.blobs import BlobStore
from ollm.services.models.preset import ModelPreset
from ollm.services.models.registry import Registry

# Go's text/template, which Ollama's TEMPLATE is written in: {{ .System }}, {{ range ...
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(?:\.[A-Za-z]|(?:range|if|with|end|else|define|block)\b)")

# The statuses a create reports, in Ollama's words.
READING = "reading model metadata"
SYSTEM_LAYER = "creating system layer"
TEMPLATE_LAYER = "creating template layer"
PARAMS_LAYER = "creating parameters layer"
MESSAGES_LAYER = "creating messages layer"
LICENSE_LAYER = "creating license layer"
WRITING = "writing manifest"
SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """What to make: ``name`` from model ``base`` or from the GGUF blob ``blob`` (hex
    sha256), with what to layer over it (None: inherit the base's; "" clears it)."""

    name: str
    base: str | None = None
    blob: str | None = None
    system: str | None = None
    template: str | None = None
    license: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: Sequence[tuple[Role, str]] | None = None


def create_model(registry: Registry, blobs: BlobStore, spec: CreateSpec) -> list[str]:
    """Record the model ``spec`` describes; the statuses of the steps taken, as Ollama
    streams them. 400 for what cannot be made (a bundled name, a blob that is missing or
    not GGUF, a template that does not compile), 404 for an unknown base."""
    model_id = canonical_name(spec.name)
    registry.refuse_protected(model_id, "overwritten")
    if (spec.base is None) == (spec.blob is None):
        raise InvalidRequestError("give either 'from' (a model) or 'files' (one GGUF blob)")
    statuses = [READING]
    if spec.base is not None:
        base = registry.resolve(spec.base)
        path, digest, inherited = base.path, base.cached_digest, base.preset or ModelPreset()
        parent = base.model_id
    else:
        assert spec.blob is not None
        path, digest, inherited = _blob_file(registry, blobs, spec.blob), spec.blob, ModelPreset()
        parent = ""
    preset = inherited.derive(
        parent=parent,
        system=spec.system,
        template=spec.template,
        license=spec.license,
        parameters=spec.parameters,
        messages=spec.messages,
    )
    if spec.template:
        check_template(spec.template)
    statuses += _layer_statuses(spec)
    statuses.append(WRITING)
    source = f"created from {parent}" if parent else f"created from blob sha256:{spec.blob}"
    registry.add(model_id, path, digest=digest, source=source, preset=preset)
    statuses.append(SUCCESS)
    return statuses


def _blob_file(registry: Registry, blobs: BlobStore, sha256: str) -> Path:
    if not blobs.exists(sha256):
        raise InvalidRequestError(
            f"blob sha256:{sha256} was not uploaded; send it first with POST /api/blobs/"
            f"sha256:{sha256}",
            param="files",
        )
    path = blobs.path(sha256)
    if not blobs.is_gguf(sha256) or registry.gguf_info(path) is None:
        raise InvalidRequestError(
            f"blob sha256:{sha256} is not a GGUF file (the only format ollm serves)",
            param="files",
        )
    return path


def check_template(source: str) -> None:
    """400 unless ``source`` is a Jinja chat template that renders a user turn."""
    try:
        ChatTemplate(source).render([ChatMessage(role="user", content="hello")])
    except OllmError as exc:
        if _GO_TEMPLATE.search(source):
            raise InvalidRequestError(
                "the template is a Go template (Ollama's {{ .Prompt }} form); ollm renders "
                "Jinja chat templates, the form of a GGUF file's tokenizer.chat_template "
                "({% for message in messages %}...)",
                param="template",
            ) from exc
        raise InvalidRequestError(f"the template cannot be used: {exc}", param="template") from exc


def _layer_statuses(spec: CreateSpec) -> list[str]:
    layers = [
        (spec.template, TEMPLATE_LAYER),
        (spec.system, SYSTEM_LAYER),
        (spec.parameters or None, PARAMS_LAYER),
        (spec.messages, MESSAGES_LAYER),
        (spec.license, LICENSE_LAYER),
    ]
    return [status for value, status in layers if value is not None]
