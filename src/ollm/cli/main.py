"""The ``ollm`` command line (Typer). ``ollm serve`` runs the server.

The other commands are HTTP clients of a running server (``OLLM_HOST``): ``run`` in
``run.py``, the model commands in ``models.py``, ``chats`` (chats kept on the server) in
``chats.py``.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from ollm import __version__
from ollm.cli import chats, config_cmd, models
from ollm.cli.admin import register_admin_commands
from ollm.cli.run import run
from ollm.settings import ConfigFileError, is_loopback_host, load_settings

app = typer.Typer(help="ollm: a self-hosted LLM server.", no_args_is_help=True)
console = Console(stderr=True)
register_admin_commands(app)
app.add_typer(config_cmd.app, name="config")


@app.callback()
def main() -> None:
    """Serve local language models over OpenAI- and Ollama-compatible APIs."""


@app.command()
def version() -> None:
    """Print ollm's version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    home: Annotated[Path | None, typer.Option(help="Data directory (OLLM_HOME).")] = None,
    default_model: Annotated[str | None, typer.Option(help="Default model id.")] = None,
    max_running: Annotated[int | None, typer.Option(help="Sequences batched together.")] = None,
    max_waiting: Annotated[int | None, typer.Option(help="Requests allowed to wait.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for inference.")] = None,
    context_per_sequence: Annotated[
        int | None, typer.Option(help="Context window of each sequence, in tokens.")
    ] = None,
    step_target_ms: Annotated[
        float | None, typer.Option(help="Target time between tokens while prefilling.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one JSON object per line.")
    ] = None,
    log_prompts: Annotated[
        bool | None,
        typer.Option(
            "--log-prompts",
            help="Allow prompts in debug logs (off by default).",
            show_default=False,
        ),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(help="Seconds running replies get to finish on SIGTERM (default 10)."),
    ] = None,
    config: config_cmd.ConfigOption = None,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="Require a login or an API key on every endpoint (OLLM_AUTH).",
            show_default=False,
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool | None,
        typer.Option(
            "--insecure-no-auth",
            help="Allow a non-loopback --host without auth: anyone who reaches it can use it.",
            show_default=False,
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Host names clients use to reach a non-loopback --host (OLLM_ALLOWED_HOSTS)."
        ),
    ] = None,
) -> None:
    """Start the HTTP server (OpenAI API under /v1)."""
    import uvicorn

    from ollm.api.app import create_app, interrupt_running
    from ollm.api.http.shutdown import DrainingServer
    from ollm.logs import configure_logging

    try:
        settings = load_settings(
            host=host,
            port=port,
            home=home,
            default_model=default_model,
            log_level=log_level,
            log_format=log_format,
            log_prompts=log_prompts,
            shutdown_grace=shutdown_grace,
            config=config,
            auth=auth,
            insecure_no_auth=insecure_no_auth,
            allowed_hosts=allowed_hosts,
            engine={
                "max_running": max_running,
                "max_waiting": max_waiting,
                "threads": threads,
                "context_per_sequence": context_per_sequence,
                "step_target_ms": step_target_ms,
            },
        )
    except (ValidationError, ConfigFileError) as exc:
        config_cmd.report_settings_error(console, exc)
        raise typer.Exit(2) from None
    if settings.exposed_without_auth and not settings.insecure_no_auth:
        console.print(
            f"[red]refusing to serve {settings.host} without authentication:[/red] anyone "
            "who can reach it could use the models and read every chat.\n"
            "Enable auth with [bold]--auth[/bold] (or OLLM_AUTH=true), then create the first "
            "account with [bold]ollm users add NAME --admin[/bold] or by signing up; or "
            "listen on 127.0.0.1; or, if you really mean it, pass --insecure-no-auth."
        )
        raise typer.Exit(2)
    if not is_loopback_host(settings.host) and not settings.allowed_hosts:
        console.print(
            f"[red]refusing to serve {settings.host} without OLLM_ALLOWED_HOSTS:[/red] "
            "a server reachable from other machines must know the names clients use for it "
            "(any other Host header is refused, so a rebound DNS name cannot reach it).\n"
            "Pass [bold]--allowed-hosts ollm.example.org,192.168.1.20[/bold] (or set "
            "OLLM_ALLOWED_HOSTS); '*' accepts any name when a proxy checks Host instead."
        )
        raise typer.Exit(2)
    if settings.exposed_without_auth:
        console.print(
            f"[yellow]warning:[/yellow] serving {settings.host} without authentication "
            "(--insecure-no-auth): anyone who can reach it can use it and read every chat."
        )
    configure_logging(settings.log_level, settings.log_format)
    settings.home.mkdir(parents=True, exist_ok=True)
    application = create_app(settings)
    listening = (
        f"ollm {__version__} listening on [bold]http://{settings.host}:{settings.port}[/bold]"
        f"  (default model: [bold]{settings.default_model}[/bold], data: {settings.home})"
    )
    if settings.log_format == "json":  # keep stderr pure JSON lines
        logging.getLogger("ollm").info(Text.from_markup(listening).plain)
    else:
        console.print(listening)
    server_config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,  # configured above; uvicorn's loggers share ollm's handler
        log_level=settings.log_level.lower(),
        # After our drain (grace, then interrupt), what is left only has to finish writing.
        timeout_graceful_shutdown=5,
        # Forwarded headers only from the proxies named: trusting any would let a client
        # pick its own address (and so its rate-limit bucket) with X-Forwarded-For.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
    )
    server = DrainingServer(
        server_config, application.state.drain, partial(interrupt_running, application)
    )
    server.run()


app.command()(run)
app.command("list")(models.list_models)
app.command()(models.ps)
app.command()(models.show)
app.command()(models.pull)
app.command()(models.rm)
app.command()(models.cp)
app.command()(models.stop)
app.command("chats")(chats.list_chats)
