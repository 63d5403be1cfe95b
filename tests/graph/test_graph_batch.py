"""Many users read at once through JSON batching (``POST /$batch``, 20 a request) against the Graph
simulator over real HTTP: what comes back, how many requests it took, and the requests of a batch
that are throttled or fail on their own."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from graphsim import GraphSimulator
from reactor.errors import PermanentError
from reactor.graph.reader import GraphReader
from tests.graph.conftest import TOKEN
from tests.support.retries import recording

Reader = Callable[..., GraphReader]
NAMES = ["Åsa Öberg", "Zoë O'Connor", "Ιωάννα Παπαδοπούλου", "佐藤 花子", "Nguyễn Văn An"]


def seeded(sim: GraphSimulator, n: int) -> list[str]:
    ids = []
    for i in range(n):
        guest = i % 7 == 3
        upn = f"user{i}_fabrikam.museum#EXT#@contoso.onmicrosoft.com" if guest else f"user{i}@kontor.contoso.co.uk"
        ids.append(sim.add_user(user_principal_name=upn, display_name=NAMES[i % len(NAMES)], mail=f"user{i}@corp.local"))
    return ids


Sent = list[tuple[str, str]]


def requests(sent: Sent) -> list[str]:
    """``METHOD /path`` of each request sent."""
    return [f"{method} {urlsplit(url).path}" for method, url in sent]


async def test_45_users_in_3_requests_each_as_get_user_reads_it(
    sim: GraphSimulator, sent: Sent, reader_for: Reader
) -> None:
    ids = seeded(sim, 45)
    sim.soft_delete_user(ids[10])
    reader = reader_for()
    sent.clear()
    users = await reader.get_users([*ids, ids[0]])
    assert requests(sent) == ["POST /v1.0/$batch"] * 3, "20 a batch, each user once"
    assert set(users) == set(ids)
    assert users[ids[10]] is None, "404 in the batch: soft-deleted"
    for uid in (ids[0], ids[3], ids[44]):
        assert users[uid] == await reader.get_user(uid)
    assert users[ids[1]] is not None and users[ids[1]].display_name == "Zoë O'Connor"


async def test_requests_throttled_inside_a_batch_are_asked_again_after_their_retry_after(
    sim: GraphSimulator, sent: Sent, reader_for: Reader
) -> None:
    ids = seeded(sim, 5)
    sim.throttle(2, retry_after=3, path_prefix="/v1.0/users/")
    sent.clear()
    with recording():
        users = await reader_for().get_users(ids)
    assert all(users[u] is not None for u in ids)
    assert len(sent) == 2, "one batch, then one with the two throttled requests"


async def test_a_request_of_a_batch_failing_for_good_raises_its_error(sim: GraphSimulator, reader_for: Reader) -> None:
    ids = seeded(sim, 3)
    sim.fail(1, 403, path_prefix="/v1.0/users/")
    with pytest.raises(PermanentError, match="403"):
        await reader_for().get_users(ids)


async def test_the_simulator_answers_a_batch_as_graph_does(sim: GraphSimulator, graph_url: str) -> None:
    uid = seeded(sim, 1)[0]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=graph_url) as http:
        too_many = {"requests": [{"id": str(i), "method": "GET", "url": f"/users/{uid}"} for i in range(21)]}
        assert (await http.post("/$batch", json=too_many, headers=headers)).status_code == 400
        repeated = {"requests": [{"id": "1", "method": "GET", "url": f"/users/{uid}"}] * 2}
        assert (await http.post("/$batch", json=repeated, headers=headers)).status_code == 400
        assert (await http.post("/$batch", json={"requests": []}, headers={})).status_code == 401
        ok = {"requests": [{"id": "a", "method": "GET", "url": f"/users/{uid}?$select=id,displayName"},
                           {"id": "b", "method": "GET", "url": "/users/00000000-0000-4000-8000-00000000dead"}]}
        answer = (await http.post("/$batch", json=ok, headers=headers)).json()
    by_id = {r["id"]: r for r in answer["responses"]}
    assert [r["id"] for r in answer["responses"]] == ["b", "a"], "not in request order"
    assert by_id["a"]["status"] == 200 and by_id["a"]["body"]["id"] == uid
    assert by_id["b"]["status"] == 404 and by_id["b"]["body"]["error"]["code"] == "Request_ResourceNotFound"


async def test_reads_asked_together_share_batches_and_a_lone_read_is_a_plain_get(
    sim: GraphSimulator, sent: Sent, reader_for: Reader
) -> None:
    import asyncio

    ids = seeded(sim, 41)
    reader = reader_for()
    sent.clear()
    alone = await reader.get_user(ids[0])
    assert requests(sent) == [f"GET /v1.0/users/{ids[0]}"]
    sent.clear()
    together = await asyncio.gather(*(reader.get_user(u) for u in ids))
    assert [u.id if u else None for u in together] == ids
    assert together[0] == alone
    assert len(sent) <= 4 and requests(sent).count("POST /v1.0/$batch") >= 2, sent


async def test_one_read_failing_in_a_shared_batch_fails_alone(sim: GraphSimulator, reader_for: Reader) -> None:
    import asyncio

    ids = seeded(sim, 6)
    reader = reader_for()
    sim.fail(2, 403, path_prefix=f"/v1.0/users/{ids[3]}")  # in the batch, then asked alone
    outcomes = await asyncio.gather(*(reader.get_user(u) for u in ids), return_exceptions=True)
    assert isinstance(outcomes[3], PermanentError)
    assert all(not isinstance(o, BaseException) and o is not None for i, o in enumerate(outcomes) if i != 3)
