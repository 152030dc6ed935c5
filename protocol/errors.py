"""The error hierarchy: one exception class per wire error code, re-raised by the client as the same class."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every Likeness3D error that can cross the wire.

    `code` is the wire name; `field` names the offending message field when there is one.
    """

    code: str = "internal"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self):  # picklable across worker processes, keyword arguments included
        return (_rebuild, (self.code, self.message, self.field))


class BadMessage(ProtocolError):
    """The message could not be parsed or violates the schema."""

    code = "bad_message"


class VersionMismatch(ProtocolError):
    """Client and server speak different protocol versions."""

    code = "version_mismatch"


class TooLarge(ProtocolError):
    """The message exceeds the configured maximum size."""

    code = "too_large"


class InvalidAsset(ProtocolError):
    """Mesh, texture, reference or camera data is inconsistent (NaN vertex, index out of range, ...)."""

    code = "invalid_asset"


class UnknownPipeline(ProtocolError):
    """No pipeline of that name is registered."""

    code = "unknown_pipeline"


class UnknownJob(ProtocolError):
    """No job (or artifact) of that id exists in the job store."""

    code = "unknown_job"


class ModelMissing(ProtocolError):
    """A model role has no local folder; nothing is ever downloaded."""

    code = "model_missing"


class Cancelled(ProtocolError):
    """The job was cancelled."""

    code = "cancelled"


class OutOfMemory(ProtocolError):
    """The device ran out of memory."""

    code = "out_of_memory"


class WorkerCrashed(ProtocolError):
    """The worker process running the job died; the server replaced it."""

    code = "worker_crashed"


class StorageFull(ProtocolError):
    """The server's job store has no space left (or its quota is used up); nothing half-written is kept."""

    code = "storage_full"


class Internal(ProtocolError):
    """An unexpected error on the server; the message carries the exception text."""

    code = "internal"


class Timeout(ProtocolError):
    """Client side: no answer from the backend within the timeout."""

    code = "timeout"


class Unreachable(ProtocolError):
    """Client side: no backend answers at the address (nothing listens there, or it does not speak the protocol)."""

    code = "unreachable"


ERRORS: dict[str, type[ProtocolError]] = {
    cls.code: cls
    for cls in (
        BadMessage,
        VersionMismatch,
        TooLarge,
        InvalidAsset,
        UnknownPipeline,
        UnknownJob,
        ModelMissing,
        Cancelled,
        OutOfMemory,
        WorkerCrashed,
        StorageFull,
        Internal,
        Timeout,
        Unreachable,
    )
}


def error_from_code(code: str, message: str, field: str | None = None) -> ProtocolError:
    """The exception for a wire error code; an unknown code becomes Internal (keeping the text)."""
    cls = ERRORS.get(code)
    if cls is None:
        return Internal(f"[{code}] {message}", field=field)
    return cls(message, field=field)


def _rebuild(code: str, message: str, field: str | None) -> ProtocolError:
    return error_from_code(code, message, field)


def brief(value: object, limit: int = 80) -> str:
    """A repr of `value` for an error text: at most `limit` characters, whatever its size or depth
    (a plain repr of a 1000-deep list raises RecursionError; one of a 16 MB string costs 16 MB)."""
    parts: list[str] = []
    budget = [limit + 1]

    def put(text: str) -> bool:
        parts.append(text[: budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(v: object, depth: int) -> bool:
        if isinstance(v, (str, bytes, bytearray)):
            return put(repr(v[: budget[0] + 2]) + ("..." if len(v) > budget[0] + 2 else ""))
        if isinstance(v, (list, tuple, dict, set, frozenset)):
            if depth >= 6:
                return put("[...]" if isinstance(v, list) else "{...}" if isinstance(v, dict) else "(...)")
            opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(v), "{}")
            if not put(opening):
                return False
            items = v.items() if isinstance(v, dict) else v
            for i, item in enumerate(items):
                if i and not put(", "):
                    return False
                if isinstance(v, dict):
                    if not (walk(item[0], depth + 1) and put(": ") and walk(item[1], depth + 1)):
                        return False
                elif not walk(item, depth + 1):
                    return False
            return put(closing)
        try:
            text = repr(v)
        except Exception as exc:  # noqa: BLE001 - an object whose repr fails is still described
            text = f"<{type(v).__name__}: repr failed: {type(exc).__name__}>"
        return put(text)

    walk(value, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def bounded(text: str | None, limit: int) -> str | None:
    """`text` cut to at most `limit` characters (marked with "..."), for fields echoed in error replies."""
    if text is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 3)] + "..."
