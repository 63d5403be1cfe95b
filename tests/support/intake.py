"""The intake's test rig: a Service with a recording handler behind the real app, over real HTTP on
loopback, with one known users subscription in its SQLite store."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.app import create_app
from reactor.config import Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.service import Service
from reactor.store import SQLiteStore, SubscriptionRecord
from tests.support.servers import serve_asgi

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "s3cr3t-client-state-0123456789abcdef"


JSON = {"content-type": "application/json"}


def oid(name: str) -> str:
    """The (GUID) object id of a test user known by ``name``: Graph's directory ids are GUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def item(user: str, *, sub: str = SUB, state: str = STATE, tenant: str = TENANT) -> dict[str, object]:
    return {
        "subscriptionId": sub,
        "clientState": state,
        "changeType": "updated",
        "resource": f"Users/{user}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user}", "id": user},
        "tenantId": tenant,
    }


@dataclass
class Recorder:
    units: list[WorkUnit] = field(default_factory=list)

    async def __call__(self, unit: WorkUnit) -> None:
        self.units.append(unit)

    def seen(self) -> set[str]:
        return {oid for u in self.units for oid in u.object_ids}


@dataclass
class Running:
    url: str
    service: Service
    store: SQLiteStore
    recorder: Recorder
    db: Path


async def subscribed(db: Path, *, sub: str = SUB, state: str = STATE, lifetime: float = 86400.0) -> Path:
    """Make the SQLite store at ``db`` (created if need be) know the users subscription ``sub`` with
    clientState ``state``, expiring in ``lifetime`` seconds, as ``reactor serve`` finds it at start."""
    store = SQLiteStore(str(db))
    await store.open()
    await store.save_subscription(
        SubscriptionRecord(
            sub, "users", "updated,deleted", "https://x/n", "https://x/l", state, time.time() + lifetime, time.time()
        )
    )
    await store.close()
    return db


@contextlib.asynccontextmanager
async def start(
    tmp_path: Path, recorder: Recorder, *, server: dict[str, Any] | None = None, **sync: object
) -> AsyncIterator[Running]:
    """Serve a Service whose handler is ``recorder``; ``server`` overrides settings (default: a 4 KiB body limit)."""
    db = tmp_path / "reactor.db"
    settings = with_overrides(
        Settings(),
        graph={"tenant_id": TENANT},
        store={"url": f"sqlite:///{db}"},
        server=server if server is not None else {"max_body_bytes": 4096},
        sync=sync or {"workers": 2},
    )
    store = SQLiteStore(str(db), busy_timeout_ms=200)
    await store.open()
    await store.save_subscription(
        SubscriptionRecord(SUB, "users", "updated,deleted", "https://x/notifications", "https://x/lifecycle", STATE,
                           time.time() + 3600, time.time())
    )
    await store.close()
    service = Service(settings, store, recorder)
    async with serve_asgi(create_app(service)) as url:
        yield Running(url, service, store, recorder, db)
