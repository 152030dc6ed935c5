"""The add-on's one connection to the backend (a protocol Client), shared by operators and the timer."""

_client = None


def shutdown() -> None:
    """Close the client, if any (add-on unregister, tests)."""
    global _client
    if _client is not None:
        _client.close()
        _client = None
