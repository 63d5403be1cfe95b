"""Plain domain types shared by the Graph reader, the planner, the SCIM client and the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EntraState = Literal["present", "soft_deleted", "hard_deleted"]


@dataclass(frozen=True)
class EntraUser:
    """A user as read from Graph, reduced to what the mapping needs.

    ``state`` is ``soft_deleted`` for a user in the recycle bin (restorable) and ``hard_deleted`` for
    one that is gone for good; such a user may carry only its ``id``.
    """

    id: str
    user_principal_name: str = ""
    display_name: str | None = None
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    account_enabled: bool = True
    cost_center: str | None = None
    state: EntraState = "present"


@dataclass(frozen=True)
class EntraGroup:
    """A group in scope as read from Graph. ``deleted`` when Graph reports it removed."""

    id: str
    display_name: str = ""
    deleted: bool = False


@dataclass(frozen=True)
class UserFacts:
    """All that Entra says about one user: the user (None when Graph no longer knows it) and the
    ids of the groups in scope that the user is a direct member of."""

    entra_id: str
    user: EntraUser | None
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ScimUser:
    """A user as AskCody holds it."""

    id: str
    user_name: str
    external_id: str | None = None
    active: bool = True
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    cost_center: str | None = None
    groups: frozenset[str] = frozenset()
    """SCIM ids of the AskCody groups the user is a member of."""
    version: str | None = None
    """``meta.version`` (the ETag) AskCody gave with this state; None when it gave none."""


@dataclass(frozen=True)
class ScimGroup:
    """A group as AskCody holds it."""

    id: str
    display_name: str
    external_id: str | None = None
    members: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UserAttributes:
    """The SCIM user attributes the mapping derives from an :class:`EntraUser`."""

    user_name: str
    external_id: str
    display_name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    cost_center: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_name": self.user_name,
            "external_id": self.external_id,
            "display_name": self.display_name,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "email": self.email,
            "cost_center": self.cost_center,
        }
