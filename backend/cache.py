"""Where the backend keeps what is worth reusing between jobs (DreamBooth class images, issue 6).

$LIKENESS3D_CACHE when set; a server's workers set it to `<store>/cache` unless the operator did, so the jobs
of one server share a cache beside their job store; otherwise (`likeness3d refine`, scripts) the user's cache
folder, $XDG_CACHE_HOME/likeness3d or ~/.cache/likeness3d. Each kind of entry has its own subfolder.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LIKENESS3D_CACHE"


def cache_dir(kind: str = "") -> Path:
    """The cache root, or its subfolder `kind` (e.g. "class_images"); not created here."""
    value = os.environ.get(ENV)
    if value:
        root = Path(value).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "likeness3d"
    return root / kind if kind else root
