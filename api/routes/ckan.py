"""CKAN's Action API (version 3) under /api/3/action/ (and /api/action/, as CKAN too serves it), so ckanapi and
CKAN harvesters read the hub unchanged.

Every answer is CKAN's envelope ``{help, success, result}``; every error CKAN's shape
``{help, success: false, error: {__type, message}}`` with CKAN's status codes (404 Not Found Error,
409 Validation Error, 400 Search Query Error and unknown actions). Parameters come as a query
string (GET) or a JSON object (POST, as ckanapi sends them); an unknown one is refused. The
mapping (packages, resources, organisations, groups) is :mod:`catalogue.meta.ckan_mapping`; the
DataStore actions are in :mod:`api.routes.ckan_datastore`. Private datasets are seen only with a
``read-private`` token of their publisher (``Authorization: Bearer udt_…``; ckanapi sends its
``apikey`` without ``Bearer``, so give it a requests session carrying the header): package_search
lists them with ``include_private=true``; package_show, resource_show and the DataStore read them;
to anyone else they do not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import get_credential, private_of
from api.openapi_ckan import TAG as CKAN_TAG
from api.params import OWN_PARAMETERS
from api.routes import ckan_datastore
from api.routes.ckan_calls import (
    ACTIONS, SYNC, Args, Context, action, arguments, ckan_error, error_response, help_url, links_of, visible_dataset,
)
from catalogue.errors import InvalidParameter, NotFound, UrbandataError
from catalogue.meta import ckan_mapping as mapping
from catalogue.meta import ckan_search as search
from catalogue.meta.extent import parse_bbox
from catalogue.meta.licenses import LICENSES
from catalogue.meta.metadata import get_publisher
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.meta.vocabularies import THEMES

router = APIRouter()
router.include_router(ckan_datastore.router)  # the DataStore dump; its actions registered on import
CKAN_VERSION = "2.10.4"  # the Action API this one follows
_ACTION_ROUTE: dict[str, Any] = {"response_model": None, "tags": [CKAN_TAG], "openapi_extra": {OWN_PARAMETERS: True}}


# In /openapi.json under their own tag, with CKAN's envelope as their answers' and errors' model
# (api/openapi_ckan.py); help_show documents each action's parameters, as in CKAN.
# One route per method, so that each operation has an id of its own.
@router.get("/api/3/action/{name}", operation_id="ckan_action_get", summary="Call a CKAN action", **_ACTION_ROUTE)
@router.post("/api/3/action/{name}", operation_id="ckan_action_post", summary="Call a CKAN action (parameters "
             "as a JSON object)", **_ACTION_ROUTE)
@router.get("/api/action/{name}", operation_id="ckan_action_unversioned_get",
            summary="Call a CKAN action (unversioned path, as ckanapi uses)", **_ACTION_ROUTE)
@router.post("/api/action/{name}", operation_id="ckan_action_unversioned_post",
             summary="Call a CKAN action (unversioned path, parameters as a JSON object)", **_ACTION_ROUTE)
async def call_action(request: Request, name: str) -> Response:
    """One CKAN Action API call (``package_search``, ``datastore_search``, ...: see ``help_show``).

    Parameters as a query string or as a JSON object in a POST body, as in CKAN.
    """
    ctx = Context(request.app.state.hub, request.app.state.query_engine, request, links_of(request))
    url = help_url(ctx, name)
    func = ACTIONS.get(name)
    if func is None:
        return ckan_error(url, 400, "Bad Request", f"Bad request - Action name not known: {name}")
    try:
        ctx.reader = private_of(await get_credential(request))
        args = Args(await arguments(request))
        result = await run_in_threadpool(func, ctx, args) if name in SYNC else func(ctx, args)
        args.refuse_unread(name)
    except UrbandataError as exc:
        return error_response(name, url, exc)
    return JSONResponse({"help": url, "success": True, "result": result})


# -- site and catalogue ------------------------------------------------------------------------------------


@action("status_show", threaded=False)
def status_show(ctx: Context, args: Args) -> dict[str, Any]:
    """The site and the Action API version it follows."""
    return {"ckan_version": CKAN_VERSION, "site_url": ctx.links.public_url, "site_title": "urbandata",
            "site_description": "Validated, versioned open data of the city and its companies.",
            "locale_default": "de", "extensions": ["datastore"], "api_version": 3}


@action("help_show", threaded=False)
def help_show(ctx: Context, args: Args) -> str:
    """The documentation of one action."""
    name = args.text("name", required=True) or ""
    if name not in ACTIONS:
        raise NotFound(f"Action '{name}'. The actions are {', '.join(sorted(ACTIONS))}.")
    return (ACTIONS[name].__doc__ or name).strip()


@action("package_list")
def package_list(ctx: Context, args: Args) -> list[str]:
    """The names of every dataset."""
    limit, offset = args.integer("limit", 10**9, lowest=0), args.integer("offset", 0)
    with ctx.session() as session:
        query = select(Dataset.name).where(search.public()).order_by(Dataset.name).limit(limit).offset(offset)
        return list(session.scalars(query))


@action("current_package_list_with_resources")
def current_packages(ctx: Context, args: Args) -> list[dict[str, Any]]:
    """Datasets with their resources, most recently changed first."""
    limit = args.integer("limit", 100, lowest=1, highest=search.MAX_ROWS)
    page = args.integer("page", 0, lowest=0)
    offset = (page - 1) * limit if page else args.integer("offset", 0)
    with ctx.session() as session:
        found = session.scalars(search.select_packages(order_by_modified=True).limit(limit).offset(offset))
        return [mapping.package_dict(d, ctx.links) for d in found]


@action("package_search")
def package_search(ctx: Context, args: Args) -> dict[str, Any]:
    """Search datasets: q, fq, sort, rows (at most 1000), start, facet.field, facet.limit, facet.mincount, ext_bbox."""
    # Private datasets only when asked for and the token may read them (CKAN's include_private).
    reader = ctx.reader if args.boolean("include_private") else None
    args.boolean("include_drafts")
    args.boolean("facet", True)
    facet_fields = args.get("facet.field") or []
    if isinstance(facet_fields, str):
        facet_fields = [facet_fields]
    unknown = [f for f in facet_fields if f not in search.FACET_FIELDS]
    if unknown or not isinstance(facet_fields, list):
        raise InvalidParameter(f"facet.field: cannot count '{unknown[0] if unknown else facet_fields}'; "
                               f"the facet fields are {', '.join(search.FACET_FIELDS)}.",
                               details={"parameter": "facet.field"})
    bbox_text = args.text("ext_bbox")
    query = search.PackageQuery(
        q=args.text("q"), fq=search.parse_fq(args.text("fq") or ""), sort=search.parse_sort(args.text("sort") or ""),
        rows=args.integer("rows", 10, highest=search.MAX_ROWS), start=args.integer("start", 0),
        facet_fields=tuple(facet_fields), facet_limit=args.integer("facet.limit", 50, lowest=-1),
        facet_mincount=args.integer("facet.mincount", 1), bbox=parse_bbox(bbox_text, "ext_bbox") if bbox_text else None,
        reader=reader)
    with ctx.session() as session:
        hits = search.search_packages(session, query)
        results = [mapping.package_dict(d, ctx.links) for d in hits.datasets]
        titles = _facet_titles(session, hits.facets)
    return {
        "count": hits.count, "sort": args.text("sort") or "score desc, metadata_modified desc",
        "results": results,
        "facets": {f: dict(values) for f, values in hits.facets.items()},
        "search_facets": {f: {"title": f, "items": [{"name": v, "display_name": titles.get((f, v), v), "count": c}
                                                    for v, c in values]}
                          for f, values in hits.facets.items()},
    }


def _facet_titles(session: Session, facets: dict[str, list[tuple[str, int]]]) -> dict[tuple[str, str], str]:
    titles: dict[tuple[str, str], str] = {}
    for name, _ in facets.get("organization", []):
        titles[("organization", name)] = session.scalar(select(Organization.title).where(Organization.name == name)) or name
    for name, _ in facets.get("groups", []):
        titles[("groups", name)] = mapping.group_dict(name.upper())["title"]
    for iri, _ in facets.get("license_id", []):
        titles[("license_id", iri)] = LICENSES.get(iri, {}).get("title", iri)
    return titles


@action("package_show")
def package_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One dataset by name (or id, which is the name) with its current version's resources."""
    args.boolean("use_default_schema")
    args.boolean("include_tracking")
    args.boolean("include_plugin_data")
    with ctx.session() as session:
        return mapping.package_dict(visible_dataset(ctx, session, args.text("id", required=True) or ""), ctx.links)


