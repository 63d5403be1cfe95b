"""The user and group properties the simulator serves, ``$select`` resolution and rendering.

Property names are matched case-insensitively and answered in Graph's spelling. Properties that
Graph has but the simulator does not model are answered with null (or an empty list). Directory
extensions (``extension_<appId>_<name>``) are selected by full name; unset ones are null.
"""

from __future__ import annotations

from typing import Any

from graphsim.responses import GraphHTTPError
from graphsim.tenant import DIRECTORY_EXTENSION, Group, User
from graphsim.timestamps import to_iso

_USER_MODELLED = (
    "id",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "accountEnabled",
    "employeeOrgData",
    "onPremisesExtensionAttributes",
    "createdDateTime",
    "deletedDateTime",
    "userType",
    "onPremisesSyncEnabled",
)
_USER_NULL = (
    "jobTitle",
    "department",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "companyName",
    "employeeId",
    "employeeType",
    "onPremisesImmutableId",
    "onPremisesSamAccountName",
    "usageLocation",
    "city",
    "country",
    "state",
)
_USER_LISTS = ("businessPhones", "otherMails", "proxyAddresses")
USER_PROPERTIES = {name.lower(): name for name in (*_USER_MODELLED, *_USER_NULL, *_USER_LISTS)}
USER_DEFAULT_SELECT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)

_GROUP_NAMES = (
    "id",
    "displayName",
    "description",
    "securityEnabled",
    "mailEnabled",
    "mail",
    "mailNickname",
    "groupTypes",
    "createdDateTime",
    "deletedDateTime",
)
GROUP_PROPERTIES = {name.lower(): name for name in _GROUP_NAMES}
GROUP_DEFAULT_SELECT = _GROUP_NAMES
MEMBERS = "members"


def _resolve(items: list[str], known: dict[str, str], type_name: str, *, extensions: bool) -> tuple[str, ...]:
    resolved: list[str] = []
    for item in items:
        if item.lower() in known:
            name = known[item.lower()]
        elif extensions and DIRECTORY_EXTENSION.match(item):
            name = item
        else:
            raise GraphHTTPError(
                400, "Request_BadRequest", f"Could not find a property named '{item}' on type '{type_name}'."
            )
        if name not in resolved:
            resolved.append(name)
    return tuple(resolved)


def user_select(items: list[str] | None) -> tuple[str, ...]:
    """Graph property names for a user ``$select`` (the default set when None); 400 for unknown ones."""
    if items is None:
        return USER_DEFAULT_SELECT
    return _resolve(items, USER_PROPERTIES, "microsoft.graph.user", extensions=True)


def group_select(items: list[str] | None, *, allow_members: bool) -> tuple[str, ...]:
    """Graph property names for a group ``$select``; ``members`` only where ``allow_members`` (delta)."""
    if items is None:
        return (*GROUP_DEFAULT_SELECT, MEMBERS) if allow_members else GROUP_DEFAULT_SELECT
    known = dict(GROUP_PROPERTIES)
    if allow_members:
        known[MEMBERS] = MEMBERS
    return _resolve(items, known, "microsoft.graph.group", extensions=False)


def _user_value(user: User, name: str) -> Any:
    match name:
        case "id":
            return user.id
        case "userPrincipalName":
            return user.user_principal_name
        case "displayName":
            return user.display_name
        case "givenName":
            return user.given_name
        case "surname":
            return user.surname
        case "mail":
            return user.mail
        case "accountEnabled":
            return user.account_enabled
        case "employeeOrgData":
            return None if user.employee_org_data is None else dict(user.employee_org_data)
        case "onPremisesExtensionAttributes":
            return {f"extensionAttribute{i}": user.extension_attributes.get(i) for i in range(1, 16)}
        case "createdDateTime":
            return to_iso(user.created_at)
        case "deletedDateTime":
            return None if user.deleted_at is None else to_iso(user.deleted_at)
        case "userType":
            return user.user_type
        case "onPremisesSyncEnabled":
            return user.on_premises_sync_enabled
    if name in _USER_LISTS:
        return []
    if name.startswith("extension_"):
        return next((v for k, v in user.extensions.items() if k.lower() == name.lower()), None)
    return None


def render_user(user: User, select: tuple[str, ...]) -> dict[str, Any]:
    """The user as Graph returns it: ``id`` plus the selected properties."""
    out: dict[str, Any] = {"id": user.id}
    for name in select:
        out[name] = _user_value(user, name)
    return out


def _group_value(group: Group, name: str) -> Any:
    match name:
        case "id":
            return group.id
        case "displayName":
            return group.display_name
        case "description":
            return group.description
        case "securityEnabled":
            return group.security_enabled
        case "mailEnabled":
            return False
        case "mailNickname":
            return group.id[:8]
        case "groupTypes":
            return []
        case "createdDateTime":
            return to_iso(group.created_at)
    return None


def render_group(group: Group, select: tuple[str, ...]) -> dict[str, Any]:
    """The group as Graph returns it: ``id`` plus the selected properties (``members`` excluded)."""
    out: dict[str, Any] = {"id": group.id}
    for name in select:
        if name != MEMBERS:
            out[name] = _group_value(group, name)
    return out
