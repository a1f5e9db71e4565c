"""OLLM_HOST may carry a port or scheme, as OLLAMA_HOST does, for server and CLI alike."""

import pytest

from ollm.settings import load_settings, split_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", None)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("http://localhost:9001", ("localhost", 9001)),
        ("[::1]:9002", ("::1", 9002)),
        ("::1", ("::1", None)),
        (":9003", ("127.0.0.1", 9003)),
    ],
)
def test_split_host_port(value, expected):
    assert split_host_port(value) == expected


def test_env_host_with_port_sets_both_unless_a_port_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("OLLM_HOST", "127.0.0.1:9100")
    settings = load_settings(home=tmp_path)
    assert (settings.host, settings.port) == ("127.0.0.1", 9100)
    assert load_settings(home=tmp_path, port=9200).port == 9200


def test_bad_port_in_host_is_rejected(monkeypatch, tmp_path):
    monkeypatch.setenv("OLLM_HOST", "127.0.0.1:http")
    with pytest.raises(ValueError, match="invalid port"):
        load_settings(home=tmp_path)
