"""The message set: one frozen dataclass per message type, validated at the boundary.

A header is a msgpack map with `v` (protocol version), `type`, `id` (request id; events carry the id of the
request that started the job, or 0) and the type's own fields. Array fields travel as raw frames.
`parse(frames)` turns a frame list into a message or raises a typed error naming the field and the value.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from . import PROTOCOL_VERSION
from .assets import Asset, asset_from_wire, asset_to_wire
from .errors import BadMessage, ProtocolError, VersionMismatch, bounded, brief
from .framing import DEFAULT_MAX_MESSAGE_BYTES, decode, encode

MAX_STR = 4096
MAX_FIELD = 256
"""Error replies name the offending field in at most this many characters (a field is a path such as
`config.fit.steps`; a longer one is a client's own invention, cut)."""
ENVELOPE = ("v", "type", "id")


@dataclass(frozen=True)
class ArtifactInfo:
    """One result file of a job, fetched by name."""

    name: str
    media_type: str
    size: int


class Message:
    """Base of all messages. Subclasses are frozen dataclasses with a TYPE."""

    TYPE: ClassVar[str] = ""

    def to_frames(self, request_id: int = 0) -> list:
        header: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": self.TYPE, "id": request_id}
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif isinstance(value, Asset):
                meta, asset_arrays = asset_to_wire(value)
                header[f.name] = meta
                arrays.update(asset_arrays)
            elif value is not None:
                header[f.name] = _to_wire(value)
        return encode(header, arrays)


def _to_wire(value: Any) -> Any:
    if isinstance(value, tuple) and value and isinstance(value[0], ArtifactInfo):
        return [{"name": a.name, "media_type": a.media_type, "size": a.size} for a in value]
    if isinstance(value, tuple):
        return list(value)
    return value


# --- requests (client -> server) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    """Version handshake; answered by ServerInfo."""

    TYPE: ClassVar[str] = "hello"
    client: str = ""


@dataclass(frozen=True)
class Submit(Message):
    """Run a pipeline on an asset; answered by Accepted, then job events."""

    TYPE: ClassVar[str] = "submit"
    pipeline: str = ""
    asset: Asset | None = None
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Cancel(Message):
    TYPE: ClassVar[str] = "cancel"
    job: str = ""


@dataclass(frozen=True)
class Status(Message):
    """Status of one job, or of the server (queue, workers) when job is None."""

    TYPE: ClassVar[str] = "status"
    job: str | None = None


@dataclass(frozen=True)
class List(Message):
    TYPE: ClassVar[str] = "list"


@dataclass(frozen=True)
class Fetch(Message):
    """One artifact of a job, by the name its Result listed."""

    TYPE: ClassVar[str] = "fetch"
    job: str = ""
    name: str = ""


@dataclass(frozen=True)
class Attach(Message):
    """Resume a job's events (after a reconnect or a restart): the latest state first, then live events."""

    TYPE: ClassVar[str] = "attach"
    job: str = ""


@dataclass(frozen=True)
class Release(Message):
    """Free the workers' cached models and GPU memory."""

    TYPE: ClassVar[str] = "release"


@dataclass(frozen=True)
class Ping(Message):
    """Liveness; an attached array is echoed back (used by the throughput benchmark)."""

    TYPE: ClassVar[str] = "ping"
    data: np.ndarray | None = None


# --- replies and events (server -> client) ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo(Message):
    TYPE: ClassVar[str] = "welcome"
    version: int = PROTOCOL_VERSION
    server: str = ""
    gpus: list = field(default_factory=list)
    pipelines: list = field(default_factory=list)
    models: dict = field(default_factory=dict)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    workers: list = field(default_factory=list)
    epoch: str = ""
    """Names this run of the server (new at every start): a client that sees it change knows the backend
    restarted, re-attaches its jobs and reads their events as a fresh sequence."""


@dataclass(frozen=True)
class Accepted(Message):
    TYPE: ClassVar[str] = "accepted"
    job: str = ""
    position: int = 0


@dataclass(frozen=True)
class Progress(Message):
    """A step of a stage; `preview` is None or [H, W, 4] uint8."""

    TYPE: ClassVar[str] = "progress"
    job: str = ""
    seq: int = 0
    stage: str = ""
    step: int = 0
    total: int = 0
    text: str = ""
    elapsed: float = 0.0
    preview: np.ndarray | None = None


@dataclass(frozen=True)
class Result(Message):
    """The job finished; its artifacts are fetched by name."""

    TYPE: ClassVar[str] = "result"
    job: str = ""
    seq: int = 0
    artifacts: tuple = ()


@dataclass(frozen=True)
class Error(Message):
    """A typed error: the reply to a bad request, or (with `job`) the end of a failed job."""

    TYPE: ClassVar[str] = "error"
    code: str = "internal"
    message: str = ""
    field: str | None = None
    job: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class Ack(Message):
    TYPE: ClassVar[str] = "ack"
    job: str | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReply(Message):
    TYPE: ClassVar[str] = "status_reply"
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListReply(Message):
    TYPE: ClassVar[str] = "list_reply"
    jobs: list = field(default_factory=list)


@dataclass(frozen=True)
class Artifact(Message):
    TYPE: ClassVar[str] = "artifact"
    job: str = ""
    name: str = ""
    media_type: str = ""
    data: np.ndarray | None = None


@dataclass(frozen=True)
class Released(Message):
    TYPE: ClassVar[str] = "released"
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    data: np.ndarray | None = None
    epoch: str = ""
    """The server's run (as in ServerInfo): the client's heartbeat notices a restart from it."""


MESSAGES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Submit, Cancel, Status, List, Fetch, Attach, Release, Ping,
        ServerInfo, Accepted, Progress, Result, Error, Ack, StatusReply, ListReply, Artifact, Released, Pong,
    )
}
REQUESTS = frozenset({"hello", "submit", "cancel", "status", "list", "fetch", "attach", "release", "ping"})
JOB_EVENTS = (Progress, Result, Error)


