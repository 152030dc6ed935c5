"""3DGS PLY: exact round trip, the standard header, and a reader tolerant of other writers' files."""

import numpy as np
import pytest

from likeness3d.backend.export.ply import read_ply, write_ply


def random_splats(n=50, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
        logit_opacities=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, k, 3)).astype(np.float32),
    )


def test_round_trip_is_exact_and_header_is_standard(tmp_path):
    s = random_splats(k=16)
    data = write_ply(tmp_path / "s.ply", **s)
    header = data[: data.index(b"end_header")].decode()
    props = [ln.split()[-1] for ln in header.splitlines() if ln.startswith("property")]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert props == expected
    assert "format binary_little_endian 1.0" in header and "element vertex 50" in header
    back = read_ply(tmp_path / "s.ply")
    for key in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        assert np.array_equal(getattr(back, key), s[key]), key
    assert np.array_equal(back.normals, np.zeros((50, 3), np.float32)) and back.extra == {}


def test_f_rest_is_channel_major_as_3dgs():
    s = random_splats(n=2, k=4)
    data = write_ply(None, **s, pad_to_degree=1)
    body = np.frombuffer(data[data.index(b"end_header\n") + 11:], "<f4").reshape(2, -1)
    rest = body[:, 9:18]  # after x y z nx ny nz f_dc_0..2
    assert np.array_equal(rest[:, 0:3], s["sh"][:, 1:, 0])  # f_rest_0..2: bands 1..3 of red
    assert np.array_equal(rest[:, 3:6], s["sh"][:, 1:, 1])


def test_lower_degree_is_padded_with_zero_bands():
    s = random_splats(k=1)
    back = read_ply(write_ply(None, **s))
    assert back.sh.shape == (50, 16, 3)
    assert np.array_equal(back.sh[:, 0], s["sh"][:, 0]) and not back.sh[:, 1:].any()


def foreign_ply(n=5, degree=1, seed=1) -> tuple[bytes, dict]:
    """A file as another tool might write it: reordered fields, extra ones, doubles, fewer f_rest."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    n_rest = 3 * (k - 1)
    fields = ([("rot_0", "f4"), ("rot_1", "f4"), ("rot_2", "f4"), ("rot_3", "f4"), ("red", "u1"),
               ("x", "f8"), ("y", "f8"), ("z", "f8"), ("opacity", "f4"), ("confidence", "f4")]
              + [(f"f_rest_{i}", "f4") for i in range(n_rest)]
              + [("f_dc_0", "f4"), ("f_dc_1", "f4"), ("f_dc_2", "f4"),
                 ("scale_0", "f4"), ("scale_1", "f4"), ("scale_2", "f4")])
    rec = np.zeros(n, dtype=[(name, "<" + t) for name, t in fields])
    for name, _ in fields:
        rec[name] = rng.integers(0, 255, n) if name == "red" else rng.normal(size=n)
    names = {"f4": "float", "f8": "double", "u1": "uchar"}
    header = ("ply\nformat binary_little_endian 1.0\ncomment written elsewhere\n"
              f"element vertex {n}\n" + "".join(f"property {names[t]} {name}\n" for name, t in fields)
              + "element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    return header.encode() + rec.tobytes(), rec


def test_reader_tolerates_other_layouts():
    data, rec = foreign_ply(degree=1)
    s = read_ply(data)
    assert np.allclose(s.means, np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float32))
    assert np.array_equal(s.quats[:, 0], rec["rot_0"]) and np.array_equal(s.logit_opacities, rec["opacity"])
    assert s.sh.shape == (5, 4, 3)
    assert np.array_equal(s.sh[:, 1:, 0], np.stack([rec[f"f_rest_{i}"] for i in range(3)], 1))
    assert np.array_equal(s.sh[:, 1:, 2], np.stack([rec[f"f_rest_{i}"] for i in range(6, 9)], 1))
    assert set(s.extra) == {"red", "confidence"} and s.normals is None


def test_reader_rejects_broken_files():
    data = write_ply(None, **random_splats())
    with pytest.raises(ValueError, match="truncated"):
        read_ply(data[:-10])
    with pytest.raises(ValueError, match="binary_little_endian"):
        read_ply(data.replace(b"binary_little_endian", b"ascii", 1))
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply(b"hello")
    with pytest.raises(ValueError, match="lacks"):
        read_ply(data.replace(b"property float opacity", b"property float opacitx", 1))
    with pytest.raises(ValueError, match="f_rest"):
        read_ply(data.replace(b"property float f_rest_44", b"property float g_rest_44", 1))
    with pytest.raises(ValueError, match="quats"):
        write_ply(None, **{**random_splats(), "quats": np.zeros((50, 3))})
    with pytest.raises(ValueError, match="non-finite"):
        write_ply(None, **{**random_splats(), "means": np.full((50, 3), np.nan)})
