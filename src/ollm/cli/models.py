"""Model commands: ``list``, ``ps``, ``show``, ``pull``, ``rm``, ``cp``, ``stop``.

Each is a thin HTTP call to the running server plus a Rich rendering; ``main.py``
registers them on the Typer app.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ollm.cli.client import ClientError
from ollm.cli.common import (
    ApiKeyOption,
    HostOption,
    open_client,
    print_table,
    report_errors,
    stdout,
)
from ollm.cli.render import PullProgress, model_details, models_table, running_table

ModelArg = Annotated[str, typer.Argument(help="Model name, such as smollm2:135m.")]


def list_models(ctx: typer.Context, host: HostOption = None, api_key: ApiKeyOption = None) -> None:
    """List the models the server has."""
    with open_client(ctx, host, api_key) as client, report_errors():
        models = client.tags()
    print_table(stdout(), models_table(models))


def ps(ctx: typer.Context, host: HostOption = None, api_key: ApiKeyOption = None) -> None:
    """List the models loaded in memory now."""
    with open_client(ctx, host, api_key) as client, report_errors():
        models = client.ps()
    print_table(stdout(), running_table(models))


def show(
    ctx: typer.Context, model: ModelArg, host: HostOption = None, api_key: ApiKeyOption = None
) -> None:
    """Show a model's details: architecture, size, parameters, license."""
    with open_client(ctx, host, api_key) as client, report_errors():
        details = client.show(model)
    print_table(stdout(), model_details(details))


def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What to pull, such as hf.co/ORG/REPO:QUANT.")],
    host: HostOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Download a model, with a progress bar."""
    with (
        open_client(ctx, host, api_key) as client,
        report_errors(),
        PullProgress(stdout()) as progress,
    ):
        for event in client.pull(name):
            progress.update(event)


def rm(
    ctx: typer.Context,
    models: Annotated[list[str], typer.Argument(help="Models to delete.")],
    host: HostOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete one or more models."""
    with open_client(ctx, host, api_key) as client, report_errors():
        for model in models:
            client.delete(model)
            stdout().print(f"deleted '{escape(model)}'")


def cp(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The model to copy.")],
    destination: Annotated[str, typer.Argument(help="Its new name.")],
    host: HostOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Copy a model under a new name."""
    with open_client(ctx, host, api_key) as client, report_errors():
        client.copy(source, destination)
    stdout().print(f"copied '{escape(source)}' to '{escape(destination)}'")


def _same_model(name: str, entry: dict[str, Any]) -> bool:
    """Does a ``/api/ps`` entry name this model (``x`` also matches ``x:latest``)?"""
    names = {entry.get("name"), entry.get("model")}
    return name in names or f"{name}:latest" in names


def stop(
    ctx: typer.Context, model: ModelArg, host: HostOption = None, api_key: ApiKeyOption = None
) -> None:
    """Unload a running model now."""
    with open_client(ctx, host, api_key) as client, report_errors():
        if not any(_same_model(model, entry) for entry in client.ps()):
            raise ClientError(f'couldn\'t find model "{model}" to stop')
        client.unload(model)
