"""Configuration: a TOML file plus ``REACTOR_<SECTION>_<KEY>`` environment overrides.

Read once into frozen, typed settings. Secrets live in :class:`Secret`, whose ``repr`` and ``str``
never show the value. Every invalid value raises :class:`~reactor.errors.ConfigurationError` with one
line that names the key and says what is wrong, never the secret itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from reactor.errors import ConfigurationError
from reactor.secret import Secret

__all__ = ["Secret", "Settings"]

Dialect = Literal["rfc", "entra"]
Deprovision = Literal["disable", "delete"]
Grants = Literal["role", "reception", "service_provider", "access"]

GRANTS: tuple[Grants, ...] = ("role", "reception", "service_provider", "access")
COST_CENTER_EMPLOYEE_ORG = "employeeOrgData/costCenter"
_EXTENSION_ATTR = re.compile(r"^onPremisesExtensionAttributes/extensionAttribute([1-9]|1[0-5])$")
_DIRECTORY_EXT = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    max_body_bytes: int = 1_048_576
    max_items_per_request: int = 1000
    log_level: str = "info"
    admin_host: str = "127.0.0.1"
    admin_port: int = 9090
    admin_token: Secret = field(default_factory=lambda: Secret(""))

    @property
    def notification_url(self) -> str:
        return self.public_url.rstrip("/") + "/notifications"

    @property
    def lifecycle_url(self) -> str:
        return self.public_url.rstrip("/") + "/lifecycle"


@dataclass(frozen=True)
class GraphSettings:
    tenant_id: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    certificate_path: str = ""
    base_url: str = "https://graph.microsoft.com/v1.0"
    authority: str = "login.microsoftonline.com"
    token: Secret = field(default_factory=lambda: Secret(""))
    max_requests_per_second: float = 50.0
    """Graph's requests per second at most, a ``$batch`` counting each request it carries (Graph
    throttles each of them, in resource units: 1 a user read). Graph allows one application in a tenant
    3,500 units per 10 s under 50 users, 5,000 up to 500 and 8,000 above; the default keeps well inside
    the smallest, with room for the delta rounds and retries. Up to one second of it (at least one
    full ``$batch``, 20 requests) may go at once."""

    @property
    def credential_kind(self) -> str:
        """Which credential is used: ``static-token``, ``client-secret``, ``certificate`` or ``managed-identity``."""
        if self.token:
            return "static-token"
        if self.client_secret:
            return "client-secret"
        if self.certificate_path:
            return "certificate"
        return "managed-identity"


@dataclass(frozen=True)
class AskCodySettings:
    scim_url: str = ""
    token: Secret = field(default_factory=lambda: Secret(""))
    dialect: Dialect = "rfc"
    deprovision: Deprovision = "disable"
    max_requests_per_second: float = 25.0
    timeout_seconds: float = 30.0
    bulk: bool = True
    """Send concurrent writes as one ``POST /Bulk`` when AskCody's ServiceProviderConfig advertises it."""
    etags: bool = True
    """Send ``If-Match`` with the user's last known version on the writes planned from the state last
    applied, when AskCody's ServiceProviderConfig advertises ``etag``."""


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///reactor.db"
    password: Secret = field(default_factory=lambda: Secret(""))
    lease_seconds: float = 15.0
    audit_retention_days: int = 90
    entra_auth: bool = False

    @property
    def sqlite_path(self) -> str:
        """The file path of a ``sqlite:///`` URL (``:memory:`` allowed)."""
        return sqlite_path(self.url)

    def __repr__(self) -> str:
        # A password may be written in the URL: never show it, whoever prints the settings.
        return (
            f"StoreSettings(url={redact_url(self.url)!r}, password={self.password!r}, "
            f"lease_seconds={self.lease_seconds!r}, audit_retention_days={self.audit_retention_days!r}, "
            f"entra_auth={self.entra_auth!r})"
        )


@dataclass(frozen=True)
class SyncSettings:
    reconcile_interval_seconds: float = 900.0
    workers: int = 20
    """Units handled at once: as many users as one Graph ``$batch`` reads and one SCIM bulk request
    carries while they wait for AskCody's rate limit (which, not the workers, bounds the work)."""
    max_attempts: int = 8
    retry_horizon_seconds: float = 600.0


@dataclass(frozen=True)
class SubscriptionSettings:
    renew_when_remaining_share: float = 0.5
    lifetime_minutes: int = 41_760 - 60
    enabled: bool = True


@dataclass(frozen=True)
class AttributeSettings:
    cost_center: str = COST_CENTER_EMPLOYEE_ORG

    @property
    def cost_center_select(self) -> str:
        """The property to ``$select`` from Graph for the cost center (a complex property is selected whole)."""
        if not self.cost_center:
            return ""
        return self.cost_center.split("/", 1)[0]


