"""Fetch the extension's wheels and build the installable Blender extension zip, without a Blender binary.

    python scripts/build_extension.py            # fetch wheels (if missing), validate, build dist/likeness3d-<v>.zip
    python scripts/build_extension.py fetch      # only fetch the wheels listed in blender_manifest.toml
    python scripts/build_extension.py validate   # only check the manifest
    python scripts/build_extension.py build      # only build (the wheels must be there)

The manifest is the single source of truth: the wheel file names it lists say which package, version,
Python tag, ABI and platforms to ask pip for. The zip follows Blender's `extension build` rules: the
manifest and the listed wheels are always included, every other file is included unless a
`[build] paths_exclude_pattern` pattern (gitignore style) excludes it. Needs Python 3.11+ (tomllib).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "blender_manifest.toml"

# Blender's own limits and vocabularies (bl_pkg/cli/blender_ext.py, Blender 4.2 to 5.0).
TAGLINE_MAX = 64
EXTENSION_TYPES = ("add-on", "theme")
PERMISSION_KEYS = ("files", "network", "clipboard", "camera", "microphone")
PLATFORMS = ("windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64")
REQUIRED = {
    "schema_version": str,
    "id": str,
    "version": str,
    "name": str,
    "tagline": str,
    "maintainer": str,
    "type": str,
    "license": list,
    "blender_version_min": str,
}
OPTIONAL = {
    "blender_version_max": str,
    "website": str,
    "copyright": list,
    "permissions": dict,
    "tags": list,
    "platforms": list,
    "wheels": list,
    "build": dict,
}
DEFAULT_EXCLUDE = ["__pycache__/", ".*", "/*.zip", "*.blend[1-9]"]


class ManifestError(ValueError):
    """The manifest breaks one of Blender's rules; the message names the field and the value."""


# ---------------------------------------------------------------------------------------------
# Validation


def load_manifest(root: Path = ROOT) -> dict:
    with open(root / MANIFEST, "rb") as fh:
        return tomllib.load(fh)


def _terse_text_error(value: str) -> str | None:
    """Blender's rule for a tagline or a permission reason: short, single line, no trailing punctuation."""
    if len(value) > TAGLINE_MAX:
        return f"at most {TAGLINE_MAX} characters expected, found {len(value)}"
    if not value or value != value.strip():
        return "a non-empty string without surrounding spaces expected"
    if any(ord(c) < 32 for c in value):
        return "control characters are not allowed"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return f"must not end with punctuation, ends with {value[-1]!r}"
    return None


def _version_error(value: str, parts: int | None = 3) -> str | None:
    pieces = value.split(".")
    if parts is not None and len(pieces) != parts:
        return f"expected {parts} numbers separated by '.', found {value!r}"
    if not all(p.isdigit() for p in pieces):
        return f"expected numbers separated by '.', found {value!r}"
    return None


def id_error(value: str) -> str | None:
    """Blender's extension id rule: a Python identifier, no '__', no leading or trailing '_'."""
    if not value.isidentifier():
        return f"{value!r} is not a valid Python identifier"
    if "__" in value:
        return f"{value!r} contains '__'"
    if value.startswith("_") or value.endswith("_"):
        return f"{value!r} starts or ends with '_'"
    return None


