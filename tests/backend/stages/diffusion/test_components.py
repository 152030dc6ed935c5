"""Loading SD components by role: local diffusers folders, roles.json, the HF cache layout, tiny, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
import torch

from likeness3d.backend.stages.diffusion.components import load_components, resolve_role_folder
from likeness3d.backend.stages.diffusion.tiny import TINY_LABEL, build_modules, tiny_tokenizer
from likeness3d.protocol.errors import ModelMissing


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading must never touch the network."""

    def refuse(*a, **k):
        raise AssertionError("a model loader tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_tiny_roles_are_marked_degraded():
    inpaint = load_components("inpaint", "tiny")
    base = load_components("base", "tiny")
    assert inpaint.unet.config.in_channels == 9 and inpaint.is_inpainting
    assert base.unet.config.in_channels == 4 and not base.is_inpainting
    for c in (inpaint, base):
        assert c.degraded and c.label == TINY_LABEL and "noise" in c.label
        assert c.source == "tiny" and c.dtype == torch.float32 and c.device == torch.device("cpu")
        assert next(c.unet.parameters()).dtype == torch.float32
        assert not any(p.requires_grad for p in c.unet.parameters())


def test_env_variable_selects_tiny(monkeypatch):
    monkeypatch.setenv("LIKENESS3D_MODELS", "tiny")
    assert load_components("base").degraded


def test_loads_role_folder_in_diffusers_layout(models_root, no_network):
    c = load_components("inpaint", models_root)
    assert c.source == str(models_root / "inpaint") and not c.degraded
    assert c.unet.config.in_channels == 9
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # the weights are the ones saved (seed 0), not a fresh random init
    ref = build_modules("inpaint", seed=0)["unet"].state_dict()
    for k, v in c.unet.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # the tokenizer read back from tokenizer/ tokenizes like the in-code one
    prompt = "a photo of sks cat"
    ids = c.tokenizer([prompt]).input_ids[0]
    assert ids == tiny_tokenizer()([prompt]).input_ids[0]
    assert ids[0] == c.tokenizer.bos_token_id and ids[-1] == c.tokenizer.eos_token_id
    assert len(ids) == 2 + len(prompt.replace(" ", ""))  # one token per byte, spaces split words
    assert type(c.scheduler).__name__ == "DDIMScheduler"
    assert load_components("base", models_root).unet.config.in_channels == 4


def test_explicit_dtype(models_root):
    c = load_components("base", models_root, dtype=torch.bfloat16)
    assert c.dtype == torch.bfloat16
    assert all(next(m.parameters()).dtype == torch.bfloat16 for m in (c.unet, c.vae, c.text_encoder))
    with pytest.raises(ValueError, match="dtype"):
        load_components("base", models_root, dtype=torch.int8)


def test_roles_json_names_a_folder(models_root, tmp_path):
    shutil.copytree(models_root / "inpaint", tmp_path / "sd2-inpainting")
    (tmp_path / "roles.json").write_text(json.dumps({"inpaint": "sd2-inpainting"}))
    assert resolve_role_folder("inpaint", tmp_path) == tmp_path / "sd2-inpainting"
    assert load_components("inpaint", tmp_path).source == str(tmp_path / "sd2-inpainting")


@pytest.mark.parametrize("under_hub", [False, True])
def test_roles_json_names_a_repo_in_the_hf_cache(models_root, tmp_path, no_network, under_hub):
    cache = tmp_path / "hub" if under_hub else tmp_path
    repo = cache / "models--stabilityai--stable-diffusion-2-inpainting"
    shutil.copytree(models_root / "inpaint", repo / "snapshots" / "0123abcd")
    shutil.copytree(models_root / "base", repo / "snapshots" / "ffff0000")  # an older snapshot refs/main skips
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd\n")
    (tmp_path / "roles.json").write_text(json.dumps({"inpaint": "stabilityai/stable-diffusion-2-inpainting"}))
    c = load_components("inpaint", tmp_path)
    assert c.source == str(repo / "snapshots" / "0123abcd") and c.unet.config.in_channels == 9


def test_hf_cache_without_roles_json_finds_the_default_repo(models_root, tmp_path):
    repo = tmp_path / "models--stabilityai--stable-diffusion-2-inpainting"
    shutil.copytree(models_root / "inpaint", repo / "snapshots" / "abc")
    assert load_components("inpaint", tmp_path).source == str(repo / "snapshots" / "abc")


def test_missing_role_names_role_and_folder(tmp_path):
    with pytest.raises(ModelMissing) as e:
        load_components("inpaint", tmp_path)
    assert e.value.code == "model_missing"
    assert "'inpaint'" in str(e.value) and str(tmp_path / "inpaint") in str(e.value)


def test_no_models_folder_configured(monkeypatch):
    monkeypatch.delenv("LIKENESS3D_MODELS", raising=False)
    with pytest.raises(ModelMissing, match=r"'base'.*--models DIR or set LIKENESS3D_MODELS"):
        load_components("base")


def test_models_folder_does_not_exist(tmp_path):
    with pytest.raises(ModelMissing, match=rf"'inpaint'.*{tmp_path / 'nope'}.*does not exist"):
        load_components("inpaint", tmp_path / "nope")


def test_incomplete_folder_names_missing_parts(models_root, tmp_path):
    shutil.copytree(models_root / "base", tmp_path / "base")
    shutil.rmtree(tmp_path / "base" / "unet")
    with pytest.raises(ModelMissing, match=rf"'base'.*{tmp_path / 'base'}.*missing unet/"):
        load_components("base", tmp_path)


def test_roles_json_unknown_repo_names_what_was_searched(tmp_path):
    (tmp_path / "roles.json").write_text(json.dumps({"base": "org/absent-model"}))
    with pytest.raises(ModelMissing) as e:
        load_components("base", tmp_path)
    msg = str(e.value)
    assert "'base'" in msg and "org/absent-model" in msg and str(tmp_path / "models--org--absent-model") in msg


def test_roles_json_must_be_a_map(tmp_path):
    (tmp_path / "roles.json").write_text("[1, 2]")
    with pytest.raises(ModelMissing, match="roles.json must map"):
        load_components("base", tmp_path)


def test_corrupt_weights_are_model_missing(models_root, tmp_path):
    shutil.copytree(models_root / "base", tmp_path / "base")
    for f in (tmp_path / "base" / "unet").glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelMissing, match=rf"'base'.*could not load.*{tmp_path / 'base'}"):
        load_components("base", tmp_path)


@pytest.mark.parametrize("role", ["", "Inpaint", "../x", 3])
def test_bad_role_name(role):
    with pytest.raises(ValueError, match="role must be"):
        load_components(role, "tiny")


def test_tiny_knows_only_its_roles():
    with pytest.raises(ValueError, match="'depth'"):
        load_components("depth", "tiny")


def test_an_unknown_scheduler_class_is_named_not_replaced(models_root, tmp_path):
    """A model folder whose scheduler_config.json names a class diffusers lacks is model_missing naming the file
    and the class; nothing substitutes another scheduler silently."""
    import json
    import shutil

    folder = tmp_path / "models" / "inpaint"
    shutil.copytree(models_root / "inpaint", folder)
    config = folder / "scheduler" / "scheduler_config.json"
    data = json.loads(config.read_text())
    data["_class_name"] = "WarpDriveScheduler"
    config.write_text(json.dumps(data))
    with pytest.raises(ModelMissing, match="WarpDriveScheduler") as err:
        load_components("inpaint", tmp_path / "models")
    assert str(config) in err.value.message
