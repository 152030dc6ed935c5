"""Load: 20 concurrent clients x 5 jobs each; all complete, none lost, none duplicated."""

import threading

from likeness3d.protocol.client import Client


def test_20_clients_x_5_jobs(server, asset):
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def one_client(k: int) -> None:
        try:
            with Client(server.address, timeout=60) as c:
                jobs = [c.submit("inspect", asset, {"overlay_points": k}) for _ in range(5)]
                for j in jobs:
                    assert j.wait(120).artifacts[0].name == "inspect.json"
                results[k] = [j.id for j in jobs]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:3]
    ids = [i for v in results.values() for i in v]
    assert len(results) == 20 and len(ids) == 100 and len(set(ids)) == 100
    with Client(server.address, timeout=20) as c:
        listed = [j for j in c.list() if j["job"] in set(ids)]
        assert len(listed) == 100 and all(j["state"] == "done" for j in listed)
        assert c.status()["jobs"] == {"done": 100}
