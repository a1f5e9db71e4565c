"""Model-manager settings: durations and sizes as people write them, loud on bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ollm.settings import Settings, parse_byte_size, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (300, 300.0),
        (0, 0.0),
        (-1, -1.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("-1", -1.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("-5m", -300.0),
        ("0s", 0.0),
    ],
)
def test_durations(text: float | str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "m", "1.2.3s", "5 m", "forever", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), ("2048", 2048), ("512M", 512 << 20), ("8GiB", 8 << 30), ("1.5g", 3 << 29)],
)
def test_sizes(text: int | str, size: int) -> None:
    assert parse_byte_size(text) == size


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLM_KEEP_ALIVE", "10m")
    monkeypatch.setenv("OLLM_MEMORY_BUDGET", "2G")
    monkeypatch.setenv("OLLM_MAX_LOADED_MODELS", "2")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    settings = Settings()
    assert settings.keep_alive == 600.0
    assert settings.memory_budget == 2 << 30
    assert settings.max_loaded_models == 2
    assert settings.hf_endpoint == "http://127.0.0.1:9"
    monkeypatch.setenv("OLLM_HF_ENDPOINT", "http://127.0.0.1:8")
    assert Settings().hf_endpoint == "http://127.0.0.1:8"  # ollm's own variable wins


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OLLM_KEEP_ALIVE", "OLLM_MEMORY_BUDGET", "OLLM_MAX_LOADED_MODELS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.keep_alive, settings.memory_budget, settings.max_loaded_models) == (
        300.0,
        None,
        3,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("keep_alive", "soon"), ("memory_budget", "lots"), ("max_loaded_models", 0)],
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
