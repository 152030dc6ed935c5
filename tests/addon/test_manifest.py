"""blender_manifest.toml against Blender's extension rules, the wheel fetch, and the built zip.

Blender's own extension tool (bl_pkg/cli/blender_ext.py, shipped inside the bpy wheel) is the referee:
its validator must accept our manifest and our zip, and its builder must pick the same files as ours."""

import copy
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _load("build_extension", ROOT / "scripts" / "build_extension.py")
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
blender_ext = _load("blender_ext", BLENDER_EXT)


@pytest.fixture(scope="module")
def manifest():
    return build.load_manifest(ROOT)


@pytest.fixture(scope="module")
def wheels(manifest):
    """Fetch the listed wheels (a no-op when wheels/ has them already)."""
    return build.fetch_wheels(ROOT, manifest)


@pytest.fixture(scope="module")
def built_zip(wheels, tmp_path_factory):
    return build.build_zip(ROOT, tmp_path_factory.mktemp("dist"))


def test_manifest_fields(manifest):
    assert build.validate_manifest(manifest) == []
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "likeness3d" and build.id_error(manifest["id"]) is None
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert isinstance(manifest["version"], str) and isinstance(manifest["name"], str)
    assert isinstance(manifest["maintainer"], str) and manifest["maintainer"]
    assert 0 < len(manifest["tagline"]) <= 64
    assert manifest["license"] and all(x.startswith("SPDX:") for x in manifest["license"])
    assert set(manifest["permissions"]) == {"network", "files"}
    assert all(isinstance(v, str) and 0 < len(v) <= 64 for v in manifest["permissions"].values())
    for excluded in ("/backend/", "/tests/", "/bench/"):
        assert excluded in manifest["build"]["paths_exclude_pattern"]


def test_manifest_accepted_by_blender(manifest):
    data = {k: v for k, v in manifest.items() if k != "build"}
    assert blender_ext.pkg_manifest_is_valid_or_error_all(data, from_repo=False, strict=True) is None
    errors = blender_ext.PkgManifest_Build.from_dict_all_errors(manifest["build"], extra_paths=manifest["wheels"])
    assert not isinstance(errors, list), errors


def test_wheels_cover_both_pythons_and_three_platforms(manifest):
    combos = set()
    for wheel in build.wheel_names(manifest):
        python = "3.11" if wheel.python_tag == "cp311" else "3.13"
        # cp312-abi3 wheels serve 3.12 and later, so 3.13 too
        assert wheel.python_tag == "cp311" or (wheel.python_tag, wheel.abi_tag) in {("cp313", "cp313"), ("cp312", "abi3")}
        plat = "".join(wheel.platform_tags)
        os_name = "linux" if "linux" in plat else "windows" if "win_amd64" in plat else "macos"
        assert os_name != "macos" or ("arm64" in plat or "universal2" in plat)
        assert os_name != "linux" or "x86_64" in plat
        combos.add((wheel.distribution, python, os_name))
    expected = {(d, p, o) for d in ("pyzmq", "msgpack") for p in ("3.11", "3.13") for o in ("linux", "windows", "macos")}
    assert combos == expected


def test_listed_wheels_exist_after_the_fetch(manifest, wheels):
    assert build.missing_wheels(ROOT, manifest) == []
    for path in wheels:
        with zipfile.ZipFile(path) as zf:  # a real wheel: a zip with a dist-info METADATA
            assert any(n.endswith(".dist-info/METADATA") for n in zf.namelist()), path


@pytest.mark.parametrize(
    "change,field",
    [
        ({"tagline": "x" * 65}, "tagline"),
        ({"tagline": "Ends with a full stop."}, "tagline"),
        ({"id": "likeness-3d"}, "id"),
        ({"id": "_likeness"}, "id"),
        ({"type": "addon"}, "type"),
        ({"blender_version_min": "4.2"}, "blender_version_min"),
        ({"license": "GPL-3.0-or-later"}, "license"),
        ({"permissions": {"internet": "Talk to the backend"}}, "permissions"),
        ({"wheels": ["./wheels/pyzmq.whl"]}, "wheels"),
    ],
)
def test_broken_manifests_are_rejected_naming_the_field(manifest, change, field):
    data = copy.deepcopy(manifest)
    data.update(change)
    errors = build.validate_manifest(data)
    assert errors and all(e.startswith(field) for e in errors), errors
    # Blender's validator rejects it too
    blender_data = {k: v for k, v in data.items() if k != "build"}
    assert blender_ext.pkg_manifest_is_valid_or_error_all(blender_data, from_repo=False, strict=True)


