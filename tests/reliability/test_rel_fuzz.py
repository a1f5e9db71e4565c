"""Fuzz: schemathesis over the server's own OpenAPI schema (``/v1``, ``/api``, ``/api/v1``).

Checks: no 5xx (``not_a_server_error``) and responses that match the documented schema
(``response_schema_conformance``). Status codes are not checked against the schema: FastAPI
documents 422 for validation errors, and this server answers 400 in each dialect's shape.

Two runs: many examples in-process over the fake backend (fast), a few against the real
server. On top of what the schema generates, about half the cases get one string leaf of
their body spiked with a lone UTF-16 surrogate, or one number leaf replaced by NaN,
Infinity or 1e400: each must be a 4xx, never a 5xx. Generated ``max_tokens`` and
``num_predict`` are capped so a case cannot generate for minutes. ``/api/pull`` is left
out: it would reach the Hugging Face Hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from ollm.api.app import create_app
from ollm.backends.fake import FakeBackend
from ollm.services.models.service import ModelEntry, ModelService
from ollm.settings import EngineSettings, Settings

pytestmark = [pytest.mark.timeout(int(os.environ.get("OLLM_FUZZ_TIMEOUT", "180")))]

CHECKS = [not_a_server_error, response_schema_conformance]
PATHS = r"^/(v1|api)/"
MAX_GENERATED = 8


def _cap_generation(body: Any) -> None:
    """Keep a generated request's reply short (it stays a valid or invalid request)."""
    if not isinstance(body, dict):
        return
    for field in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(field), int) and body[field] > MAX_GENERATED:
            body[field] = MAX_GENERATED
    options = body.get("options")
    predict = options.get("num_predict") if isinstance(options, dict) else None
    if isinstance(predict, int) and not 0 <= predict <= MAX_GENERATED:
        options["num_predict"] = MAX_GENERATED  # type: ignore[index]


@pytest.fixture(scope="module")
def fake_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real app over the fake backend, its schema loaded in-process (ASGI)."""
    home = tmp_path_factory.mktemp("fuzz-home")
    weights = Path(home) / "fake.gguf"
    weights.write_bytes(b"not really a model")
    engine = EngineSettings(max_running=4, max_waiting=64, context_per_sequence=256, threads=1)
    config = Settings(
        home=home,
        default_model="fake:1",
        engine=engine,
        preload_default_model=False,
        allowed_hosts=["testserver"],  # the host name schemathesis' ASGI client sends
    )

    def loader(_path: Path, eng: EngineSettings) -> FakeBackend:
        return FakeBackend(
            num_sequences=eng.max_running, context_per_sequence=eng.context_per_sequence
        )

    models = ModelService(config, entries=[ModelEntry("fake:1", weights)], loader=loader)
    app = create_app(config, models=models)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema.include(path_regex=PATHS).exclude(path="/api/pull")
    asgi.shutdown_lifespans()  # stop the engine threads the schemathesis lifespan started


@pytest.fixture(scope="module")
def real_schema(load_server: str) -> Any:
    """The real server's schema, over HTTP."""
    schema = schemathesis.openapi.from_url(f"{load_server}/openapi.json")
    return schema.include(path_regex=PATHS).exclude(path="/api/pull")


# What hostile clients send where text or numbers go: each must be refused at the edge.
LONE_SURROGATES = ("\ud800", "\udfff", "a\udc00b", "\ud83d")  # the last: half an emoji
NON_FINITE = (float("inf"), float("-inf"), float("nan"), 10.0**308 * 10)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, scalar) of a JSON document."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _poison(body: Any, data: st.DataObject) -> str | None:
    """Maybe replace one string leaf (lone surrogate) or number leaf (non-finite) of
    ``body`` in place; what was done, or None."""
    if not isinstance(body, dict | list) or not data.draw(st.booleans(), label="poison"):
        return None
    leaves = _leaves(body)
    strings = [p for p, v in leaves if isinstance(v, str) and p]
    numbers = [p for p, v in leaves if isinstance(v, int | float) and not isinstance(v, bool)]
    kinds = [k for k, found in (("surrogate", strings), ("non-finite", numbers)) if found]
    if not kinds:
        return None
    kind = data.draw(st.sampled_from(kinds), label="kind")
    path = data.draw(st.sampled_from(strings if kind == "surrogate" else numbers), label="leaf")
    target = body
    for key in path[:-1]:
        target = target[key]
    if kind == "surrogate":
        target[path[-1]] = target[path[-1]] + data.draw(st.sampled_from(LONE_SURROGATES))
    else:
        target[path[-1]] = data.draw(st.sampled_from(NON_FINITE))
    return kind


def fuzz(schema: Any, max_examples: int, **call: Any) -> tuple[list[str], dict[str, int]]:
    """Run every operation of ``schema`` for ``max_examples`` generated cases; return the
    failures, one line each. (schemathesis' pytest loader, ``from_fixture``, does not run
    under pytest 9, so hypothesis drives each operation's strategy directly.)"""
    failures = []
    counts = {"operations": 0, "calls": 0, "4xx": 0, "poisoned": 0}
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1

        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), data=st.data())
        def run(case: Any, data: st.DataObject) -> None:
            _cap_generation(case.body)
            poisoned = _poison(case.body, data)
            if poisoned == "non-finite":
                # HTTP clients refuse to write NaN into JSON; a hostile one writes it by
                # hand. As text/plain (no CORS preflight), which this server reads as JSON.
                case.media_type = "text/plain"
                case.body = json.dumps(case.body, allow_nan=True)
            response = case.call_and_validate(checks=CHECKS, **call)
            counts["calls"] += 1
            counts["4xx"] += 400 <= response.status_code < 500
            if poisoned is not None:
                counts["poisoned"] += 1
                assert 400 <= response.status_code < 500, (
                    f"a body with a {poisoned} value got {response.status_code}"
                )

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:2000]}")
    return failures, counts


def test_fuzz_fake_backend(fake_schema: Any) -> None:
    # OLLM_FUZZ_EXAMPLES digs deeper by hand (e.g. 500); the suite's 25 keep it quick.
    failures, counts = fuzz(fake_schema, int(os.environ.get("OLLM_FUZZ_EXAMPLES", "25")))
    report("fuzz-fake-backend", counts)
    assert counts["calls"] >= counts["operations"] * 5
    assert counts["poisoned"] >= counts["operations"]  # the spiked cases did run
    assert not failures, "\n\n".join(failures)


@pytest.mark.integration
def test_fuzz_real_server(real_schema: Any) -> None:
    failures, counts = fuzz(real_schema, 4, timeout=60)
    report("fuzz-real-server", counts)
    assert not failures, "\n\n".join(failures)
