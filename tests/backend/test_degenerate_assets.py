"""Assets that pass the wire's checks but cannot be refined: each is `invalid_asset` naming the field and the
fix, from `check_refinable` (the CLI calls it before any import) and at the end of a real server's job."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from likeness3d.backend.pipelines.common import check_refinable
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import InvalidAsset


def _with_vertices(asset: Asset, vertices: np.ndarray) -> Asset:
    m = asset.mesh
    return dataclasses.replace(asset, mesh=Mesh(vertices.astype(np.float32), m.faces, m.uvs, m.texture))


def _looking_away(asset: Asset) -> Asset:
    ref = asset.references[0]
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])  # turned half around its own y axis: the mesh is behind it
    cam = Camera(ref.camera.K, flip @ ref.camera.w2c, ref.camera.width, ref.camera.height)
    return dataclasses.replace(asset, references=(Reference(ref.name, ref.image, cam),) + asset.references[1:])


CASES = [
    ("one_point", lambda a: _with_vertices(a, np.ones_like(a.mesh.vertices)), "mesh.vertices", "no surface"),
    ("on_a_line", lambda a: _with_vertices(a, np.outer(np.arange(len(a.mesh.vertices)), [1.0, 0, 0])), "mesh.vertices",
     "no surface"),
    ("huge", lambda a: _with_vertices(a, a.mesh.vertices * 1e37), "mesh.vertices", "apply a scale"),
    ("looking_away", _looking_away, "references[0].camera", "aim the camera"),
    ("no_references", lambda a: dataclasses.replace(a, references=()), "references", "add a reference"),
    ("no_uvs", lambda a: dataclasses.replace(a, mesh=Mesh(a.mesh.vertices, a.mesh.faces)), "mesh.uvs", "unwrap"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_check_refinable_names_the_field_and_the_fix(asset, case):
    _, make, field, fix = case
    check_refinable(asset, "tire")  # the good asset passes
    with pytest.raises(InvalidAsset, match=fix) as e:
        check_refinable(make(asset), "tire")
    assert e.value.field == field


def test_a_job_on_a_degenerate_asset_ends_invalid_asset_with_its_field(server, asset):
    """The server front takes these (they are valid on the wire); the job ends with the typed error and its
    field (job errors used to lose it)."""
    with Client(server.address, timeout=30) as c:
        for name, make, field, fix in CASES[:4]:
            job = c.submit("tire", make(asset), {"fit": {"steps": 1}})
            with pytest.raises(InvalidAsset, match=fix) as e:
                job.wait(120)
            assert e.value.field == field, name
            assert c.status(job.id)["error"]["code"] == "invalid_asset"
