"""SCIM resources: request bodies built with scim2-models, responses read into the domain types.

Requests are built with scim2-models (typed resources, the right ``schemas`` and camelCase names,
the enterprise extension, validated values). Responses are read leniently from plain JSON into
:class:`~reactor.domain.model.ScimUser` / :class:`~reactor.domain.model.ScimGroup`: AskCody's exact
answers are not documented, and a strict validator would turn a harmless deviation (an unknown
extension, a string ``"True"``, an address without a dot) into a failed sync.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, EnterpriseUser, Group, Name, User

from reactor.domain.model import ScimGroup, ScimUser, UserAttributes
from reactor.errors import PermanentError

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

ATTRIBUTE_PATHS: dict[str, str] = {
    "user_name": "userName",
    "external_id": "externalId",
    "display_name": "displayName",
    "given_name": "name.givenName",
    "family_name": "name.familyName",
    "email": 'emails[type eq "work"]',
    "cost_center": f"{ENTERPRISE_USER}:costCenter",
}
"""The SCIM path of each :class:`UserAttributes` field (e-mail: the work address)."""

EnterpriseScimUser = User[EnterpriseUser]


_FILTER_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _FILTER_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def quote(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 §3.4.2.2: a JSON string): ``"…"`` with ``"`` and ``\\``
    escaped, control characters (U+0000 to U+001F) as JSON escapes, and a lone surrogate (which no UTF-8
    request can carry) as ``\\uXXXX``; every other character as it is."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def user_body(attrs: UserAttributes, *, active: bool) -> dict[str, Any]:
    """The ``POST /Users`` body: core + enterprise schemas, externalId, name, work e-mail, costCenter."""
    try:
        user = EnterpriseScimUser(
            user_name=attrs.user_name,
            external_id=attrs.external_id,
            display_name=attrs.display_name,
            active=active,
            name=Name(given_name=attrs.given_name, family_name=attrs.family_name)
            if attrs.given_name or attrs.family_name
            else None,
        )
        user[EnterpriseUser] = EnterpriseUser(cost_center=attrs.cost_center)
    except ValidationError as exc:
        raise PermanentError(f"user {attrs.external_id} has an attribute SCIM refuses: {_first_error(exc)}") from None
    body: dict[str, Any] = user.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    if ENTERPRISE_USER not in body.get("schemas", []):
        body["schemas"] = [*body.get("schemas", [CORE_USER]), ENTERPRISE_USER]
    if attrs.email:
        # Added as plain data: scim2-models' e-mail check refuses special-use domains (.local of
        # hybrid directories, .internal, ...) that AskCody accepts. The reactor never refuses on its
        # own a value the remote might accept; AskCody says if it does not.
        body["emails"] = work_emails(attrs.email)
    return body


def work_emails(value: str) -> list[dict[str, Any]]:
    """The ``emails`` value that carries ``value`` as the primary work e-mail (plain data, unvalidated)."""
    return [{"type": "work", "value": value, "primary": True}]


def group_body(display_name: str, external_id: str) -> dict[str, Any]:
    """The ``POST /Groups`` body, with ``externalId`` = the Entra group id and no members."""
    body: dict[str, Any] = Group(display_name=display_name, external_id=external_id).model_dump(
        scim_ctx=Context.RESOURCE_CREATION_REQUEST
    )
    return body


def parse_user(data: dict[str, Any], groups: frozenset[str] | None = None) -> ScimUser:
    """A :class:`ScimUser` from a SCIM User resource; ``groups`` overrides the resource's own."""
    name = data.get("name") if isinstance(data.get("name"), dict) else {}
    assert isinstance(name, dict)
    own_groups = frozenset(
        str(g["value"]) for g in data.get("groups") or [] if isinstance(g, dict) and g.get("value") is not None
    )
    return ScimUser(
        id=str(data["id"]),
        user_name=str(data.get("userName") or ""),
        external_id=_str(data.get("externalId")),
        active=parse_bool(data.get("active", True)),
        display_name=_str(data.get("displayName")),
        given_name=_str(name.get("givenName")),
        family_name=_str(name.get("familyName")),
        email=work_email(data.get("emails")),
        cost_center=_str(enterprise(data).get("costCenter")),
        groups=own_groups if groups is None else groups,
        version=version_of(data),
    )


def version_of(data: Any) -> str | None:
    """A resource's ``meta.version`` (its ETag, e.g. ``W/"3"``), None when the answer gives none."""
    meta = data.get("meta") if isinstance(data, dict) else None
    version = meta.get("version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version else None


def has_groups(data: dict[str, Any]) -> bool:
    """True when the User resource carries its ``groups`` (the server computes them)."""
    return isinstance(data.get("groups"), list)


def parse_group(data: dict[str, Any]) -> ScimGroup:
    """A :class:`ScimGroup` from a SCIM Group resource."""
    return ScimGroup(
        id=str(data["id"]),
        display_name=str(data.get("displayName") or ""),
        external_id=_str(data.get("externalId")),
        members=member_ids(data),
    )


def member_ids(data: dict[str, Any]) -> frozenset[str]:
    """The ``value`` of each member of a Group resource."""
    return frozenset(str(m["value"]) for m in data.get("members") or [] if isinstance(m, dict) and m.get("value") is not None)


def resources(data: Any) -> list[dict[str, Any]]:
    """The ``Resources`` of a ListResponse (empty when absent)."""
    if not isinstance(data, dict):
        return []
    found = data.get("Resources") or data.get("resources") or []
    return [r for r in found if isinstance(r, dict)]


def enterprise(data: dict[str, Any]) -> dict[str, Any]:
    """The enterprise extension object of a User resource (its URN key compared without case)."""
    for key, value in data.items():
        if key.lower() == ENTERPRISE_USER.lower() and isinstance(value, dict):
            return value
    return {}


def work_email(emails: Any) -> str | None:
    """The work address, else the primary one, else the first one."""
    if not isinstance(emails, list):
        return None
    entries = [e for e in emails if isinstance(e, dict) and e.get("value")]
    work = [e for e in entries if str(e.get("type", "")).lower() == "work"]
    primary = [e for e in entries if parse_bool(e.get("primary", False))]
    for e in (*work, *primary, *entries):
        return str(e["value"])
    return None


def parse_bool(value: Any) -> bool:
    """A SCIM boolean, also in the string form ``"True"``/``"False"`` some servers use."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')}".strip(": ")
