"""Pushed deliveries: ``POST /datasets/{name}/deliveries`` with a token of the dataset's publisher.

HTTP only: the token and its scope, the size cap (413 before reading when
Content-Length says so, else as soon as the stream passes it), the body
streamed to a scratch file (never held whole in memory), Idempotency-Key and
If-Match. The ingest itself (catalogue/ingest/push.py) is synchronous and
runs in the threadpool.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from api.auth import require_publisher, require_scope
from api.deps import get_hub
from catalogue.errors import BadRequest, DeliveryTooLarge, InvalidParameter, UrbandataError
from catalogue.hub import Hub
from catalogue.ingest.push import answer, check_mode, delivery_format, push_delivery, push_target
from catalogue.meta import delivery_keys
from catalogue.meta.tokens import Credential

router = APIRouter()

WRITE_BUFFER = 1 << 20  # bytes gathered before one write to the scratch file (in a thread)
VERSION_TAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


@router.post("/datasets/{name}/deliveries", response_model=None, status_code=201, responses={
    200: {"description": "Unchanged: the rows equal the current version's."},
    201: {"description": "Published as the dataset's next version."},
    409: {"description": "If-Match names a version that is no longer current, or the key's delivery is in progress."},
    413: {"description": "The body is larger than push_max_bytes."},
    422: {"description": "Invalid rows (quarantined; the report lists row, field, message), or an "
                         "Idempotency-Key reused with another body."},
})
async def push(
    request: Request,
    name: str,
    mode: str = Query("replace", description="replace (the delivery is the whole dataset), append (rows added), "
                      "or upsert when the pipeline has it."),
    format: str | None = Query(None, description="csv, json, ndjson, geojson or parquet; default: from Content-Type."),  # noqa: A002
    idempotency_key: str | None = Header(None, description="Any unique string (a UUID): the same key and body "
                                         "answer the first result again, without a second ingest."),
    if_match: str | None = Header(None, description='The version the delivery is based on ("3"; "0": none yet); '
                                  "409 when another one is current."),
    credential: Credential = Depends(require_scope("push")),
    hub: Hub = Depends(get_hub),
) -> JSONResponse:
    """Deliver a file for one of the token's publisher's datasets: validated, then published or quarantined."""
    settings = hub.settings
    fmt = delivery_format(format, request.headers.get("content-type"))
    check_mode(mode)
    key = delivery_keys.check_key(idempotency_key) if idempotency_key is not None else None
    base = _base_version(if_match)
    cap = settings.push_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise _too_large(cap, int(declared))
    target = await run_in_threadpool(push_target, hub, name)
    require_publisher(credential, target.publisher_id, target.publisher, f"dataset '{name}'")
    path, size, digest = await _receive(request, hub, cap)
    try:
        if key is not None:
            earlier = await run_in_threadpool(delivery_keys.claim, hub, target.dataset_id, key, digest)
            if earlier is not None:
                status, body = earlier
                return JSONResponse(body, status_code=status, headers={**_headers(status, body),
                                                                       "Idempotent-Replayed": "true"})
        provenance = {"source_url": "push", "pushed_by": f"{credential.publisher} token {credential.token_id}",
                      "delivery_sha256": digest, "delivery_bytes": size}
        try:
            result, job_id = await run_in_threadpool(
                push_delivery, hub, target, path, fmt, mode, base_version=base, provenance=provenance, size=size)
        except UrbandataError as exc:
            if key is not None:
                if exc.status < 500:  # the delivery's answer: the same key gets it again
                    await run_in_threadpool(delivery_keys.record, hub, target.dataset_id, key, exc.status,
                                            {"error": exc.to_dict()})
                else:  # ours: a retry with the key runs it again
                    await run_in_threadpool(delivery_keys.release, hub, target.dataset_id, key)
            raise
        except BaseException:
            if key is not None:
                await run_in_threadpool(delivery_keys.release, hub, target.dataset_id, key)
            raise
        status, body = answer(hub, result, job_id)
        if key is not None:
            await run_in_threadpool(delivery_keys.record, hub, target.dataset_id, key, status, body)
        return JSONResponse(body, status_code=status, headers=_headers(status, body))
    finally:
        path.unlink(missing_ok=True)


def _headers(status: int, body: dict[str, Any]) -> dict[str, str]:
    """ETag (the version now current) and, for a new version, its Location; the same for a replayed answer."""
    headers = {"ETag": f'"{body["version"]}"'} if status < 300 and body.get("version") else {}
    if status == 201:
        headers["Location"] = body["version_url"]
    return headers


def _base_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    found = VERSION_TAG.match(if_match)
    if found is None:
        raise InvalidParameter(f"If-Match must name the version the delivery is based on, like \"3\" (\"0\": the "
                               f"dataset has no version yet); got '{if_match[:50]}'.", details={"header": "If-Match"})
    return int(found.group(1))


def _too_large(cap: int, size: int | None) -> DeliveryTooLarge:
    said = f"{size:,} bytes" if size is not None else f"more than {cap:,} bytes"
    return DeliveryTooLarge(
        f"The delivery is {said}; a push may have at most {cap:,} bytes (setting push_max_bytes). "
        "Split it into several append deliveries, or send Parquet, which is smaller.",
        details={"max_bytes": cap})


async def _receive(request: Request, hub: Hub, cap: int) -> tuple[Path, int, str]:
    """The body streamed to a scratch file: its path, size and SHA-256; 413 as soon as it passes ``cap``."""
    path = await run_in_threadpool(hub.storage.new_scratch_file, ".push")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as out:  # noqa: ASYNC230 - writes go to a thread below
            pending: list[bytes] = []
            held = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _too_large(cap, None)
                digest.update(chunk)
                pending.append(chunk)
                held += len(chunk)
                if held >= WRITE_BUFFER:
                    await run_in_threadpool(out.write, b"".join(pending))
                    pending, held = [], 0
            if pending:
                await run_in_threadpool(out.write, b"".join(pending))
    except ClientDisconnect:
        path.unlink(missing_ok=True)
        raise BadRequest(f"The body ended after {size:,} bytes: the client went away. Nothing was delivered; "
                         "send it again (with the same Idempotency-Key).") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest()
