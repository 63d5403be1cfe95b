"""Test tenants that look like real directories, deterministic from a seed.

A real Entra tenant is not ``user1@contoso.com``: it holds invited guests
(``anna.berg_contoso.dk#EXT#@fabrikam.onmicrosoft.com``, ``userType`` Guest, mail at their home
domain), hybrid users synced from on-premises AD (``onPremisesSyncEnabled``, mail or UPN still at
``corp.contoso.local``), names in Latin with diacritics, Greek, Cyrillic, Arabic, Hebrew, CJK and
Devanagari, apostrophes and quotes (``Seán O'Brien``, ``Katherine "Kiki" Olsen``), shared accounts
without given name or surname, unusual but real mail domains (``.museum``, ``.photography``, IDN
punycode, subdomains, plus-addressing), cost centers in the configured attribute, disabled accounts,
and groups whose names carry the same variety.

:class:`People` draws such users one at a time, every userPrincipalName and mail unique (without
regard to case) for its lifetime; :func:`generate_tenant` draws a whole tenant: users, the groups in
scope (with and without an ``askcody_group``, optionally one large group) and their memberships.
:meth:`Tenant.load` puts it into a :class:`~graphsim.GraphSimulator`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from graphsim import GraphSimulator
from tests.support.expected import Rules
from tests.support.tenant_names import PROVIDER, ROLE

Kind = Literal["member", "guest", "hybrid", "shared"]
KINDS: tuple[Kind, ...] = ("member", "guest", "hybrid", "shared")
EMPLOYEE_ORG = "employeeOrgData/costCenter"
EXTENSION_ATTRIBUTE = "onPremisesExtensionAttributes/extensionAttribute"
TENANT_DOMAIN = "fabrikam.onmicrosoft.com"


@dataclass(frozen=True)
class Name:
    script: str
    given: str
    surname: str
    local: str
    """The ASCII mail local part (the transliteration a directory admin would choose)."""
    display: str = "{given} {surname}"


NAMES: tuple[Name, ...] = (
    Name("latin", "Zoë", "Gül", "zoe.gul"),
    Name("latin", "Søren", "Kierkegård", "soren.kierkegard"),
    Name("latin", "Åsa", "Öberg", "asa.oberg"),
    Name("latin", "José", "Muñoz", "jose.munoz"),
    Name("latin", "François", "Lefèvre", "francois.lefevre"),
    Name("latin", "Łukasz", "Wąsik", "lukasz.wasik"),
    Name("latin", "Þóra", "Sigurðardóttir", "thora.sigurdardottir"),
    Name("latin", "Antonín", "Dvořák", "antonin.dvorak"),
    Name("latin", "Seán", "O'Brien", "sean.o'brien"),
    Name("latin", "D'Arcy", "N'Diaye", "darcy.ndiaye"),
    Name("latin", "Katherine", "Olsen", "katherine.olsen", '{given} "Kiki" {surname}'),
    Name("latin", "Robert", "Smith-Jones", "bob.smith-jones", "{surname}, {given} 'Bob'"),
    Name("latin", "Anna", "Berg", "anna.berg"),
    Name("latin", "Ole", "Hansen", "ole.hansen"),
    Name("greek", "Αλέξανδρος", "Παπαδόπουλος", "alexandros.papadopoulos"),
    Name("greek", "Ελένη", "Γεωργίου", "eleni.georgiou"),
    Name("cyrillic", "Дмитрий", "Иванов", "dmitry.ivanov"),
    Name("cyrillic", "Юлия", "Щербакова", "yulia.shcherbakova"),
    Name("cyrillic", "Олександр", "Ковальчук", "oleksandr.kovalchuk"),
    Name("arabic", "محمد", "العلي", "mohammed.alali"),
    Name("arabic", "فاطمة", "الزهراء", "fatima.alzahra"),
    Name("hebrew", "נועה", "כהן", "noa.cohen"),
    Name("hebrew", "יוסף", "לוי", "yosef.levi"),
    Name("cjk", "美玲", "陈", "meiling.chen", "{surname}{given}"),
    Name("cjk", "花子", "山田", "hanako.yamada", "{surname} {given}"),
    Name("cjk", "민준", "김", "minjun.kim", "{surname}{given}"),
    Name("devanagari", "प्रिया", "शर्मा", "priya.sharma"),
    Name("devanagari", "अर्जुन", "पटेल", "arjun.patel"),
)
SCRIPTS = tuple(sorted({n.script for n in NAMES}))
SHARED_ACCOUNTS = (
    ("Reception Desk – Søborg", "reception.soborg"),  # noqa: RUF001  (real names carry en dashes)
    ('Mødelokale 3.14 "Havet"', "moedelokale314"),
    ("Kantine / Catering (Aarhus)", "kantine.aarhus"),
    ("Служба поддержки", "support.kyiv"),
)
MEMBER_DOMAINS = (
    "contoso.com",
    "contoso.dk",
    "nordic.contoso.com",
    "kontor.contoso.co.uk",
    "arkiv.museum",
    "studio.photography",
    "xn--rksmrgs-5wao1o.se",
    "xn--mller-kva.de",
)
HYBRID_DOMAINS = ("corp.contoso.local", "contoso.local", "ad.fabrikam.internal")
GUEST_DOMAINS = ("contoso.dk", "gmail.com", "outlook.com", "partner.photography", "xn--bcher-kva.ch", "catering.aarhus.dk")
COST_CENTERS = ("CC-4711", "KST 1020", "Økonomi/120", "FM-Søborg-03", "4200-DK", "R&D 7")


@dataclass(frozen=True)
class TenantUser:
    """One user as Entra holds it; :meth:`fields` are the keyword arguments of ``GraphSimulator.add_user``."""

    id: str
    user_principal_name: str
    display_name: str | None
    given_name: str | None
    surname: str | None
    mail: str | None
    account_enabled: bool
    cost_center: str | None
    kind: Kind
    script: str

    @property
    def user_type(self) -> str:
        return "Guest" if self.kind == "guest" else "Member"

    def fields(self, cost_center: str = EMPLOYEE_ORG) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "user_principal_name": self.user_principal_name,
            "display_name": self.display_name,
            "given_name": self.given_name,
            "surname": self.surname,
            "mail": self.mail,
            "account_enabled": self.account_enabled,
            "user_type": self.user_type,
            "on_premises_sync_enabled": True if self.kind == "hybrid" else None,
        }
        out.update(cost_center_fields(cost_center, self.cost_center))
        return out


def cost_center_fields(attribute: str, value: str | None) -> dict[str, Any]:
    """The ``add_user``/``update_user`` keyword arguments that set ``attribute`` (as configured in
    ``attributes.cost_center``) to ``value``."""
    if not attribute:
        return {}
    if attribute == EMPLOYEE_ORG:
        return {"employee_org_data": {"costCenter": value}}
    if attribute.startswith(EXTENSION_ATTRIBUTE):
        return {"extension_attributes": {int(attribute[len(EXTENSION_ATTRIBUTE):]): value}}
    return {"extensions": {attribute: value}}


class People:
    """Draws realistic users from ``seed``; no userPrincipalName or mail is handed out twice."""

    def __init__(self, seed: int, *, tenant_domain: str = TENANT_DOMAIN, salt: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.tenant_domain = tenant_domain
        self.salt = (seed % 2**32 + 1) if salt is None else salt
        self.count = 0
        self._owners: dict[str, int] = {}
        """Every address handed out (lower case) → the user it was handed to (its UPN and mail may match)."""

    def _unique(self, local: str, domain: str) -> str:
        n = 1
        while True:
            address = f"{local}{n if n > 1 else ''}@{domain}"
            if self._owners.setdefault(address.lower(), self.count) == self.count:
                return address
            n += 1

    def _plus(self, local: str) -> str:
        return f"{local}+{self.rng.choice(('facilities', 'cph', 'reception'))}" if self.rng.random() < 0.15 else local

    def addresses(self, kind: Kind, local: str) -> tuple[str, str | None]:
        """A fresh (userPrincipalName, mail) of ``kind`` for the local part ``local``, for the current user."""
        rng = self.rng
        if kind == "guest":
            # The invitation makes the UPN from the home address: anna.berg_contoso.dk#EXT#@<tenant>.
            mail = self._unique(self._plus(local), rng.choice(GUEST_DOMAINS))
            return self._unique(mail.replace("@", "_") + "#EXT#", self.tenant_domain), mail
        if kind == "hybrid":
            # Synced from AD: the mail at the forest's .local domain; the UPN there too, or made routable.
            domain = rng.choice(HYBRID_DOMAINS)
            mail = self._unique(local, domain)
            return (mail if rng.random() < 0.5 else self._unique(local, rng.choice(MEMBER_DOMAINS[:2]))), mail
        domain = rng.choice(MEMBER_DOMAINS)
        upn = self._unique(local, domain)
        if kind == "shared" and rng.random() < 0.3:
            return upn, None
        return upn, self._unique(self._plus(local), domain)

    def readdress(self, kind: Kind, user_principal_name: str) -> tuple[str, str | None]:
        """New (userPrincipalName, mail) for the user of ``kind`` now at ``user_principal_name`` (a
        rename, a move to another domain), neither handed out before."""
        local = user_principal_name.split("@")[0].removesuffix("#EXT#").split("_")[0].split("+")[0]
        self.count += 1
        return self.addresses(kind, local)

    def name(self) -> Name:
        return self.rng.choice(NAMES)

    def cost_center(self) -> str | None:
        return None if self.rng.random() < 0.15 else self.rng.choice(COST_CENTERS)

    def user(self, kind: Kind | None = None, *, name: Name | None = None, enabled: bool | None = None) -> TenantUser:
        """The next user (of ``kind``, by default drawn: mostly members, some guests, hybrids, shared)."""
        rng = self.rng
        self.count += 1
        kind = kind or rng.choices(KINDS, (55, 15, 22, 8))[0]
        uid = str(uuid.UUID(int=(self.salt << 64) | self.count))
        active = enabled if enabled is not None else rng.random() >= 0.1
        if kind == "shared":
            display, local = rng.choice(SHARED_ACCOUNTS)
            upn, mail = self.addresses(kind, local)
            return TenantUser(uid, upn, display, None, None, mail, active, self.cost_center(), kind, "latin")
        chosen = name or self.name()
        upn, mail = self.addresses(kind, chosen.local)
        display = chosen.display.format(given=chosen.given, surname=chosen.surname)
        if kind == "guest":
            display = f"{display} (Guest)" if rng.random() < 0.3 else display
        return TenantUser(
            uid, upn, display, chosen.given, chosen.surname, mail, active, self.cost_center(), kind, chosen.script
        )

    def every_kind_and_script(self) -> list[TenantUser]:
        """One user of each kind and one of each script: the least a generated tenant holds."""
        firsts = {n.script: n for n in reversed(NAMES)}
        return [self.user(k) for k in KINDS] + [self.user("member", name=firsts[s]) for s in SCRIPTS]


@dataclass(frozen=True)
class GroupSpec:
    display_name: str
    askcody_group: str
    """The configured AskCody name; empty: the group is named by its Entra displayName."""
    grants: str = "role"
    share: float = 0.4
    """The share of the tenant's users that are members."""