@action("resource_show")
def resource_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One resource: a version's download in one format."""
    args.boolean("include_tracking")
    ref = mapping.parse_resource_id(args.text("id", required=True) or "")
    with ctx.session() as session:
        dataset = visible_dataset(ctx, session, ref.name)
        version = session.scalar(select(Version).where(Version.dataset_id == dataset.id,
                                                       Version.number == ref.number))
        found = [r for r in mapping.resource_dicts(dataset, version, ctx.links) if r["id"] == ref.id] if version else []
    if not found:
        raise NotFound(f"Resource '{ref.id}': dataset '{ref.name}' has no version {ref.number} in that format; "
                       "package_show lists its resources.")
    return found[0]


def _names_or_dicts(args: Args, items: list[dict[str, Any]]) -> list[Any]:
    limit, offset = args.integer("limit", 1000, highest=1000), args.integer("offset", 0)
    args.get("sort")
    args.boolean("include_extras")
    args.boolean("include_tags")
    args.boolean("include_groups")
    args.boolean("include_users")
    args.boolean("include_dataset_count", True)
    wanted = args.listed("organizations") or args.listed("groups")
    items = [i for i in items if wanted is None or i["name"] in wanted][offset:offset + limit]
    return items if args.boolean("all_fields") else [i["name"] for i in items]


