"""Likeness3D: the Blender extension entry and the root of the `likeness3d` Python package.

Importing this module imports nothing heavy (no bpy, no torch), so the same package serves as the
Blender extension (`bl_ext.<repo>.likeness3d`) and as the installed Python package that holds the
protocol and the backend.
"""

__version__ = "0.1.0"


def register() -> None:
    """Blender entry point: register the add-on's classes."""
    from .addon import register as _register

    _register()


def unregister() -> None:
    """Blender entry point: undo register() in reverse."""
    from .addon import unregister as _unregister

    _unregister()
