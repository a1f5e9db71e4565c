"""Settings from flags > OLLM_* environment > ollm.toml > defaults, and `ollm config show`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ollm.cli.config_cmd import MASK, mask
from ollm.cli.main import app
from ollm.settings import ConfigFileError, Settings, load_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An OLLM_HOME with nothing else from the environment."""
    for name in ("OLLM_PORT", "OLLM_MAX_RUNNING", "OLLM_THREADS", "OLLM_CONFIG", "OLLM_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLM_HOME", str(tmp_path))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_file_in_home_is_read_with_an_engine_table(home: Path) -> None:
    write(home / "ollm.toml", 'port = 9001\nlog_level = "debug"\n[engine]\nmax_running = 3\n')
    settings = load_settings()
    assert (settings.port, settings.log_level, settings.engine.max_running) == (9001, "debug", 3)


def test_flags_beat_environment_beat_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / "ollm.toml", "port = 9001\nshutdown_grace = 7\n[engine]\nthreads = 1\n")
    monkeypatch.setenv("OLLM_PORT", "9002")
    monkeypatch.setenv("OLLM_THREADS", "2")
    settings = load_settings(engine={"max_running": 5, "threads": None})
    assert settings.port == 9002 and settings.engine.threads == 2  # env over file
    assert settings.shutdown_grace == 7 and settings.engine.max_running == 5
    assert load_settings(port=9003).port == 9003  # flag over env


def test_explicit_config_file_wins_over_the_one_in_home(
    home: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home / "ollm.toml", "port = 9001\n")
    other = write(tmp_path_factory.mktemp("elsewhere") / "x.toml", "port = 9005\n")
    assert load_settings(config=other).port == 9005
    monkeypatch.setenv("OLLM_CONFIG", str(other))
    assert load_settings().port == 9005


def test_unknown_keys_in_the_file_fail_loudly(home: Path) -> None:
    write(home / "ollm.toml", "prot = 1\n[engine]\nmax_runing = 2\n")
    with pytest.raises(ValidationError) as caught:
        load_settings()
    locations = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert locations == {"prot", "engine.max_runing"}


def test_missing_explicit_file_and_bad_toml_are_errors(home: Path) -> None:
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_settings(config=home / "nope.toml")
    write(home / "ollm.toml", "port = \n")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("prot = 1\n", "invalid setting prot: unknown setting"),
        ("port = 99999\n", "invalid setting port"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_serve_exits_2_on_a_bad_file(home: Path, toml: str, expected: str) -> None:
    write(home / "ollm.toml", toml)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())


def test_config_show_masks_secrets_and_names_sources(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        home / "ollm.toml",
        'port = 9001\ndatabase_url = "postgresql://bob:hunter2@db/ollm"\n[engine]\nthreads = 1\n',
    )
    monkeypatch.setenv("OLLM_MAX_RUNNING", "4")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    lines = {line.split(" = ")[0]: line for line in result.output.splitlines() if " = " in line}
    assert "hunter2" not in result.output
    assert MASK in lines["database_url"] and lines["database_url"].endswith("# file")
    assert lines["port"].startswith("port = 9001") and lines["port"].endswith("# file")
    assert lines["max_running"].endswith("# env") and lines["threads"].endswith("# file")
    assert lines["host"].endswith("# default")
    assert "[engine]" in result.output and str(home / "ollm.toml") in result.output


def test_config_show_reports_bad_settings_with_exit_2(home: Path) -> None:
    write(home / "ollm.toml", "[engine]\nmax_running = 0\n")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2 and "engine.max_running" in result.output


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("api_key", "ollm-abc", MASK),
        ("session_secret", "s", MASK),
        ("hf_token", "t", MASK),
        ("admin_password", "p", MASK),
        ("max_step_tokens", 512, 512),
        ("keep_alive", 300.0, 300.0),
        ("api_key", None, None),
        ("database_url", "postgresql+asyncpg://u:pw@h/db", f"postgresql+asyncpg://u:{MASK}@h/db"),
    ],
)
def test_mask(name: str, value: object, shown: object) -> None:
    assert mask(name, value) == shown


def test_kv_cache_type_and_flash_attention(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLLM_KV_CACHE_TYPE", "q8_0")
    assert Settings(home=tmp_path).engine.kv_cache_type == "q8_0"
    monkeypatch.setenv("OLLM_FLASH_ATTENTION", "off")
    with pytest.raises(ValueError, match="needs flash attention"):
        Settings(home=tmp_path)
    monkeypatch.setenv("OLLM_KV_CACHE_TYPE", "q2_k")
    with pytest.raises(ValueError):
        Settings(home=tmp_path)


def test_the_kv_pool_layout() -> None:
    from ollm.settings import EngineSettings

    # Default: one 8,192-cell pool; a sequence may use all of it, up to the trained context.
    assert EngineSettings().kv_layout(8192) == (8192, 8192)
    assert EngineSettings().kv_layout(2048) == (8192, 2048)
    # A chosen context keeps its memory (max_running of them) and caps each sequence.
    assert EngineSettings(max_running=4, context_per_sequence=1024).kv_layout(8192) == (4096, 1024)
    assert EngineSettings(kv_pool_cells=20000).kv_layout(32768) == (20000, 20000)
    assert EngineSettings(kv_pool_cells=0).kv_layout(8192) == (None, 4096)  # fixed slots