DEFAULT_GROUPS = (
    GroupSpec("FM staff – Søborg", ROLE, "role", 0.45),  # noqa: RUF001
    GroupSpec("Réception – København", "", "reception", 0.3),  # noqa: RUF001
    GroupSpec("O'Brien's \"Catering\" crew", PROVIDER, "service_provider", 0.2),
    GroupSpec("Служба приёма · 受付", "", "access", 0.25),
)
LARGE_GROUP = GroupSpec("Alle medarbejdere – Danmark (synced)", "", "access", 1.0)  # noqa: RUF001
OUT_OF_SCOPE = GroupSpec("All company (not in scope)", "", "role", 0.5)


@dataclass(frozen=True)
class TenantGroup:
    id: str
    display_name: str
    askcody_group: str
    grants: str
    members: tuple[str, ...]
    configured: bool = True

    @property
    def askcody_name(self) -> str:
        """The group's name in AskCody: ``askcody_group``, else the Entra displayName (the contract's default)."""
        return self.askcody_group or self.display_name


@dataclass(frozen=True)
class Tenant:
    users: tuple[TenantUser, ...]
    groups: tuple[TenantGroup, ...]
    """Configured groups first, then those not in scope."""
    cost_center: str = EMPLOYEE_ORG

    def user(self, uid: str) -> TenantUser:
        return next(u for u in self.users if u.id == uid)

    @property
    def configured(self) -> tuple[TenantGroup, ...]:
        return tuple(g for g in self.groups if g.configured)

    def scope(self) -> dict[str, tuple[str, str]]:
        """``local_stack``'s groups: Entra id → (askcody_group, grants) of each configured group."""
        return {g.id: (g.askcody_group, g.grants) for g in self.configured}

    def rules(self, deprovision: str = "disable") -> Rules:
        """The oracle's rules (:mod:`tests.support.expected`) for this tenant."""
        names = {g.id: g.askcody_name for g in self.configured}
        return Rules(groups=names, deprovision=deprovision, cost_center=self.cost_center)

    def in_scope(self) -> set[str]:
        return {uid for g in self.configured for uid in g.members}

    def load(self, sim: GraphSimulator, users: Iterable[TenantUser] | None = None) -> None:
        """Create the groups the simulator lacks, then ``users`` (default: all not there yet) with their memberships."""
        for g in self.groups:
            if g.id not in sim.tenant.groups:
                sim.add_group(id=g.id, display_name=g.display_name)
        for u in self.users if users is None else users:
            if u.id in sim.tenant.users:
                continue
            sim.add_user(**u.fields(self.cost_center))
            for g in self.groups:
                if u.id in g.members:
                    sim.add_member(g.id, u.id)


