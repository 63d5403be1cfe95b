"""Start ``reactor serve`` as a subprocess for tests, with a config file written for the occasion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]], groups: list[dict[str, str]] | None = None) -> Path:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    for g in groups or []:
        lines.append("[[groups]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in g.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class ReactorProcess:
    """A ``reactor serve`` child process with its stderr captured to a file. Its admin listener is on
    a free port of its own (``admin_url``, set through ``REACTOR_SERVER_ADMIN_PORT``) unless ``env``
    names one."""

    def __init__(self, config: Path, port: int, *extra: str, log: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = port
        self.admin_port = int((env or {}).get("REACTOR_SERVER_ADMIN_PORT") or free_port())
        self.extra = extra
        self.log = log or config.with_suffix(".log")
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> ReactorProcess:
        env = dict(os.environ)
        env.pop("REACTOR_CONFIG", None)
        env.setdefault("REACTOR_SERVER_ADMIN_PORT", str(self.admin_port))
        env.update(self.env or {})
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reactor", "serve", "--config", str(self.config), *self.extra],
                stdout=err, stderr=err, env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"reactor exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("reactor did not become healthy")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)
