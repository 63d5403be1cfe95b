"""The status page says who leads and which replicas are alive (what ``Service.status()`` reports)."""

from __future__ import annotations

import time

from reactor.statuspage import render


def status(replicas: dict[str, object]) -> dict[str, object]:
    return {"now": time.time(), "backlog": {}, "replicas": replicas}


def test_a_follower_names_the_leader_and_lists_the_live_replicas() -> None:
    now = time.time()
    page = render(status({
        "replica": "reactor-7d9f-2-b1", "leading": False, "leader": "reactor-7d9f-1-a0", "epoch": 4, "alive": 2,
        "shared": True,
        "replicas": [
            {"id": "reactor-7d9f-1-a0", "host": "aks-node-1", "pid": 1, "started_at": now - 3600},
            {"id": "reactor-7d9f-2-b1", "host": "<script>alert(1)</script>", "pid": 1, "started_at": now - 60},
        ],
    }), True, {})
    assert "reactor-7d9f-1-a0 leads (epoch 4); this is reactor-7d9f-2-b1; 2 alive." in page
    assert page.count('class="pill ok">leader<') == 1
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_no_leader_and_a_single_node_are_said_plainly() -> None:
    page = render(status({"replica": "r1", "leading": False, "leader": None, "alive": 1, "shared": True,
                          "replicas": [{"id": "r1", "host": "h", "pid": 9, "started_at": time.time()}]}), False, {})
    assert "No replica leads at the moment; 1 alive." in page
    single = render(status({"replica": "r1", "leading": True, "leader": "r1", "alive": 1, "shared": False,
                            "replicas": []}), True, {})
    assert "Single node (SQLite): this replica leads." in single