def validate_manifest(data: dict) -> list[str]:
    """Every rule broken, as "field: what is wrong (value)"; an empty list for a valid manifest."""
    errors: list[str] = []
    for key, ty in REQUIRED.items():
        if key not in data:
            errors.append(f"{key}: missing")
        elif not isinstance(data[key], ty):
            errors.append(f"{key}: must be a {ty.__name__}, found {type(data[key]).__name__} {data[key]!r}")
    for key, ty in OPTIONAL.items():
        if key in data and not isinstance(data[key], ty):
            errors.append(f"{key}: must be a {ty.__name__}, found {type(data[key]).__name__} {data[key]!r}")
    for key in data:
        if key not in REQUIRED and key not in OPTIONAL:
            errors.append(f"{key}: unknown manifest field")
    if errors:
        return errors

    if (e := _version_error(data["schema_version"])) is not None:
        errors.append(f"schema_version: {e}")
    if (e := id_error(data["id"])) is not None:
        errors.append(f"id: {e}")
    if (e := _version_error(data["version"], parts=None)) is not None:
        errors.append(f"version: {e}")
    if not data["name"].strip():
        errors.append("name: must not be empty")
    if (e := _terse_text_error(data["tagline"])) is not None:
        errors.append(f"tagline: {e} ({data['tagline']!r})")
    if not data["maintainer"].strip():
        errors.append("maintainer: must not be empty")
    if data["type"] not in EXTENSION_TYPES:
        errors.append(f"type: must be one of {EXTENSION_TYPES}, found {data['type']!r}")
    if not data["license"] or not all(isinstance(x, str) and x.startswith("SPDX:") for x in data["license"]):
        errors.append(f"license: must be a non-empty list of 'SPDX:<identifier>' strings, found {data['license']!r}")
    for key in ("blender_version_min", "blender_version_max"):
        if key in data and (e := _version_error(data[key])) is not None:
            errors.append(f"{key}: {e}")
    for key, reason in data.get("permissions", {}).items():
        if key not in PERMISSION_KEYS:
            errors.append(f"permissions: unknown permission {key!r}, expected one of {PERMISSION_KEYS}")
        elif not isinstance(reason, str):
            errors.append(f"permissions.{key}: the reason must be a string, found {reason!r}")
        elif (e := _terse_text_error(reason)) is not None:
            errors.append(f"permissions.{key}: {e} ({reason!r})")
    for platform in data.get("platforms", []):
        if platform not in PLATFORMS:
            errors.append(f"platforms: unknown platform {platform!r}, expected one of {PLATFORMS}")
    for wheel in data.get("wheels", []):
        if not isinstance(wheel, str) or not wheel.endswith(".whl") or "\\" in wheel:
            errors.append(f"wheels: must be './wheels/<name>.whl' paths with '/' slashes, found {wheel!r}")
        elif not 5 <= len(Path(wheel).name.split("-")) <= 6:
            errors.append(f"wheels: {Path(wheel).name!r} does not follow the wheel file name spec")
    build = data.get("build", {})
    for key in build:
        if key not in ("paths", "paths_exclude_pattern"):
            errors.append(f"build.{key}: unknown build field")
    if "paths" in build and "paths_exclude_pattern" in build:
        errors.append("build: 'paths' and 'paths_exclude_pattern' cannot both be set")
    for pattern in build.get("paths_exclude_pattern", []):
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"build.paths_exclude_pattern: non-empty strings expected, found {pattern!r}")
        elif "**" in pattern:
            errors.append(f"build.paths_exclude_pattern: '**' is not supported by this builder ({pattern!r})")
    return errors


