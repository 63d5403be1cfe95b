"""The configured secrets (AskCody token, Graph token, Graph client secret) and the subscriptions'
clientState never appear in anything the reactor writes: the whole stdout and stderr of ``reactor
serve`` at debug level through normal work, AskCody refusing the token (401), Graph
refusing the token (401) and AskCody down; and the output of the CLI verbs, failing ones included
(unreachable URLs, a bad configuration, a client-secret login that cannot reach its authority)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.proofs.proof_rig import Rig, process_rig
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    output: str
    seconds: float


def cli(*args: str, env: dict[str, str] | None = None) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    environ.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reactor", *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )
    return Run(args, done.returncode, done.stdout + done.stderr, time.monotonic() - started)


def variant(rig: Rig, name: str, **changes: dict[str, object]) -> Path:
    """A copy of the rig's configuration with some keys changed (None removes a key)."""
    sections = {k: dict(v) for k, v in rig.settings.items()}
    for section, values in changes.items():
        for key, value in values.items():
            if value is None:
                sections[section].pop(key, None)
            else:
                sections[section][key] = value
    groups = [{"id": gid, "askcody_group": n, "grants": g} for gid, (n, g) in rig.groups.items()]
    return write_config(rig.tmp / f"{name}.toml", sections, groups)


async def serve_until(config: Path, port: int, log: Path, marker: str, timeout: float = 60.0) -> str:
    """``reactor serve`` (failing to reach what it should) until its output shows ``marker``; the
    whole output. Killed, not stopped: with Graph unreachable a clean stop waits for the work in
    flight (about 40 s)."""
    proc = ReactorProcess(config, port, log=log)
    await asyncio.to_thread(proc.start, 60.0)
    deadline = time.monotonic() + timeout
    while True:
        if marker in log.read_text(errors="replace") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.to_thread(proc.kill)
    return log.read_text(errors="replace")


async def test_no_secret_is_ever_printed_or_logged(tmp_path: Path) -> None:
    async with process_rig(tmp_path, seed=8, overrides={"server": {"log_level": "debug"}}) as rig:
        client_states = [s["clientState"] for s in rig.sim.subscriptions.values()]
        await rig.burst(10)
        await rig.converge(30)

        tokens = set(rig.scim_app.bearer_tokens)
        rig.scim_app.bearer_tokens.clear()
        rig.scim_app.bearer_tokens.add("another-token")  # AskCody refuses ours: 401
        rig.driver.new_user([next(iter(rig.groups))])
        await rig.wait_for(lambda: ": 401" in rig.log_text(), 30, "AskCody answers 401")
        rig.scim_app.bearer_tokens.clear()
        rig.scim_app.bearer_tokens.update(tokens)

        real = rig.sim.token
        rig.sim.token = "another-token"  # Graph refuses our token: 401
        await rig.burst(3)
        await rig.wait_for(lambda: any(c.status == 401 for c in rig.graph_log.calls), 30, "Graph answers 401")
        rig.sim.token = real

        async with rig.proxy_down():  # AskCody down: connection refused
            await rig.burst(3)
            await asyncio.sleep(2)
        await rig.stop()

        config = rig.config
        graph_root = rig.graph_url.removesuffix("/v1.0")
        closed = f"http://127.0.0.1:{free_port()}"
        wrong_scim = variant(rig, "wrong-scim-url", askcody={"scim_url": graph_root + "/scim/v2"})  # 404 there
        wrong_graph = variant(rig, "wrong-graph-url", graph={"base_url": graph_root + "/beta/v1.0"})
        from_env = variant(rig, "from-env", graph={"token": None, "client_secret": None}, askcody={"token": None})
        invalid = variant(rig, "invalid", graph={"base_url": "ftp://graph.invalid"})
        ports = free_port(), free_port()
        unreachable = variant(
            rig, "unreachable", server={"port": ports[0], "public_url": f"http://127.0.0.1:{ports[0]}"},
            graph={"base_url": closed + "/v1.0"}, askcody={"scim_url": closed + "/scim/v2"},
            store={"url": f"sqlite:///{tmp_path / 'unreachable.db'}"},
        )
        client_secret = variant(  # a real client-secret login, against an authority that does not answer
            rig, "client-secret", server={"port": ports[1], "public_url": f"http://127.0.0.1:{ports[1]}"},
            graph={"token": None, "authority": closed.removeprefix("http://")},
            store={"url": f"sqlite:///{tmp_path / 'client-secret.db'}"},
        )
        env = {
            "REACTOR_ASKCODY_TOKEN": rig.secrets["askcody_token"],
            "REACTOR_GRAPH_TOKEN": rig.secrets["graph_token"],
            "REACTOR_GRAPH_CLIENT_SECRET": rig.secrets["graph_client_secret"],
        }
        serving = asyncio.gather(
            serve_until(unreachable, ports[0], tmp_path / "unreachable.log", '"event":"retrying","target":"graph","attempt":2'),
            serve_until(client_secret, ports[1], tmp_path / "client-secret.log", "ClientSecretCredential"),
        )
        runs = list(await asyncio.gather(
            asyncio.to_thread(cli, "check-config", "--config", str(config)),
            asyncio.to_thread(cli, "check-config", "--config", str(from_env), env=env),
            asyncio.to_thread(cli, "check-config", "--config", str(invalid)),
            asyncio.to_thread(cli, "subscriptions", "list", "--config", str(config)),
            asyncio.to_thread(cli, "subscriptions", "list", "--json", "--config", str(config)),
            asyncio.to_thread(cli, "subscriptions", "list", "--config", str(wrong_graph)),
            asyncio.to_thread(cli, "deadletters", "list", "--json", "--config", str(config)),
            asyncio.to_thread(cli, "sync", "--dry-run", "--json", "--config", str(config)),
            asyncio.to_thread(cli, "sync", "--dry-run", "--config", str(wrong_scim)),
        ))
        runs.append(await asyncio.to_thread(cli, "deadletters", "replay", "--all", "--config", str(config)))
        served = await serving
        codes = {r.args: r.code for r in runs}
        assert codes[("check-config", "--config", str(config))] == 0
        assert codes[("check-config", "--config", str(from_env))] == 0
        assert codes[("check-config", "--config", str(invalid))] == 2
        assert codes[("subscriptions", "list", "--json", "--config", str(config))] == 0
        assert codes[("sync", "--dry-run", "--config", str(wrong_scim))] == 1
        assert "<redacted>" in runs[0].output

        captured = {
            "reactor serve": rig.log_text(),
            "reactor serve (Graph and AskCody unreachable)": served[0],
            "reactor serve (client-secret login failing)": served[1],
            **{" ".join(r.args): r.output for r in runs},
        }
        assert "401" in captured["reactor serve"], "the 401 paths must have been logged"
        assert '"event":"retrying","target":"graph","attempt":2' in served[0], "the unreachable Graph must have been tried"
        assert "ClientSecretCredential" in served[1], "the client-secret login must have been tried"
        secrets = {**rig.secrets, **{f"clientState {i}": s for i, s in enumerate(client_states)}}
        leaks = [f"{name} in {where}" for where, text in captured.items() for name, value in secrets.items() if value in text]
        assert leaks == []
