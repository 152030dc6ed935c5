"""Where the backend's cache lives: $LIKENESS3D_CACHE, else the user's cache folder."""

from __future__ import annotations

from pathlib import Path

from likeness3d.backend.cache import cache_dir


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("LIKENESS3D_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir("class_images") == tmp_path / "c" / "class_images"
    monkeypatch.delenv("LIKENESS3D_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("class_images") == tmp_path / "xdg" / "likeness3d" / "class_images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "likeness3d"
    assert not (tmp_path / "c").exists()  # naming a folder does not create it