@action("organization_list")
def organization_list(ctx: Context, args: Args) -> list[Any]:
    """Publishers, by name (all_fields: their dicts with package_count)."""
    with ctx.session() as session:
        counts = search.publisher_counts(session)
        orgs = session.scalars(select(Organization).order_by(Organization.name))
        items = [mapping.organization_dict(o, counts.get(o.id, 0)) for o in orgs]
    return _names_or_dicts(args, items)


@action("organization_show")
def organization_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One publisher (include_datasets: with its datasets as packages)."""
    with ctx.session() as session:
        org = get_publisher(session, args.text("id", required=True) or "")
        packages = list(session.scalars(search.select_packages().where(Dataset.publisher_id == org.id)))
        found = mapping.organization_dict(org, len(packages))
        if args.boolean("include_datasets"):
            found["packages"] = [mapping.package_dict(d, ctx.links) for d in packages]
    return found


@action("group_list")
def group_list(ctx: Context, args: Args) -> list[Any]:
    """The data themes datasets have, as groups (all_fields: their dicts with package_count)."""
    with ctx.session() as session:
        counts = search.theme_counts(session)
    items = [mapping.group_dict(t, counts[t]) for t in sorted(counts, key=mapping.group_name) if t in THEMES]
    return _names_or_dicts(args, items)


@action("group_show")
def group_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One data theme as a group (include_datasets: with its datasets as packages)."""
    theme = mapping.theme_of_group(args.text("id", required=True) or "")
    with ctx.session() as session:
        hits = search.search_packages(session, search.PackageQuery(fq=((False, "groups", theme),), rows=1000))
        found = mapping.group_dict(theme, hits.count)
        if args.boolean("include_datasets"):
            found["packages"] = [mapping.package_dict(d, ctx.links) for d in hits.datasets]
    return found


@action("tag_list")
def tag_list(ctx: Context, args: Args) -> list[Any]:
    """Every keyword (query: those containing the text; all_fields: dicts with counts)."""
    if args.text("vocabulary_id"):
        raise NotFound("Vocabulary: the hub has no tag vocabularies; leave vocabulary_id out.")
    part = (args.text("query") or "").lower()
    with ctx.session() as session:
        counts = search.tag_counts(session)
    names = sorted(t for t in counts if part in t.lower())
    if args.boolean("all_fields"):
        return [{"id": t, "name": t, "display_name": t, "count": counts[t], "vocabulary_id": None} for t in names]
    return names


@action("license_list", threaded=False)
def license_list(ctx: Context, args: Args) -> list[dict[str, Any]]:
    """Every licence (the DCAT-AP.de IRI is the id)."""
    return mapping.license_list()
