"""The wire protocol: pure Python (no torch, no bpy), shared by the add-on, the CLI and the backend."""

PROTOCOL_VERSION = 1
