"""`blender -b FILE -P SCRIPT -- ARGS` for the bpy wheel, which has no blender executable:
python blender_cli.py FILE SCRIPT -- ARGS opens FILE, then runs SCRIPT with Blender's sys.argv."""

import runpy
import sys

import bpy

blend, script, *rest = sys.argv[1:]
bpy.ops.wm.open_mainfile(filepath=blend)
sys.argv = ["blender", "-b", blend, "-P", script, *rest]
runpy.run_path(script, run_name="__main__")
