"""Token administration for a publisher's admin token: list, make and revoke the publisher's tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_scope
from api.params import int_path
from catalogue.hub import Hub
from api.deps import get_hub
from catalogue.meta.tokens import Credential, create_token, list_tokens, revoke_token

router = APIRouter()


class TokenRequest(BaseModel):
    """The JSON body of ``POST /tokens``; an unknown member is refused."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What uses the token (e.g. 'parking cron job').")
    scopes: list[str] = Field(min_length=1, description="Any of push, admin, read-private.")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="Days until it expires (default: never).")


@router.get("/tokens")
async def tokens(credential: Credential = Depends(require_scope("admin")), hub: Hub = Depends(get_hub)) -> dict[str, Any]:
    """The tokens of the admin token's publisher (never their secret part)."""
    found = await run_in_threadpool(list_tokens, hub, credential.publisher)
    return {"publisher": credential.publisher, "total_count": len(found), "results": found}


@router.post("/tokens", status_code=201)
async def make_token(body: TokenRequest, credential: Credential = Depends(require_scope("admin")),
                     hub: Hub = Depends(get_hub)) -> dict[str, Any]:
    """A new token of the admin token's publisher; ``token`` is shown this once and never again."""
    plaintext, listing = await run_in_threadpool(
        lambda: create_token(hub, credential.publisher, body.name, body.scopes, expires_in_days=body.expires_in_days))
    return {**listing, "token": plaintext}


@router.delete("/tokens/{token_id}")
async def drop_token(token_id: int = int_path(description="The token's id, as listed."),
                     credential: Credential = Depends(require_scope("admin")), hub: Hub = Depends(get_hub)) -> dict[str, Any]:
    """Revoke one of the publisher's tokens (another publisher's is a 404)."""
    return await run_in_threadpool(revoke_token, hub, token_id, credential.publisher)