def test_missing_field_is_named(manifest):
    data = {k: v for k, v in manifest.items() if k != "maintainer"}
    assert build.validate_manifest(data) == ["maintainer: missing"]


def test_exclude_patterns_match_blenders_gitignore_rules(manifest):
    patterns = manifest["build"]["paths_exclude_pattern"]
    reference = blender_ext.PathPatternMatch(patterns)
    paths = [
        ("backend/", True), ("backend/server.py", False), ("addon/backend/", True), ("tests/", True),
        ("bench/", True), ("addon/", True), ("addon/gather.py", False), ("addon/__pycache__/", True),
        ("protocol/x.pyc", False), (".git/", True), (".gitignore", False), ("likeness3d-0.1.0.zip", False),
        ("addon/a.zip", False), ("scene.blend1", False), ("scene.blend", False), ("pyproject.toml", False),
        ("addon/pyproject.toml", False), ("x.egg-info/", True), ("docs/", True), ("wheels/", True),
    ]
    for path, is_dir in paths:
        ours = build.excluded(patterns, path.rstrip("/"), is_dir)
        assert ours == reference.test_path(path), path


def test_zip_contents(built_zip, manifest):
    names = set(zipfile.ZipFile(built_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "addon/__init__.py", "protocol/__init__.py",
            "protocol/cameras.py"} <= names
    assert {w.removeprefix("./") for w in manifest["wheels"]} <= names
    for forbidden in ("backend/", "tests/", "bench/", "scripts/", "docs/", "dist/"):
        assert not any(n.startswith(forbidden) for n in names), forbidden
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_zip_matches_blenders_builder_and_validates(built_zip, tmp_path):
    out = subprocess.run(
        [sys.executable, str(BLENDER_EXT), "build", "--source-dir", str(ROOT), "--output-dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    theirs = zipfile.ZipFile(next(tmp_path.glob("*.zip"))).namelist()
    assert sorted(zipfile.ZipFile(built_zip).namelist()) == sorted(theirs)
    out = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(built_zip)], capture_output=True, text=True)
    assert out.returncode == 0 and "Success" in out.stdout, out.stdout + out.stderr


INSTALL_SCRIPT = """
import sys, bpy, addon_utils
zip_path = sys.argv[-1]
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                 enable_on_install=True) == {"FINISHED"}
name = "bl_ext.user_default.likeness3d"
assert name in bpy.context.preferences.addons, sorted(bpy.context.preferences.addons.keys())
prefs = bpy.context.preferences.addons[name].preferences
assert prefs is not None and prefs.address.startswith("tcp://"), prefs
assert hasattr(bpy.types.Scene, "likeness") and "refine" in dir(bpy.ops.likeness)
import importlib
api = importlib.import_module(name + ".addon.api")
print("EXTENSION OK", api.__name__)
"""


def test_zip_installs_and_enables_as_a_blender_extension(built_zip, tmp_path):
    """Blender's own installer takes the zip: files in place, this platform's wheels installed, the add-on
    registered as bl_ext.user_default.likeness3d with its preferences (a private user folder, not ~)."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(built_zip)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and "EXTENSION OK bl_ext.user_default.likeness3d.addon.api" in out.stdout, (
        out.stdout[-3000:] + out.stderr[-3000:])
    installed = tmp_path / "user" / "extensions" / "user_default" / "likeness3d"
    assert (installed / "addon" / "operators.py").is_file() and not (installed / "backend").exists()
    site = next((tmp_path / "user" / "extensions" / ".local" / "lib").glob("python3.*/site-packages"))
    assert (site / "zmq").is_dir() and (site / "msgpack").is_dir()
