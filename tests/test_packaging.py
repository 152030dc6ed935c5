"""The installed package is the whole package: pyproject.toml lists every folder with an __init__.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("packages = [", 1)[1].split("]", 1)[0]
    listed = set(re.findall(r'"(likeness3d[\w.]*)"', block))
    found = {"likeness3d"} | {
        "likeness3d." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("protocol", "addon", "backend")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert listed - found == set(), f"pyproject.toml lists packages that do not exist: {sorted(listed - found)}"
