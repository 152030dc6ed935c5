"""Starting or joining the Ray cluster of `serve --executor ray`, and what a bad configuration says.

Every check here runs before the server binds its socket, and each failure is a `BadMessage` naming the flag,
its value and the fix: Ray not installed, an address nothing answers on (checked with a plain TCP connect
first: `ray.init` itself retries an unreachable address for minutes), a cluster without GPUs when `--gpus cuda`
asks for them, more slots than the cluster has GPUs or CPUs.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..protocol.errors import BadMessage

CONNECT_TIMEOUT_S = 5.0


@dataclass
class Cluster:
    address: str
    """What the server joined ('local' for a cluster it started itself)."""
    started: bool
    seconds: float
    """How long starting or joining took."""
    gpus: int
    cpus: int
    nodes: int


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadMessage(
            "--executor ray needs Ray, which is not installed in this Python: pip install 'likeness3d[ray]' "
            "(on the server host and on every node of the cluster), or serve with --executor local",
            field="--executor") from None
    return ray


def _current_cluster() -> str | None:
    """The address `ray start --head` left for `auto` on this host ($RAY_ADDRESS first)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadMessage(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT", field="--ray-address")
    return host.strip("[]"), int(port)


def _reachable(address: str) -> None:
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        raise BadMessage(
            f"--ray-address {address}: nothing answers at {host}:{port} ({exc.strerror or exc}): start the cluster's "
            f"head there (`ray start --head --port {port}`), check the address and firewall, or leave --ray-address "
            f"out to start a cluster on this host", field="--ray-address") from None


def connect(address: str | None, *, cpus: int | None = None, gpus: int | None = None) -> Cluster:
    """Join the cluster at `address` ('auto', 'HOST:PORT', 'ray://HOST:PORT'), or start one on this host
    (None; `cpus`/`gpus` override what Ray detects)."""
    ray = import_ray()
    t0 = time.monotonic()
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        try:  # "local": a new cluster even where another runs on this host (None would join that one)
            ray.init(address="local", num_cpus=cpus, num_gpus=gpus, **kwargs)
        except Exception as exc:
            raise BadMessage(f"starting a Ray cluster on this host failed: {type(exc).__name__}: {exc}; check "
                             "--ray-num-cpus/--ray-num-gpus, or join a running cluster with --ray-address",
                             field="--executor") from None
        joined = "local"
    else:
        target = address
        if address == "auto":
            target = _current_cluster()
            if target is None:
                raise BadMessage(
                    "--ray-address auto: no Ray cluster runs on this host: start one with `ray start --head`, "
                    "name its address (--ray-address HOST:PORT), or leave --ray-address out to start one here",
                    field="--ray-address")
        if target.startswith("ray://"):
            try:
                import grpc  # noqa: F401 - Ray Client's transport, only in ray[client]
            except ImportError:
                raise BadMessage(f"--ray-address {address}: a ray:// address needs Ray Client: pip install 'ray[client]' "
                                 "on this host, or join the head's HOST:PORT from a host of the cluster",
                                 field="--ray-address") from None
        _reachable(target)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray's own wording (a version mismatch, a missing token) with the fix around it
            raise BadMessage(f"--ray-address {address}: joining the cluster failed: {type(exc).__name__}: {exc}; "
                             "every node needs the same Ray and Python versions as this host (pip install "
                             "'likeness3d[ray]')", field="--ray-address") from None
        joined = target
    res = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return Cluster(joined, address is None, time.monotonic() - t0, int(res.get("GPU", 0)), int(res.get("CPU", 0)), len(alive))


def plan_slots(cluster: Cluster, gpus: str, slots: int | None) -> tuple[bool, int]:
    """`--gpus` and `--ray-slots` against the cluster: (each slot holds a GPU, how many slots)."""
    if gpus not in ("auto", "cpu", "cuda"):
        raise BadMessage(f"--gpus {gpus!r} with --executor ray: Ray places each job on a GPU of the cluster, so "
                         "say 'auto' (every GPU, else CPUs), 'cuda' (GPUs required) or 'cpu', and how many jobs at "
                         "once with --ray-slots N", field="--gpus")
    if slots is not None and slots < 1:
        raise BadMessage(f"--ray-slots must be >= 1, got {slots}", field="--ray-slots")
    if gpus == "cuda" and cluster.gpus == 0:
        raise BadMessage(f"--gpus cuda: the Ray cluster ({cluster.address}, {cluster.nodes} node(s)) has no GPUs: start "
                         "its nodes on GPU hosts (`ray start --num-gpus N` when Ray does not see them), or serve "
                         "with --gpus cpu", field="--gpus")
    on_gpu = gpus != "cpu" and cluster.gpus > 0
    have = cluster.gpus if on_gpu else cluster.cpus
    n = slots if slots is not None else (cluster.gpus if on_gpu else 1)
    if n > have:
        kind = "GPUs" if on_gpu else "CPUs"
        raise BadMessage(f"--ray-slots {n}: the Ray cluster ({cluster.address}) has {have} {kind}, one a slot: add "
                         f"nodes or ask for at most {have}", field="--ray-slots")
    return on_gpu, n
