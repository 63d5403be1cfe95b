"""The PATCH forms of the two dialects (``askcody.dialect``).

``rfc`` speaks RFC 7644: lower-case ``op``, boolean ``active``, a member removed with a value filter in
the path (``members[value eq "id"]``), the work e-mail replaced as a whole ``emails`` value.

``entra`` speaks like Entra's provisioning service does by default: capitalised ``Replace``/``Add``/
``Remove``, ``active`` as the string ``"True"``/``"False"``, members removed with ``path: members``
and a ``value`` list, the work e-mail replaced at ``emails[type eq "work"].value``.

Bodies are built with scim2-models' :class:`~scim2_models.PatchOp`, then adjusted to the dialect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scim2_models import Context, Group, PatchOp, PatchOperation, Resource

from reactor.config import Dialect
from reactor.scim.resources import ATTRIBUTE_PATHS, PATCH_OP, EnterpriseScimUser, quote, work_emails

Op = dict[str, Any]
MAX_SHAPES = 1024
"""Shapes remembered at most (a few dozen occur: which attributes changed, in which dialect)."""


_PATCH_CLASSES: dict[type[Resource[Any]], tuple[Any, Any]] = {}
"""``PatchOp[resource]`` and ``PatchOperation[resource]``, made once: pydantic keeps parametrised
classes only weakly, so after each garbage collection the next PATCH rebuilt them (about 2.7 ms of
CPU a PATCH on the event loop, measured under bench/ingest.py with the real engine)."""


def _patch_classes(resource: type[Resource[Any]]) -> tuple[Any, Any]:
    classes = _PATCH_CLASSES.get(resource)
    if classes is None:
        classes = _PATCH_CLASSES[resource] = (PatchOp[resource], PatchOperation[resource])  # type: ignore[valid-type]
    return classes


_SCALARS = (str, bool, int, float, type(None))
_PLAIN_SHAPES: dict[tuple[Any, ...], bool] = {}
"""Shapes of PATCH messages (resource, dialect, each operation's op, path and type of value) whose
message, validated and dumped by scim2-models, came out as the operations went in: the next message
of that shape is written directly. Validating and dumping cost about 0.65 ms of the event loop per
PATCH under cProfile, the largest part of a unit that changes one attribute (bench/README.md, stop 22).
scim2-models passes such values through as they are; a value it would refuse goes to AskCody, which
decides (and a refused attribute is handled as any other)."""


def _shape(ops: list[Op], dialect: Dialect, resource: type[Resource[Any]]) -> tuple[Any, ...] | None:
    """The shape of scalar-valued operations on a user; ``None`` for a group (a member's id is in the
    path of its removal), or when one carries a list or an object (e-mails: always validated) or a
    key other than op, path and value."""
    if resource is not EnterpriseScimUser:
        return None
    shape: list[Any] = [resource, dialect]
    for op in ops:
        value = op.get("value")
        if not isinstance(value, _SCALARS) or not op.keys() <= {"op", "path", "value"}:
            return None
        shape.append((op.get("op"), op.get("path"), type(value), "value" in op))
    return tuple(shape)


def _spelled(body: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """``body`` with its operations' ``op`` in the dialect's spelling (Entra's: ``Replace``)."""
    if dialect == "entra":
        for op in body["Operations"]:
            op["op"] = str(op["op"]).capitalize()
    return body


def _plain(ops: list[Op], dialect: Dialect) -> dict[str, Any]:
    return _spelled({"schemas": [PATCH_OP], "Operations": [dict(op) for op in ops]}, dialect)


def patch_body(operations: Iterable[Op], dialect: Dialect, resource: type[Resource[Any]] = EnterpriseScimUser) -> dict[str, Any]:
    """A PatchOp message on ``resource`` (a User by default, or :class:`~scim2_models.Group`) of plain
    ``{"op", "path", "value"}`` operations, in the dialect's spelling."""
    ops = list(operations)
    shape = _shape(ops, dialect, resource)
    if shape is not None and _PLAIN_SHAPES.get(shape):
        return _plain(ops, dialect)
    message_class, operation_class = _patch_classes(resource)
    message = message_class.model_validate({"Operations": [operation_class(**op) for op in ops]})
    body = _spelled(message.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST), dialect)
    if shape is not None and len(_PLAIN_SHAPES) < MAX_SHAPES:
        _PLAIN_SHAPES[shape] = body == _plain(ops, dialect)
    return body


def active_value(active: bool, dialect: Dialect) -> bool | str:
    """``active`` as the dialect sends it."""
    if dialect == "entra":
        return "True" if active else "False"
    return active


def set_active(active: bool, dialect: Dialect) -> dict[str, Any]:
    """The PATCH body that sets ``active``."""
    return patch_body([{"op": "replace", "path": "active", "value": active_value(active, dialect)}], dialect)


def replace_attributes(changes: Mapping[str, str | None], dialect: Dialect) -> dict[str, Any]:
    """The PATCH body that replaces (or, for ``None``, removes) the changed user attributes."""
    ops: list[Op] = []
    for name, value in sorted(changes.items()):
        path = ATTRIBUTE_PATHS[name]
        if name == "email":
            ops.append(_email_op(value, dialect))
        elif value is None:
            ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "replace", "path": path, "value": value})
    return patch_body(ops, dialect)


def _email_op(value: str | None, dialect: Dialect) -> Op:
    if value is None:
        return {"op": "remove", "path": 'emails[type eq "work"]'}
    if dialect == "entra":
        return {"op": "replace", "path": 'emails[type eq "work"].value', "value": value}
    return {"op": "replace", "path": "emails", "value": work_emails(value)}


def members_patch(operations: Iterable[Op], dialect: Dialect) -> dict[str, Any]:
    """A PatchOp message on a Group."""
    return patch_body(operations, dialect, Group)


def add_members(user_ids: Iterable[str]) -> list[Op]:
    """One ``add`` of many members (same form in both dialects)."""
    return [{"op": "add", "path": "members", "value": [{"value": uid} for uid in user_ids]}]


def remove_members(user_ids: Iterable[str], dialect: Dialect) -> list[Op]:
    """The removal of members: one filtered op per member (rfc), one op with a value list (entra).

    Never a bare ``remove members`` without filter or value: that removes everyone.
    """
    ids = list(user_ids)
    if not ids:
        return []
    if dialect == "entra":
        return [{"op": "remove", "path": "members", "value": [{"value": uid} for uid in ids]}]
    return [{"op": "remove", "path": f"members[value eq {quote(uid)}]"} for uid in ids]
