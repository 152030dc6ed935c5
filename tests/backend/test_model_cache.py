"""The worker's model cache: the cache's rules on plain values, then real jobs in one real worker process
(`likeness3d serve --models DIR` with a tiny inpainting model saved in diffusers layout): the second job
reuses the model the first loaded, `release` says how many models it dropped, and a third job loads again."""

from __future__ import annotations

import re

import numpy as np
import pytest

from likeness3d.backend import model_cache
from likeness3d.backend.synthetic.example import example_case
from likeness3d.protocol.assets import Asset
from likeness3d.protocol.client import Client


@pytest.fixture
def cache_on():
    assert model_cache.enable()
    yield
    model_cache.enable(False)


class Loader:
    """load() returns a new object each call and counts the calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return {"n": self.calls}


def test_off_it_only_loads():
    assert not model_cache.enabled()
    load = Loader()
    assert model_cache.get_or_load("k", load) == ({"n": 1}, False)
    assert model_cache.get_or_load("k", load) == ({"n": 2}, False)
    assert model_cache.cached() == [] and model_cache.end_job() == [] and model_cache.clear() == 0


def test_the_environment_keeps_it_off(monkeypatch):
    monkeypatch.setenv(model_cache.ENV, "0")
    assert not model_cache.enable() and not model_cache.enabled()


def test_kept_between_jobs_restored_at_each_job_end_and_before_a_hit(cache_on):
    load, restored = Loader(), []

    def restore(value):
        restored.append(value["n"])
        return True

    first, hit = model_cache.get_or_load("k", load, restore)
    assert not hit and model_cache.get_or_load("k", load, restore) == ({"n": 2}, False)  # in use: its own copy
    uses = model_cache.end_job()
    assert [(u.key, u.outcome) for u in uses] == [("k", "loaded"), ("k", "loaded, not kept")]
    assert restored == [1]  # at the job's end
    value, hit = model_cache.get_or_load("k", load, restore)
    assert hit and value is first and restored == [1, 1] and load.calls == 2
    assert [u.outcome for u in model_cache.end_job()] == ["reused"]
    assert model_cache.clear() == 1 and model_cache.clear() == 0


def test_a_value_that_cannot_be_restored_is_loaded_again(cache_on):
    load, answers = Loader(), iter([True, False])
    model_cache.get_or_load("k", load, lambda v: next(answers))
    model_cache.end_job()  # its restore says True: kept
    assert model_cache.cached() == ["k"]
    value, hit = model_cache.get_or_load("k", load)  # its restore says False at the hit: loaded again
    assert not hit and value == {"n": 2} and load.calls == 2
    model_cache.clear()

    def broken(value):
        raise RuntimeError("a CUDA error, say")

    model_cache.get_or_load("k", load, broken)
    model_cache.end_job()  # a restore that raises drops the entry
    assert model_cache.cached() == []


def test_a_failed_load_keeps_nothing_and_drop_if_forgets(cache_on):
    def fail():
        raise OSError("disk")

    with pytest.raises(OSError):
        model_cache.get_or_load("k", fail)
    assert model_cache.cached() == []
    load = Loader()
    a, _ = model_cache.get_or_load("a", load)
    model_cache.get_or_load("b", load)
    assert model_cache.drop_if(lambda v: v is a) == 1 and model_cache.cached() == ["b"]
    model_cache.end_job()


# -- real jobs in one real worker -----------------------------------------------------------------------

TINY_TIRE = {"resolution": 32, "azimuths": 2, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
             "fit_resolution": 24, "turntable_views": 1, "texture_size": 64, "lora_steps": 1,
             "consistency_rounds": 0, "strength": 0.02}
"""TIRE at its smallest with the diffusion inpainter: one LoRA step, one denoising step per inpainting."""
LORA = "pytorch_lora_weights.safetensors"


def job_log(server, job_id: str) -> str:
    return (server.store / "jobs" / job_id / "log.txt").read_text()


def releases(server) -> list[int]:
    """`models_dropped` of every release the server's workers reported, from the server's log, in order."""
    text = (server.store / "server.log").read_text()
    return [int(n) for n in re.findall(r"worker 0 released: \{.*'models_dropped': (\d+)", text)]


def lora(client, job_id: str) -> dict:
    from safetensors.numpy import load

    return load(client.fetch(job_id, LORA))


def test_a_worker_reuses_the_model_until_release(server_factory, tmp_path):
    from likeness3d.backend.stages.diffusion.tiny import save_tiny

    save_tiny(tmp_path / "models" / "inpaint", "inpaint")
    folder = str((tmp_path / "models" / "inpaint").resolve())
    srv = server_factory(extra=["--models", str(tmp_path / "models")])
    case = example_case(image_size=48, texture_size=64)
    asset = Asset(case.initial, case.references, "pebble", "pebble")
    key = f"model cache: inpaint {folder} cpu float32"
    with Client(srv.address, timeout=30) as c:
        first = c.submit("tire", asset, TINY_TIRE)
        first.wait(300)
        second = c.submit("tire", asset, TINY_TIRE)
        second.wait(300)
        assert f"{key}: loaded in" in job_log(srv, first.id)
        assert f"{key}: reused in" in job_log(srv, second.id)
        assert "model cache: 1 model(s) kept for later jobs" in job_log(srv, second.id)
        # the cached model came back as the folder's weights, without the first job's adapter: the second
        # job's LoRA (same seed, same inputs) is the first's
        a, b = lora(c, first.id), lora(c, second.id)
        assert sorted(a) == sorted(b) and len(a) > 0
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-7, err_msg=k)
        assert c.release() == {"released": [0], "after_current_job": []}
        third = c.submit("tire", asset, TINY_TIRE)
        third.wait(300)  # the worker read the release before this job: the server has logged its reply
        assert releases(srv) == [1]
        assert f"{key}: loaded in" in job_log(srv, third.id)
        for k, v in lora(c, third.id).items():
            np.testing.assert_allclose(v, a[k], rtol=1e-4, atol=1e-7, err_msg=k)
        assert c.release()["released"] == [0] and c.release()["released"] == [0]
        inspect = c.submit("inspect", asset)
        inspect.wait(60)
        assert releases(srv) == [1, 1, 0]  # the third job's model, then nothing left to drop
        assert "model cache" not in job_log(srv, inspect.id)  # a job that loads no model logs nothing