@dataclass(frozen=True)
class GroupMapping:
    id: str
    askcody_group: str = ""
    grants: Grants = "role"
    nested: bool = True


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    askcody: AskCodySettings = field(default_factory=AskCodySettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)
    attributes: AttributeSettings = field(default_factory=AttributeSettings)
    groups: tuple[GroupMapping, ...] = ()

    def group(self, group_id: str) -> GroupMapping | None:
        for g in self.groups:
            if g.id == group_id:
                return g
        return None

    @property
    def group_ids(self) -> frozenset[str]:
        return frozenset(g.id for g in self.groups)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "graph": GraphSettings,
    "askcody": AskCodySettings,
    "store": StoreSettings,
    "sync": SyncSettings,
    "subscriptions": SubscriptionSettings,
    "attributes": AttributeSettings,
}
SECRET_KEYS = frozenset(
    {("graph", "client_secret"), ("graph", "token"), ("askcody", "token"), ("server", "admin_token"), ("store", "password")}
)


def sqlite_path(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(f"store.url must start with {prefix!r} (got a different scheme)")
    path = url[len(prefix):]
    if not path:
        raise ConfigurationError("store.url names no file")
    return path


def _cast(section: str, key: str, raw: Any, target: Any) -> Any:
    name = f"{section}.{key}"
    if (section, key) in SECRET_KEYS:
        if not isinstance(raw, str):
            raise ConfigurationError(f"{name} must be a string")
        return Secret(raw)
    if target is bool or target == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ConfigurationError(f"{name} must be true or false")
    if target is int or target == "int":
        if isinstance(raw, bool):
            raise ConfigurationError(f"{name} must be a whole number")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if target is float or target == "float":
        if isinstance(raw, bool):
            raise ConfigurationError(f"{name} must be a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigurationError(f"{name} must be a string")
    return raw


_TYPES: dict[str, type[Any]] = {"str": str, "int": int, "float": float, "bool": bool}


def _field_types(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.type for f in fields(cls)}


def _build_section(section: str, values: Mapping[str, Any]) -> Any:
    cls = _SECTIONS[section]
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in types:
            known = ", ".join(sorted(types))
            raise ConfigurationError(f"unknown key {section}.{key} (known: {known})")
        t = types[key]
        base = t if isinstance(t, type) else str(t).split("|")[0].strip()
        if base in ("Dialect", "Deprovision"):
            base = "str"
        kwargs[key] = _cast(section, key, raw, _TYPES.get(str(base), base))
    return cls(**kwargs)


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith("REACTOR_") or name == "REACTOR_CONFIG":
            continue
        rest = name[len("REACTOR_"):].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                if key not in _field_types(_SECTIONS[section]):
                    raise ConfigurationError(f"unknown key {section}.{key} (from environment variable {name})")
                out.setdefault(section, {})[key] = value
                break
    return out


def is_loopback(host: str) -> bool:
    """``localhost``, or an address in 127.0.0.0/8 or ``::1`` (brackets of an IPv6 literal allowed)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact_url(value: str) -> str:
    """``value`` with the user:password and the query (and fragment) replaced by ``***``: they may
    carry credentials (``https://***@askcody.example.com/scim/v2?***``)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme or netloc else parts.path
    if parts.query:
        out += "?***"
    if parts.fragment:
        out += "#***"
    return out


def _check_url(name: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            raise ConfigurationError(f"{name} is missing")
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} is not a valid http(s) URL: {redact_url(value)!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigurationError(f"{name} has an invalid port: {redact_url(value)!r}") from None


def _check_guid(name: str, value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ConfigurationError(f"{name} is not a GUID: {value!r}") from None
    if len(value) != 36:
        raise ConfigurationError(f"{name} is not a GUID in the 8-4-4-4-12 form: {value!r}")


def _check_entra_auth(store: StoreSettings) -> None:
    """``store.entra_auth``: the password of every connection is an access token of the identity, so
    the store must be PostgreSQL, name the Entra role as its user, and carry no password of its own."""
    if not store.url.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            "store.entra_auth needs a postgresql:// store.url (Microsoft Entra authentication is for Azure Database "
            "for PostgreSQL, not SQLite)"
        )
    parts = urlsplit(store.url)
    if store.password or parts.password:
        where = "store.password" if store.password else "the password in store.url"
        raise ConfigurationError(
            f"store.entra_auth and {where} are both set: with Entra authentication the password is the managed "
            "identity's access token; remove the password"
        )
    if not parts.username:
        raise ConfigurationError(
            "store.url names no user: with store.entra_auth it is the PostgreSQL role of the managed identity "
            "(postgresql://<identity name>@<server>.postgres.database.azure.com:5432/<database>?sslmode=require)"
        )


def validate(settings: Settings, *, require_remote: bool = True) -> Settings:
    """Check every value; with ``require_remote`` also that Graph and AskCody are fully configured."""
    s = settings
    if not 0 <= s.server.port <= 65535:
        raise ConfigurationError(f"server.port must be between 0 and 65535, got {s.server.port}")
    if not 1 <= s.server.max_items_per_request <= 100_000:
        raise ConfigurationError("server.max_items_per_request must be between 1 and 100000")
    if not 0 <= s.server.admin_port <= 65535:
        raise ConfigurationError(f"server.admin_port must be between 0 and 65535, got {s.server.admin_port}")
    if s.server.admin_port and s.server.admin_port == s.server.port:
        raise ConfigurationError(
            f"server.admin_port must differ from server.port (both {s.server.port}): the status page, metrics and "
            "probes are served on their own listener, apart from the webhooks"
        )
    if s.server.max_body_bytes < 1024:
        raise ConfigurationError("server.max_body_bytes must be at least 1024")
    if not is_loopback(s.server.admin_host) and not s.server.admin_token:
        raise ConfigurationError(
            "server.admin_token is required when server.admin_host is not loopback "
            f"({s.server.admin_host!r}): the status page shows employees' names and recent changes"
        )
    if s.server.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigurationError("server.log_level must be one of debug, info, warning, error")
    _check_url("server.public_url", s.server.public_url, required=False)
    if s.server.public_url and urlsplit(s.server.public_url).scheme != "https" and urlsplit(
        s.server.public_url
    ).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigurationError("server.public_url must be https (Graph only delivers to https endpoints)")
    _check_url("graph.base_url", s.graph.base_url, required=True)
    if not s.graph.authority or "/" in s.graph.authority.removeprefix("https://").rstrip("/"):
        raise ConfigurationError(
            f"graph.authority must be a host name such as login.microsoftonline.com, got {s.graph.authority!r}"
        )
    if s.graph.tenant_id:
        _check_guid("graph.tenant_id", s.graph.tenant_id)
    if s.graph.client_id:
        _check_guid("graph.client_id", s.graph.client_id)
    if s.graph.client_secret and s.graph.certificate_path:
        raise ConfigurationError("graph.client_secret and graph.certificate_path are both set: choose one")
    if (s.graph.client_secret or s.graph.certificate_path) and not s.graph.client_id:
        raise ConfigurationError("graph.client_id is missing (needed with a client secret or certificate)")
    if s.graph.certificate_path and not Path(s.graph.certificate_path).is_file():
        raise ConfigurationError(f"graph.certificate_path does not name a file: {s.graph.certificate_path!r}")
    _check_url("askcody.scim_url", s.askcody.scim_url, required=require_remote)
    if s.askcody.scim_url and urlsplit(s.askcody.scim_url).scheme != "https" and not is_loopback(
        urlsplit(s.askcody.scim_url).hostname or ""
    ):
        raise ConfigurationError(
            "askcody.scim_url must be https (the bearer token and employees' data travel on it); "
            "plain http only for a loopback host (localhost, 127.0.0.0/8, ::1)"
        )
    if s.askcody.dialect not in ("rfc", "entra"):
        raise ConfigurationError(f"askcody.dialect must be 'rfc' or 'entra', got {s.askcody.dialect!r}")
    if s.askcody.deprovision not in ("disable", "delete"):
        raise ConfigurationError(f"askcody.deprovision must be 'disable' or 'delete', got {s.askcody.deprovision!r}")
    if not s.askcody.max_requests_per_second > 0:
        raise ConfigurationError("askcody.max_requests_per_second must be greater than 0")
    if not s.graph.max_requests_per_second > 0:
        raise ConfigurationError("graph.max_requests_per_second must be greater than 0")
    if not s.askcody.timeout_seconds > 0:
        raise ConfigurationError("askcody.timeout_seconds must be greater than 0")
    if not s.store.url.startswith(("postgresql://", "postgres://")):
        sqlite_path(s.store.url)
    if s.store.entra_auth:
        _check_entra_auth(s.store)
    if not s.store.lease_seconds > 0:
        raise ConfigurationError("store.lease_seconds must be greater than 0")
    if s.store.audit_retention_days < 1:
        raise ConfigurationError("store.audit_retention_days must be at least 1")
    if not s.sync.reconcile_interval_seconds > 0:
        raise ConfigurationError("sync.reconcile_interval_seconds must be greater than 0")
    if not 1 <= s.sync.workers <= 256:
        raise ConfigurationError("sync.workers must be between 1 and 256")
    if s.sync.max_attempts < 1:
        raise ConfigurationError("sync.max_attempts must be at least 1")
    if not 0 < s.subscriptions.renew_when_remaining_share < 1:
        raise ConfigurationError("subscriptions.renew_when_remaining_share must be between 0 and 1")
    if not 45 <= s.subscriptions.lifetime_minutes <= 41_760:
        raise ConfigurationError("subscriptions.lifetime_minutes must be between 45 and 41760")
    cc = s.attributes.cost_center
    if cc and cc != COST_CENTER_EMPLOYEE_ORG and not _EXTENSION_ATTR.match(cc) and not _DIRECTORY_EXT.match(cc):
        raise ConfigurationError(
            "attributes.cost_center must be 'employeeOrgData/costCenter', "
            "'onPremisesExtensionAttributes/extensionAttribute1'..'15' or 'extension_<appId>_<name>', "
            f"got {cc!r}"
        )
    seen: set[str] = set()
    for i, g in enumerate(s.groups):
        _check_guid(f"groups[{i}].id", g.id)
        if g.id in seen:
            raise ConfigurationError(f"groups[{i}].id {g.id} is listed twice")
        seen.add(g.id)
        if g.grants not in GRANTS:
            raise ConfigurationError(f"groups[{i}].grants must be one of {', '.join(GRANTS)}, got {g.grants!r}")
    if require_remote:
        if not s.graph.tenant_id:
            raise ConfigurationError("graph.tenant_id is missing")
        if not s.askcody.token:
            raise ConfigurationError("askcody.token is missing (set it in [askcody] or REACTOR_ASKCODY_TOKEN)")
        if not s.groups:
            raise ConfigurationError("no [[groups]] configured: nothing is in scope")
    return s


def _groups(raw: Any) -> tuple[GroupMapping, ...]:
    if not isinstance(raw, list):
        raise ConfigurationError("groups must be an array of tables ([[groups]])")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigurationError(f"groups[{i}] must be a table")
        unknown = set(entry) - {"id", "askcody_group", "grants", "nested"}
        if unknown:
            raise ConfigurationError(f"unknown key groups[{i}].{sorted(unknown)[0]} (known: askcody_group, grants, id, nested)")
        if "nested" in entry and not isinstance(entry["nested"], bool):
            raise ConfigurationError(f"groups[{i}].nested must be true or false")
        if not entry.get("id"):
            raise ConfigurationError(f"groups[{i}] has no id")
        for key in ("id", "askcody_group", "grants"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigurationError(f"groups[{i}].{key} must be a string")
        out.append(
            GroupMapping(
                id=entry["id"].strip().lower(),
                askcody_group=entry.get("askcody_group", ""),
                grants=cast(Grants, entry.get("grants", "role")),
                nested=entry.get("nested", True),
            )
        )
    return tuple(out)


def from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from parsed TOML data and environment overrides (not yet validated)."""
    env_over = _env_overrides(env if env is not None else {})
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "groups":
            continue
        if key not in _SECTIONS:
            raise ConfigurationError(f"unknown section [{key}] (known: {', '.join(sorted(_SECTIONS))}, groups)")
        if not isinstance(value, dict):
            raise ConfigurationError(f"[{key}] must be a table")
    for section in _SECTIONS:
        values: dict[str, Any] = dict(data.get(section, {}))
        values.update(env_over.get(section, {}))
        kwargs[section] = _build_section(section, values)
    kwargs["groups"] = _groups(data.get("groups", []))
    return Settings(**kwargs)


def default_config_path(env: Mapping[str, str]) -> Path | None:
    if env.get("REACTOR_CONFIG"):
        return Path(env["REACTOR_CONFIG"])
    here = Path("reactor.toml")
    return here if here.is_file() else None


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None, *, require_remote: bool = True) -> Settings:
    """Read the configuration once: file (``path``, ``$REACTOR_CONFIG`` or ``./reactor.toml``) + env."""
    environ = dict(os.environ) if env is None else dict(env)
    p = Path(path) if path is not None else default_config_path(environ)
    data: dict[str, Any] = {}
    if p is not None:
        try:
            with open(p, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigurationError(f"configuration file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{p}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigurationError(f"{p}: cannot be read: {exc.strerror}") from None
    return validate(from_mapping(data, environ), require_remote=require_remote)


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by a marker and the
    user:password and query of every URL by ``***`` (:func:`redact_url`)."""
    out: dict[str, Any] = {}
    for section in _SECTIONS:
        obj = getattr(settings, section)
        sec: dict[str, Any] = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, Secret):
                v = "<redacted>" if v else ""
            elif (f.name == "url" or f.name.endswith("_url")) and isinstance(v, str) and v:
                v = redact_url(v)
            sec[f.name] = v
        out[section] = sec
    out["groups"] = [
        {"id": g.id, "askcody_group": g.askcody_group, "grants": g.grants, "nested": g.nested} for g in settings.groups
    ]
    return out


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy of ``settings`` with some keys of some sections replaced (for tests and the demo)."""
    changes: dict[str, Any] = {}
    for name, values in sections.items():
        changes[name] = replace(getattr(settings, name), **values)
    return replace(settings, **changes)
