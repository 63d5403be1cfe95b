"""Seed documents and control-API payloads: plain JSON turned into simulator calls.

A seed document::

    {"users": [{"id": "...", "user_principal_name": "a@x.test", "display_name": "A",
                "employee_org_data": {"costCenter": "CC1"}, "extension_attributes": {"1": "v"},
                "extensions": {"extension_<32hex>_costCenter": "v"}, "account_enabled": true}],
     "groups": [{"id": "...", "display_name": "Reception", "members": ["<user or group id>", ...]}]}

Keys are the keyword names of :meth:`GraphSimulator.add_user` / ``add_group``; Graph's camelCase names
(``userPrincipalName``, ``onPremisesExtensionAttributes`` with ``extensionAttributeN`` keys, top-level
``extension_<appId>_<name>`` keys ...) are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphsim.tenant import DIRECTORY_EXTENSION

_USER_ALIASES = {
    "userPrincipalName": "user_principal_name",
    "displayName": "display_name",
    "givenName": "given_name",
    "accountEnabled": "account_enabled",
    "employeeOrgData": "employee_org_data",
    "extensionAttributes": "extension_attributes",
    "onPremisesExtensionAttributes": "extension_attributes",
    "userType": "user_type",
    "onPremisesSyncEnabled": "on_premises_sync_enabled",
}
_GROUP_ALIASES = {"displayName": "display_name", "securityEnabled": "security_enabled"}


def user_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``add_user`` / ``update_user`` from a JSON object."""
    out: dict[str, Any] = {}
    extensions: dict[str, Any] = dict(payload.get("extensions") or {})
    for key, value in payload.items():
        if key == "extensions":
            continue
        if DIRECTORY_EXTENSION.match(key):
            extensions[key] = value
            continue
        name = _USER_ALIASES.get(key, key)
        if name == "extension_attributes" and value is not None:
            value = {int(str(k).removeprefix("extensionAttribute")): v for k, v in dict(value).items()}
        out[name] = value
    if extensions or "extensions" in payload:
        out["extensions"] = extensions
    return out


def group_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``add_group`` / ``update_group`` from a JSON object (``members`` excluded)."""
    return {_GROUP_ALIASES.get(key, key): value for key, value in payload.items() if key != "members"}
