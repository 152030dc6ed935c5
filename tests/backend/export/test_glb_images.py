"""A GLB with several base-colour images is an invalid_asset naming them (one texture holds only one); parts
sharing one image read as before."""

import numpy as np
import pytest
import trimesh
from PIL import Image

from likeness3d.backend.export.glb import read_glb
from likeness3d.protocol.errors import InvalidAsset


def part(offset, grey, name):
    box = trimesh.creation.box()
    box.vertices += offset
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    image = Image.fromarray(np.full((8, 16, 4), grey, np.uint8), "RGBA")
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=image))
    return box


def test_several_base_colour_images_are_named_in_an_invalid_asset():
    data = trimesh.Scene([part([0, 0, 0], 200, "body"), part([3, 0, 0], 50, "hooves")]).export(file_type="glb")
    with pytest.raises(InvalidAsset, match="more than one base-colour image.*'(body|hooves)'.*'(body|hooves)'") as e:
        read_glb(data)
    assert e.value.field == "mesh.texture"


def test_parts_sharing_one_image_read_with_it():
    data = trimesh.Scene([part([0, 0, 0], 200, "a"), part([3, 0, 0], 200, "b")]).export(file_type="glb")
    mesh = read_glb(data)
    assert mesh.texture.shape == (8, 16, 4) and len(mesh.faces) == 24
