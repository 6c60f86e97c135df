"""Operations routes: /ready (may this process get traffic?) and /metrics (Prometheus text format).

``/health`` (api/app.py) says the process is alive; ``/ready`` checks what answering needs, each
check at once and within ``ready_timeout_s``: the catalogue database (``SELECT 1`` on a connection
beside the request pool), the storage (one stat through the Storage seam) and the job queue when the
hub has one. 200 when all pass, else 503; either way the body names every check with its status and,
for a failed one, why (no URL, password or key). HEAD answers the same status without the body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.readiness import run_checks
from catalogue.errors import NotReady

router = APIRouter()


ENVELOPE = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}


@router.get("/ready", tags=["service"], responses={503: {
    "description": "A check failed: `error` says which and why, beside `checks` (each check's status) and `failed`.",
    "content": ENVELOPE}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database, the storage and (when configured) the job queue answer."""
    checks = await run_checks(request.app.state.hub, request.app.state.loop_reads)
    failed = [name for name, check in checks.items() if not check.ok]
    body: dict[str, object] = {
        "status": "ready" if not failed else "unavailable",
        "checks": {name: check.as_json() for name, check in checks.items()},
    }
    if failed:
        body["failed"] = failed
        why = "; ".join(f"{name}: {checks[name].detail}" for name in failed)
        body["error"] = NotReady(f"This server is not ready to answer requests ({why}). Check that service and "
                                 "the settings pointing at it; /ready answers 200 once every check passes.").to_dict()
    return JSONResponse(body, status_code=503 if failed else 200, headers={"Cache-Control": "no-store"})


@router.get("/metrics", tags=["service"], response_class=Response, responses={200: {
    "description": "The Prometheus text exposition format.", "content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """The app's metrics in the Prometheus text exposition format (read from the database at each scrape)."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