def generate_tenant(
    seed: int,
    users: int = 60,
    *,
    groups: Sequence[GroupSpec] = DEFAULT_GROUPS,
    large_group: int = 0,
    cost_center: str = EMPLOYEE_ORG,
    tenant_domain: str = TENANT_DOMAIN,
) -> Tenant:
    """A tenant of ``users`` users (at least one of each kind and script) in ``groups`` (each user in
    about ``share`` of them; a few in none) and one group not in scope. With ``large_group``, one
    more configured group without ``askcody_group`` holds that many users (more are drawn if needed)."""
    people = People(seed, tenant_domain=tenant_domain)
    rng = random.Random(seed ^ 0x5EED)
    drawn = people.every_kind_and_script()
    while len(drawn) < max(users, large_group):
        drawn.append(people.user())
    ids = [u.id for u in drawn]
    specs: list[tuple[GroupSpec, bool]] = [(g, True) for g in groups]
    if large_group:
        specs.append((LARGE_GROUP, True))
    specs.append((OUT_OF_SCOPE, False))
    made: list[TenantGroup] = []
    for n, (spec, configured) in enumerate(specs, start=1):
        gid = str(uuid.UUID(int=(0xA5C0D1 << 96) | (seed % 2**32 << 32) | n))
        if spec is LARGE_GROUP:
            members = rng.sample(ids, k=large_group)
        else:
            members = [uid for uid in ids[: users] if rng.random() < spec.share]
        made.append(TenantGroup(gid, spec.display_name, spec.askcody_group, spec.grants, tuple(members), configured))
    return Tenant(tuple(drawn), tuple(made), cost_center)


def kinds_of(users: Iterable[TenantUser]) -> Mapping[str, int]:
    """How many users of each kind (for assertions that a tenant holds what it should)."""
    out: dict[str, int] = {}
    for u in users:
        out[u.kind] = out.get(u.kind, 0) + 1
    return out
