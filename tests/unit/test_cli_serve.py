"""The ``ollm`` command line: bad settings fail loudly before anything starts."""

from typer.testing import CliRunner

from ollm.cli.main import app


def test_invalid_flag_value_is_reported_and_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), "--max-running", "0"])
    assert result.exit_code == 2
    assert "max_running" in result.output


def test_invalid_environment_value_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLM_LOG_LEVEL", "chatty")
    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert "log_level" in result.output


def test_version_prints_the_package_version():
    from ollm import __version__

    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip() == __version__
