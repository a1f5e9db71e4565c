"""``ollm config show``: the effective settings, where each came from, secrets masked.

The output is TOML (values a TOML file can hold; unset ones are comments), so it can be
copied into ``ollm.toml`` as a starting point. Loading uses the server's own path
(:func:`ollm.settings.load_settings`), so what is shown is what ``ollm serve`` would use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from ollm.settings import (
    ConfigFileError,
    FlatEngineEnvSource,
    Settings,
    config_file_path,
    load_settings,
    toml_source,
)

app = typer.Typer(help="Show the server's settings.", no_args_is_help=True)

MASK = "********"
_SECRET_NAME = re.compile(r"secret|password|passwd|(^|_)token$|(^|_)key$|api_?key")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (OLLM_CONFIG; default $OLLM_HOME/ollm.toml if present).",
        show_default=False,
    ),
]


def report_settings_error(console: Console, exc: ValidationError | ConfigFileError) -> None:
    """Print what is wrong with the settings, one line per problem (callers exit 2)."""
    if isinstance(exc, ConfigFileError):
        console.print(f"[red]invalid settings file:[/red] {escape(str(exc))}")
        return
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        console.print(f"[red]invalid setting {escape(field)}:[/red] {escape(message)}")


def mask(name: str, value: Any) -> Any:
    """``value`` fit to print: secrets starred, a password inside a URL starred."""
    if isinstance(value, SecretStr) or (_SECRET_NAME.search(name) and value not in (None, "")):
        return MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\1{MASK}@", value)
    return value


def origins(flags: dict[str, Any]) -> tuple[dict[str, str], Path | None]:
    """Where each explicitly set value came from (``flag``, ``env``, ``file``), by dotted
    name, and the settings file read (if any). Anything missing is a default."""
    env = {_field_name(key): value for key, value in FlatEngineEnvSource(Settings)().items()}
    path = config_file_path({**env, **flags})
    found: dict[str, str] = {}
    for source, values in (("file", toml_source(Settings, path)()), ("env", env), ("flag", flags)):
        for key, value in values.items():
            if key == "engine" and isinstance(value, dict):
                found.update({f"engine.{k}": source for k in value})
            else:
                found[_field_name(key)] = source
    return found, path


def _field_name(key: str) -> str:
    # Env values come keyed by field name, or by an alias such as HF_ENDPOINT.
    return key.lower().removeprefix("ollm_")


def render(settings: Settings, found: dict[str, str], path: Path | None) -> str:
    """The settings as TOML lines, each with a comment naming its source."""
    file_label = f"file {path}" if path else "file (none found)"
    lines = [f"# effective settings: flags > OLLM_* environment > {file_label} > defaults"]
    lines += _render_model(settings, "", found)
    return "\n".join(lines)


def _render_model(model: BaseModel, prefix: str, found: dict[str, str]) -> list[str]:
    scalars: list[str] = []
    tables: list[str] = []
    for name in type(model).model_fields:
        if not prefix and name == "config":
            continue  # the header names the file read
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            tables += ["", f"[{prefix}{name}]", *_render_model(value, f"{prefix}{name}.", found)]
            continue
        origin = found.get(prefix + name, "default")
        shown = mask(name, value)
        if shown is None:
            scalars.append(f"# {name} is unset  ({origin})")
        else:
            scalars.append(f"{f'{name} = {_toml_value(shown)}':<48} # {origin}")
    return scalars + tables


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value) if isinstance(value, Path) else value, default=str)


@app.command()
def show(
    config: ConfigOption = None,
    home: Annotated[
        Path | None, typer.Option(help="Data directory (OLLM_HOME).", show_default=False)
    ] = None,
) -> None:
    """Print the effective settings of `ollm serve` with their sources; secrets are masked."""
    flags = {k: v for k, v in {"config": config, "home": home}.items() if v is not None}
    console = Console(stderr=True)
    try:
        settings = load_settings(**flags)
        found, path = origins(flags)
    except (ValidationError, ConfigFileError) as exc:
        report_settings_error(console, exc)
        raise typer.Exit(2) from None
    typer.echo(render(settings, found, path))