# --- parsing ----------------------------------------------------------------------------------------------


def parse(frames, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, allowed: frozenset | None = None) -> tuple[int, Message]:
    """Frame list -> (request id, message). Raises BadMessage / VersionMismatch / TooLarge / InvalidAsset.

    The request id is recovered before any other check where possible, so an error reply can carry it.
    """
    header, arrays = decode(frames, max_bytes)
    request_id = header.get("id", 0)
    if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id < 2**63:
        raise BadMessage(f"field 'id' must be a non-negative int, got {brief(request_id, 50)}", field="id")
    try:
        return request_id, _parse_checked(header, arrays, allowed)
    except ProtocolError as exc:
        exc.request_id = request_id  # so the error reply can answer the right request
        raise


def _parse_checked(header: dict, arrays: dict, allowed: frozenset | None) -> Message:
    v = header.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadMessage(f"field 'v' (protocol version) must be an int, got {brief(v, 50)}", field="v")
    if v != PROTOCOL_VERSION:
        raise VersionMismatch(f"peer speaks protocol version {v}; this side speaks {PROTOCOL_VERSION}", field="v")
    kind = header.get("type")
    cls = MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None or (allowed is not None and kind not in allowed):
        choices = sorted(allowed if allowed is not None else MESSAGES)
        raise BadMessage(f"field 'type' is {brief(kind, 50)}; expected one of {choices}", field="type")
    return _build(cls, header, arrays)


@functools.lru_cache(maxsize=None)
def _schema(cls: type[Message]) -> tuple[dict, frozenset, tuple]:
    return typing.get_type_hints(cls), frozenset(f.name for f in fields(cls)), fields(cls)


def _build(cls: type[Message], header: dict, arrays: dict[str, np.ndarray]) -> Message:
    hints, names, cls_fields = _schema(cls)
    unknown = sorted(set(header) - names - set(ENVELOPE), key=str)
    if unknown:
        raise BadMessage(f"{cls.TYPE}: unknown fields {brief(unknown[:10], 200)}", field=str(unknown[0]))
    kwargs: dict[str, Any] = {}
    for f in cls_fields:
        hint = hints[f.name]
        if hint is Asset or _is_optional(hint, Asset):
            if f.name not in header:
                raise BadMessage(f"{cls.TYPE}: missing field {f.name!r}", field=f.name)
            kwargs[f.name] = asset_from_wire(header[f.name], arrays)
            arrays = {}
            continue
        if _is_optional(hint, np.ndarray) or hint is np.ndarray:
            if f.name in header:
                raise BadMessage(f"{cls.TYPE}.{f.name} is an array: it travels as a frame described in 'arrays', "
                                 f"not in the header (got {brief(header[f.name], 60)})", field=f.name)
            if f.name in arrays:
                kwargs[f.name] = arrays.pop(f.name)
            continue
        if f.name in header:
            kwargs[f.name] = _check(header[f.name], hint, f"{cls.TYPE}.{f.name}")
    if arrays:
        raise BadMessage(f"{cls.TYPE}: arrays {sorted(arrays)[:10]} are not fields of this message", field=sorted(arrays)[0])
    if cls is Result and "artifacts" in kwargs:
        kwargs["artifacts"] = _artifacts(kwargs["artifacts"])
    return cls(**kwargs)


def _is_optional(hint: Any, inner: Any) -> bool:
    args = typing.get_args(hint)
    return (typing.get_origin(hint) in (typing.Union, types.UnionType)) and inner in args and type(None) in args


def _check(value: Any, hint: Any, where: str) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], where)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str) and len(value) <= MAX_STR
    elif hint in (dict, list, tuple):
        ok = isinstance(value, dict if hint is dict else list)
        if ok and hint is tuple:
            value = tuple(value)
    else:
        raise BadMessage(f"{where}: unsupported field type {hint}", field=where)
    if not ok:
        raise BadMessage(f"{where} must be {getattr(hint, '__name__', hint)}, got {type(value).__name__} {brief(value, 80)}", field=where)
    return value


def _artifacts(items: tuple) -> tuple[ArtifactInfo, ...]:
    out = []
    for i, a in enumerate(items):
        if (
            not isinstance(a, dict)
            or set(a) != {"name", "media_type", "size"}
            or not isinstance(a["name"], str)
            or not isinstance(a["media_type"], str)
            or not isinstance(a["size"], int)
        ):
            raise BadMessage(f"result.artifacts[{i}] must be {{name, media_type, size}}, got {brief(a, 120)}", field="artifacts")
        out.append(ArtifactInfo(a["name"], a["media_type"], a["size"]))
    return tuple(out)


def error_message(exc: Exception, *, job: str | None = None, seq: int | None = None) -> Error:
    """The Error message for an exception: typed errors keep their code; anything else is `internal`."""
    if isinstance(exc, ProtocolError):
        field = exc.field if isinstance(exc.field, str) or exc.field is None else str(exc.field)
        return Error(code=exc.code, message=bounded(str(exc.message), MAX_STR), field=bounded(field, MAX_FIELD), job=job, seq=seq)
    return Error(code="internal", message=bounded(f"{type(exc).__name__}: {exc}", MAX_STR), job=job, seq=seq)
