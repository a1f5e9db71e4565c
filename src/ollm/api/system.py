"""Operations routes: ``/ready``, ``/metrics`` and ``/api/v1/system``.

``/health`` stays in :mod:`ollm.api.app`. ``/ready`` and ``/metrics`` are open even with
``--auth`` (probes and scrapers carry no account); ``/api/v1/system`` needs a user then.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ollm.api.http.auth import authenticate
from ollm.observability import Metrics
from ollm.observability.metrics import CONTENT_TYPE
from ollm.observability.readiness import Check, check_database, check_default_model
from ollm.services.system.info import SystemInfo, SystemInfoService

router = APIRouter(tags=["system"])


def get_metrics(request: Request) -> Metrics:
    """The app's metrics (built by ``create_app``)."""
    return request.app.state.metrics


def get_system_info(request: Request) -> SystemInfoService:
    """The system-info service (built by the lifespan)."""
    return request.app.state.system_info


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SystemInfoDep = Annotated[SystemInfoService, Depends(get_system_info)]


@router.get(
    "/ready",
    responses={503: {"description": "Not ready: the failed checks say why."}},
)
async def ready(request: Request) -> JSONResponse:
    """Readiness: the default model is loaded or loadable, and the database answers."""
    state = request.app.state
    settings = state.settings
    database = await check_database(getattr(state, "database", None))
    model = check_default_model(getattr(state, "models", None), settings.default_model)
    checks = {"database": database, "default_model": model}
    drain = getattr(state, "drain", None)  # graceful shutdown (ollm.api.http.shutdown)
    if drain is not None and drain.draining:
        checks["accepting"] = Check(False, "the server is shutting down")
    failed = [name for name, check in checks.items() if not check.ok]
    body = {
        "status": "not ready" if failed else "ready",
        "checks": {name: check.as_dict() for name, check in checks.items()},
    }
    if failed:
        body["failed"] = failed
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics", response_class=Response)
async def metrics(collected: MetricsDep) -> Response:
    """Prometheus text format (open, like ``/health``: counts and model ids only)."""
    return Response(collected.render(), media_type=CONTENT_TYPE)


@router.get("/api/v1/system", dependencies=[Depends(authenticate)])
async def system(info: SystemInfoDep) -> SystemInfo:
    """The machine (CPU, cores, RAM, GPUs), the backend, versions and loaded models."""
    return await info.snapshot()
