"""Reports from outside an operator (the timer): Blender's report system through a tiny internal operator,
plus the panel's message line. Inside an operator, use self.report."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

LEVELS = [("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")]


class LIKENESS_OT_report(bpy.types.Operator):
    """Show a Likeness3D message in Blender's status bar and Info log"""

    bl_idname = "likeness.report"
    bl_label = "Likeness3D Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=LEVELS, default="INFO")
    message: StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


def report(level: str, message: str) -> None:
    """Report `message` as Blender reports it: status bar and Info log (stdout in background mode)."""
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "likeness"):
        wm.likeness.message = message
    try:
        bpy.ops.likeness.report(level=level, message=message)
    except RuntimeError:
        # bpy.ops turns an ERROR report into a RuntimeError for its caller, after reporting it
        if level != "ERROR":
            raise


CLASSES = (LIKENESS_OT_report,)
