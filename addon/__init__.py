"""The Blender side (imports bpy). Filled in by the add-on work; register() is a no-op until then."""


def register() -> None:
    pass


def unregister() -> None:
    pass