def check_manifest(data: dict) -> None:
    errors = validate_manifest(data)
    if errors:
        raise ManifestError(f"{MANIFEST} is invalid:\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------------------------------------
# Wheels


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name (PEP 427) that pip download needs."""

    filename: str
    distribution: str
    version: str
    python_tag: str  # "cp311"
    abi_tag: str  # "cp311" or "abi3"
    platform_tags: tuple[str, ...]  # "manylinux2014_x86_64", ...

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        parts = filename.removesuffix(".whl").split("-")
        if len(parts) not in (5, 6):
            raise ManifestError(f"wheels: {filename!r} does not follow the wheel file name spec")
        dist, version, py, abi, plat = parts[0], parts[1], parts[-3], parts[-2], parts[-1]
        return cls(filename, dist, version, py, abi, tuple(plat.split(".")))

    @property
    def python_version(self) -> str:
        digits = self.python_tag.removeprefix("cp")
        return f"{digits[0]}.{digits[1:]}"


def wheel_names(data: dict) -> list[WheelName]:
    return [WheelName.parse(Path(w).name) for w in data.get("wheels", [])]


def missing_wheels(root: Path, data: dict) -> list[str]:
    return [w for w in data.get("wheels", []) if not (root / w).is_file()]


def fetch_wheels(root: Path = ROOT, data: dict | None = None, python: str = sys.executable) -> list[Path]:
    """pip-download every wheel the manifest lists that is not in wheels/ yet; return all wheel paths."""
    data = load_manifest(root) if data is None else data
    wheel_dir = root / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    for wheel in wheel_names(data):
        if (wheel_dir / wheel.filename).is_file():
            continue
        cmd = [python, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
               "--dest", str(wheel_dir), "--python-version", wheel.python_version,
               "--implementation", "cp", "--abi", wheel.abi_tag]
        for tag in wheel.platform_tags:
            cmd += ["--platform", tag]
        cmd.append(f"{wheel.distribution}=={wheel.version}")
        subprocess.run(cmd, check=True)
        if not (wheel_dir / wheel.filename).is_file():
            got = sorted(p.name for p in wheel_dir.glob(f"{wheel.distribution}-{wheel.version}-*.whl"))
            raise ManifestError(f"pip did not fetch {wheel.filename!r}; wheels/ holds {got}")
    if missing := missing_wheels(root, data):
        raise ManifestError(f"wheels missing after the fetch: {missing}")
    return [root / w for w in data.get("wheels", [])]


# ---------------------------------------------------------------------------------------------
# Build


def pattern_matches(pattern: str, rel_path: str, is_dir: bool) -> bool:
    """gitignore-style test of one pattern against a root-relative '/'-separated path.

    A leading '/' or a '/' inside the pattern anchors it at the root (matched segment by segment);
    otherwise it matches any single path segment. A trailing '/' matches directories only. A path
    inside a matching directory matches too.
    """
    dir_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    anchored = body.startswith("/") or "/" in body
    pattern_segments = body.lstrip("/").split("/")
    segments = rel_path.split("/")
    for k in range(1, len(segments) + 1):  # the path's prefixes: every one but the last is a directory
        if dir_only and not (k < len(segments) or is_dir):
            continue
        if anchored:
            if len(pattern_segments) == k and all(
                fnmatch.fnmatchcase(s, p) for s, p in zip(segments[:k], pattern_segments, strict=True)
            ):
                return True
        elif fnmatch.fnmatchcase(segments[k - 1], body):
            return True
    return False


def excluded(patterns: list[str], rel_path: str, is_dir: bool) -> bool:
    """The last matching pattern wins; a '!' pattern re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if pattern_matches(pattern.lstrip("!"), rel_path, is_dir):
            result = not negate
    return result


def build_file_list(root: Path, data: dict) -> list[str]:
    """Root-relative paths that go into the zip: manifest, listed wheels, then the scanned tree."""
    build = data.get("build", {})
    listed = [MANIFEST] + [os.path.normpath(w).replace(os.sep, "/") for w in data.get("wheels", [])]
    if "paths" in build:
        return sorted(set(listed) | set(build["paths"]))
    patterns = build.get("paths_exclude_pattern", DEFAULT_EXCLUDE)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not excluded(patterns, prefix + d, is_dir=True))
        found += [prefix + f for f in sorted(filenames) if not excluded(patterns, prefix + f, is_dir=False)]
    return listed + sorted(set(found) - set(listed))


def build_zip(root: Path = ROOT, out_dir: Path | None = None, data: dict | None = None) -> Path:
    """Validate the manifest, check the wheels are there and write dist/<id>-<version>.zip."""
    data = load_manifest(root) if data is None else data
    check_manifest(data)
    if missing := missing_wheels(root, data):
        raise ManifestError(f"wheels missing (run `{Path(__file__).name} fetch`): {missing}")
    files = build_file_list(root, data)
    if data["type"] == "add-on" and "__init__.py" not in files:
        raise ManifestError("an add-on needs __init__.py at the extension root")
    out_dir = root / "dist" if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{data['id']}-{data['version']}.zip"
    tmp = out.with_name("." + out.name)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for rel in files:
            # wheels are zips already: store them as they are
            compress = zipfile.ZIP_STORED if rel.endswith(".whl") else zipfile.ZIP_DEFLATED
            zf.write(root / rel, rel, compress_type=compress)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="all", choices=("all", "fetch", "validate", "build"))
    parser.add_argument("--root", type=Path, default=ROOT, help="extension source (the repository root)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <root>/dist)")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose pip downloads wheels")
    args = parser.parse_args(argv)
    data = load_manifest(args.root)
    try:
        check_manifest(data)
        if args.command in ("all", "fetch"):
            paths = fetch_wheels(args.root, data, args.python)
            print(f"wheels: {len(paths)} in {args.root / 'wheels'}")
        if args.command in ("all", "build"):
            out = build_zip(args.root, args.out, data)
            print(f"built {out} ({out.stat().st_size} bytes)")
        if args.command == "validate":
            print(f"{MANIFEST}: valid")
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
