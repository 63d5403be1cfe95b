"""OData query options as Graph reads them: ``$select``, ``$filter`` on ids or on one property, ``$top``,
``Prefer`` page size."""

from __future__ import annotations

import re

from graphsim.responses import GraphHTTPError

_ID_TERM = re.compile(r"^\s*id\s+eq\s+'([^']+)'\s*$", re.IGNORECASE)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
_PROPERTY_TERM = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_MAX_PAGE_SIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def parse_select(raw: str | None) -> list[str] | None:
    """The ``$select`` items, or None when absent. A sub-path (``a/b``) is a 400: Graph documents none."""
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    for item in items:
        if "/" in item:
            raise GraphHTTPError(
                400,
                "BadRequest",
                f"Invalid $select item '{item}': select the complex property whole (e.g. '{item.split('/')[0]}').",
            )
    return items


def parse_id_filter(raw: str | None, max_ids: int | None) -> frozenset[str] | None:
    """The ids of ``id eq 'a' or id eq 'b'``; None when absent; 400 for any other filter or too many ids."""
    if raw is None:
        return None
    ids: list[str] = []
    for term in _OR.split(raw.strip()):
        match = _ID_TERM.match(term)
        if match is None:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", f"Unsupported query: $filter={raw}")
        ids.append(match.group(1).lower())
    if max_ids is not None and len(ids) > max_ids:
        raise GraphHTTPError(
            400, "Request_UnsupportedQuery", f"Too many ids in $filter: {len(ids)} (at most {max_ids})."
        )
    return frozenset(ids)


def parse_property_filter(raw: str, properties: tuple[str, ...]) -> tuple[str, str]:
    """``(property, value)`` of ``property eq 'value'`` (a quote doubled inside the value, as OData
    writes it) for one of ``properties`` (matched without regard to case); 400 for any other filter."""
    match = _PROPERTY_TERM.match(raw)
    names = {p.lower(): p for p in properties}
    if match is None or match.group(1).lower() not in names:
        raise GraphHTTPError(400, "Request_UnsupportedQuery", f"Unsupported query: $filter={raw}")
    return names[match.group(1).lower()], match.group(2).replace("''", "'")


def parse_top(raw: str | None, default: int, maximum: int) -> int:
    """``$top`` between 1 and ``maximum``; 400 otherwise."""
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        raise GraphHTTPError(400, "Request_BadRequest", f"Invalid $top value '{raw}'.") from None
    if not 1 <= top <= maximum:
        raise GraphHTTPError(400, "Request_BadRequest", f"$top must be between 1 and {maximum}.")
    return top


def max_page_size(prefer: str | None) -> int | None:
    """The page size asked for with ``Prefer: odata.maxpagesize=N`` (clamped to 1..999), or None."""
    if not prefer:
        return None
    match = _MAX_PAGE_SIZE.search(prefer)
    if match is None:
        return None
    return max(1, min(999, int(match.group(1))))
