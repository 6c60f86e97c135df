"""Datasets set up through the API by a publisher's admin token: a new feed needs no code change.

``POST /datasets`` takes a dataset definition as JSON, checked exactly like a
file in ``datasets/definitions/`` (catalogue/meta/definitions.py) with its Table
Schema inline; the publisher is the token's. ``PATCH /datasets/{name}`` makes
one of the publisher's datasets private or public.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update

from api.auth import require_publisher, require_scope
from api.deps import get_hub
from catalogue.errors import WrongPublisher
from catalogue.hub import Hub
from catalogue.meta.definitions import check_definition, create_dataset
from catalogue.meta.metadata import dataset_dict, get_dataset
from catalogue.meta.models import Dataset
from catalogue.meta.tokens import Credential

router = APIRouter()


@router.post("/datasets", status_code=201, response_model=None, responses={
    201: {"description": "Created; deliveries can be pushed to it now."},
    409: {"description": "A dataset of that name exists."},
    422: {"description": "The definition has problems; each is listed."},
})
async def create(
    definition: dict[str, Any] = Body(..., description="A dataset definition as in datasets/definitions/ (name, "
                                      "title, description, license, schema as an inline Table Schema, optional "
                                      "keywords, themes, contact, update_frequency, spatial, temporal, private)."),
    credential: Credential = Depends(require_scope("admin")),
    hub: Hub = Depends(get_hub),
) -> JSONResponse:
    """Create one of the token's publisher's datasets from its definition (validated like datasets/definitions)."""
    definition = {"publisher": credential.publisher, **definition}
    if definition["publisher"] != credential.publisher:
        raise WrongPublisher(f"This token belongs to publisher '{credential.publisher}'; it creates datasets of "
                             f"'{credential.publisher}' only (leave 'publisher' out or set it to that).",
                             details={"token_publisher": credential.publisher})
    checked = check_definition(definition)
    name = await run_in_threadpool(create_dataset, hub, checked)
    body = await run_in_threadpool(_dataset, hub, name)
    url = f"{hub.settings.public_url.rstrip('/')}{hub.settings.api_prefix}/datasets/{name}"
    return JSONResponse(body, status_code=201, headers={"Location": url})


class DatasetChange(BaseModel):
    """The JSON body of ``PATCH /datasets/{name}``."""

    model_config = ConfigDict(extra="forbid")

    private: bool = Field(description="true: visible only to the publisher's read-private tokens; false: public.")


@router.patch("/datasets/{name}", response_model=None)
async def change(name: str, body: DatasetChange, credential: Credential = Depends(require_scope("admin")),
                 hub: Hub = Depends(get_hub)) -> dict[str, Any]:
    """Make one of the publisher's datasets private or public."""

    def apply() -> dict[str, Any]:
        with hub.sessions.begin() as session:
            dataset = get_dataset(session, name)
            require_publisher(credential, dataset.publisher_id, dataset.publisher.name, f"dataset '{name}'")
            session.execute(update(Dataset).where(Dataset.id == dataset.id).values(private=body.private))
        return _dataset(hub, name)

    return await run_in_threadpool(apply)


def _dataset(hub: Hub, name: str) -> dict[str, Any]:
    with hub.sessions() as session:
        dataset = get_dataset(session, name)
        return {**dataset_dict(dataset), "private": dataset.private}
