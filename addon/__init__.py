"""The Blender side: registers every module's CLASSES, the scene/window-manager properties and the
file-load handler; unregister undoes it in reverse."""

from __future__ import annotations

import bpy

from . import jobs, operators, panels, preferences, properties, reports, session, video_panel
from .importers import sequence

_MODULES = (preferences, properties, reports, operators, panels, video_panel)


@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    """A .blend was opened: show the live connection again, follow the file's unfinished jobs."""
    session.show_server_info()
    jobs.reattach_all()


def register() -> None:
    for module in _MODULES:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    properties.register_pointers()
    video_panel.register_pointers()
    bpy.app.handlers.load_post.append(_on_load_post)
    sequence.register()


def unregister() -> None:
    session.shutdown()
    jobs.forget()
    sequence.unregister()
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    video_panel.unregister_pointers()
    properties.unregister_pointers()
    for module in reversed(_MODULES):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
