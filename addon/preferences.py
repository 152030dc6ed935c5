"""Add-on preferences: where the backend is, CurveZMQ keys, timeouts, where results go."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from ..protocol.client import DEFAULT_ADDRESS

# the extension's package: "likeness3d" when installed as a package, "bl_ext.<repo>.likeness3d" in Blender
PACKAGE = __package__.rpartition(".")[0]


DEFAULTS = {
    "address": DEFAULT_ADDRESS,
    "server_public_key": "",
    "client_secret_key": "",
    "timeout": 30.0,
    "job_timeout": 0.0,
    "poll_interval": 0.1,
    "results_dir": "//likeness3d_results",
    "splat_display_cap": 250_000,
}
"""Every preference's default: the properties below take theirs from here, and `get` answers with these when
the classes are registered without an add-on entry (`likeness3d.register()` from a script)."""


class LikenessPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    address: StringProperty(
        name="Backend",
        description="ZeroMQ address of the Likeness3D backend (likeness3d serve --listen ...)",
        default=DEFAULTS["address"],
    )
    server_public_key: StringProperty(
        name="Server Key",
        description="The server's public key file (.key) for CurveZMQ; needed for a backend on another machine",
        subtype="FILE_PATH",
    )
    client_secret_key: StringProperty(
        name="Client Key",
        description="This client's secret key file (.key_secret) for CurveZMQ",
        subtype="FILE_PATH",
    )
    timeout: FloatProperty(
        name="Request Timeout",
        description="Seconds to wait for the backend to answer a request",
        default=DEFAULTS["timeout"], min=1.0, max=3600.0, unit="TIME_ABSOLUTE",
    )
    job_timeout: FloatProperty(
        name="Job Timeout",
        description="Seconds a blocking (background mode) refine waits for its job; 0 waits forever",
        default=DEFAULTS["job_timeout"], min=0.0, unit="TIME_ABSOLUTE",
    )
    poll_interval: FloatProperty(
        name="Poll Interval",
        description="Seconds between checks for job events while Blender runs interactively",
        default=DEFAULTS["poll_interval"], min=0.02, max=2.0, unit="TIME_ABSOLUTE",
    )
    results_dir: StringProperty(
        name="Results Folder",
        description="Where job artifacts are fetched to ('//' = next to the .blend; unsaved files use a temp folder)",
        default=DEFAULTS["results_dir"],
        subtype="DIR_PATH",
    )
    splat_display_cap: IntProperty(
        name="Splat Display Cap",
        description="Imported splat clouds show at most this many points in the viewport (all are kept)",
        default=DEFAULTS["splat_display_cap"], min=1,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "address")
        col = layout.column(heading="CurveZMQ")
        col.prop(self, "server_public_key")
        col.prop(self, "client_secret_key")
        col = layout.column()
        col.prop(self, "timeout")
        col.prop(self, "job_timeout")
        col.prop(self, "poll_interval")
        layout.prop(self, "results_dir")
        layout.prop(self, "splat_display_cap")


class _Defaults:
    """The preferences' defaults, when the add-on's classes are registered without an add-on entry (the
    annotations above are strings under `from __future__ import annotations`: DEFAULTS is the one source)."""

    def __init__(self):
        for name, value in DEFAULTS.items():
            setattr(self, name, value)


def get(context=None) -> LikenessPreferences | _Defaults:
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None and addon.preferences is not None else _Defaults()


CLASSES = (LikenessPreferences,)
