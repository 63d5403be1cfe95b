"""Random Entra operations on the simulated tenant, each followed by :meth:`Oracle.observe`.

An :class:`Op` names a kind and two numbers that pick its targets among what exists when it runs
(users, groups, memberships, in a stable order), so that any sequence of ops is applicable: an op
with nothing to act on is skipped. Hypothesis generates ops directly; :func:`random_ops` draws them
from a seeded ``random.Random``. Every id, userPrincipalName and mail is unique for the whole run
(nothing is ever reused), so that matching by userName or e-mail can only find the right user.

With ``nested_groups`` (groups outside the configuration), ops also nest groups into one another
(cycles and diamonds included), take them out again, put users into them and delete them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from graphsim import GraphSimulator
from tests.support.expected import Oracle
from tests.support.tenant import COST_CENTERS, Kind, People

KINDS: dict[str, int] = {
    "add_member": 20,
    "remove_member": 12,
    "new_user": 8,
    "toggle_enabled": 10,
    "rename": 8,
    "change_mail": 5,
    "change_upn": 5,
    "cost_center": 8,
    "soft_delete": 5,
    "restore": 5,
    "hard_delete": 3,
    "delete_group": 1,
    "nest": 6,
    "unnest": 4,
}
"""Op kinds and their weights in :func:`random_ops`."""


@dataclass(frozen=True)
class Op:
    kind: str
    a: int = 0
    b: int = 0

    def __str__(self) -> str:
        return f"{self.kind}({self.a},{self.b})"


def random_ops(rng: random.Random, n: int) -> list[Op]:
    kinds, weights = list(KINDS), list(KINDS.values())
    return [Op(rng.choices(kinds, weights)[0], rng.randrange(1000), rng.randrange(1000)) for _ in range(n)]


def guid(salt: int, n: int) -> str:
    """A deterministic object id (GUID form)."""
    return str(uuid.UUID(int=(salt << 64) | n))


@dataclass
class TenantDriver:
    """Applies ops to ``sim`` and tells ``oracle`` after each one."""

    sim: GraphSimulator
    oracle: Oracle
    groups: list[str]
    """The configured Entra groups, in a stable order (deleted ones are dropped from it)."""
    salt: int = 1
    deletable_groups: int = 1
    """How many groups an op may delete (a deleted group is gone for good)."""
    nested_groups: list[str] = field(default_factory=list)
    """Groups outside the configuration that ops nest into the configured ones and into each other."""
    counter: int = 0
    applied: list[str] = field(default_factory=list)
    people: People = field(init=False)
    kinds: dict[str, Kind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.people = People(self.salt, salt=self.salt)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _present(self) -> list[str]:
        return sorted(uid for uid, u in self.sim.tenant.users.items() if not u.soft_deleted)

    def _soft_deleted(self) -> list[str]:
        return sorted(uid for uid, u in self.sim.tenant.users.items() if u.soft_deleted)

    def _groups(self) -> list[str]:
        return [g for g in self.groups if g in self.sim.tenant.groups]

    def _nested(self) -> list[str]:
        return [g for g in self.nested_groups if g in self.sim.tenant.groups]

    def nest(self, parent: str, child: str) -> None:
        """Make ``child`` a member of ``parent`` (a setup step, told to the oracle)."""
        self.sim.add_member(parent, child)
        self.oracle.observe(self.sim)

    def new_user(self, groups: list[str] | None = None) -> str:
        person = self.people.user()
        uid = self.sim.add_user(**person.fields())
        self.kinds[uid] = person.kind
        for gid in groups or []:
            self.sim.add_member(gid, uid)
        self.oracle.observe(self.sim)
        return uid

    def seed(self, users: int, rng: random.Random) -> list[str]:
        """Create ``users`` users, each in one or two configured groups."""
        groups = self._groups() + self._nested()
        return [self.new_user(rng.sample(groups, k=min(len(groups), rng.choice((1, 1, 2))))) for _ in range(users)]

    def apply(self, op: Op) -> str | None:
        """Apply one op; returns what was done, or None when it had nothing to act on."""
        done = self._apply(op)
        if done is not None:
            self.oracle.observe(self.sim)
            self.applied.append(done)
        return done

    def _apply(self, op: Op) -> str | None:
        sim, a, b = self.sim, op.a, op.b
        present, groups = self._present(), self._groups() + self._nested()
        if op.kind == "new_user":
            uid = self.new_user([groups[b % len(groups)]] if groups and a % 3 else [])
            return f"new user {uid}"
        if op.kind == "add_member":
            if not present or not groups:
                return None
            uid, gid = present[a % len(present)], groups[b % len(groups)]
            sim.add_member(gid, uid)
            return f"add {uid} to {gid}"
        if op.kind == "remove_member":
            pairs = [(g, u) for g in groups for u in sim.tenant.groups[g].members]
            if not pairs:
                return None
            gid, uid = pairs[a % len(pairs)]
            sim.remove_member(gid, uid)
            return f"remove {uid} from {gid}"
        if op.kind == "restore":
            gone = self._soft_deleted()
            if not gone:
                return None
            uid = gone[a % len(gone)]
            sim.restore_user(uid)
            return f"restore {uid}"
        if op.kind == "hard_delete":
            everyone = sorted(sim.tenant.users)
            if not everyone:
                return None
            uid = everyone[a % len(everyone)]
            sim.hard_delete_user(uid)
            return f"hard delete {uid}"
        if op.kind in ("nest", "unnest"):
            return self._nesting(op)
        if op.kind == "delete_group":
            configured = self._groups()
            candidates = (configured if len(configured) >= 2 else []) + self._nested()
            if self.deletable_groups <= 0 or not candidates:
                return None
            gid = candidates[a % len(candidates)]
            sim.delete_group(gid)
            self.deletable_groups -= 1
            return f"delete group {gid}"
        if not present:
            return None
        uid = present[a % len(present)]
        n = self._next()
        if op.kind == "toggle_enabled":
            enabled = not sim.tenant.users[uid].account_enabled
            sim.update_user(uid, account_enabled=enabled)
            return f"{'enable' if enabled else 'disable'} {uid}"
        if op.kind == "rename":
            field_name = ("display_name", "given_name", "surname")[b % 3]
            name = self.people.name()
            values = {"display_name": f"{name.given} {name.surname} ({n})", "given_name": name.given, "surname": name.surname}
            renamed = values[field_name]
            sim.update_user(uid, **{field_name: renamed})
            return f"rename {uid} ({field_name})"
        if op.kind in ("change_mail", "change_upn"):
            upn, mail = self.people.readdress(self.kinds.get(uid, "member"), sim.tenant.users[uid].user_principal_name)
            if op.kind == "change_upn":
                sim.update_user(uid, user_principal_name=upn)
                return f"new UPN for {uid}"
            sim.update_user(uid, mail=mail or upn)
            return f"new mail for {uid}"
        if op.kind == "cost_center":
            value = None if b % 4 == 0 else f"{COST_CENTERS[n % len(COST_CENTERS)]}-{n}"
            sim.update_user(uid, employee_org_data={"costCenter": value})
            return f"cost center of {uid} = {value}"
        if op.kind == "soft_delete":
            sim.soft_delete_user(uid)
            return f"soft delete {uid}"
        raise ValueError(f"unknown op kind {op.kind!r}")

    def _nesting(self, op: Op) -> str | None:
        """``nest``: a nested group (or a configured one) into another group; ``unnest``: undo one."""
        nested = self._nested()
        if not nested:
            return None
        groups = self._groups() + nested
        if op.kind == "nest":
            parent = groups[op.a % len(groups)]
            children = [g for g in groups if g != parent]
            if not children:
                return None
            child = children[op.b % len(children)]
            self.sim.add_member(parent, child)
            return f"nest {child} in {parent}"
        pairs = [(g, c) for g in groups for c in self.sim.tenant.groups[g].member_groups]
        if not pairs:
            return None
        parent, child = pairs[op.a % len(pairs)]
        self.sim.remove_member(parent, child)
        return f"take {child} out of {parent}"
