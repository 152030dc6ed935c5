"""The video pipeline's outputs: frames, video.mp4, the LoRAs, the conditioning sheet, report.json."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ..config import config_to_dict

SUBJECT_LORA = "lora_3dreambooth.safetensors"
"""The 3DreamBooth LoRA, diffusers' Wan format: `WanPipeline.load_lora_weights(out, weight_name=SUBJECT_LORA)`."""
ADAPTER_LORA = "lora_3dapter.safetensors"
"""The 3Dapter LoRA after the subject stage (same format; it acts on conditioning tokens only, through the
pipeline's dual-branch forward, so the plain WanPipeline has no use for it)."""


class Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(self.laps.get(stage, 0.0) + now - self.t, 3)
        self.t = now

    def report(self) -> dict[str, float]:
        return {**self.laps, "total": round(sum(self.laps.values()), 3)}


def video_name(index: int) -> str:
    return "video.mp4" if index == 0 else f"video_{index}.mp4"


def frame_name(index: int, frame: int) -> str:
    return f"frame_{frame:04d}.png" if index == 0 else f"video_{index}_frame_{frame:04d}.png"


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def views_sheet(images: np.ndarray, chosen: list[int]) -> np.ndarray:
    """[N, S, S, 3] views side by side, the conditioning ones framed in orange: [S + 8, N (S + 8), 3] uint8."""
    n, s = images.shape[:2]
    sheet = np.full((s + 8, n * (s + 8), 3), 255, np.uint8)
    for i, img in enumerate(images):
        x = i * (s + 8)
        if i in chosen:
            sheet[:, x:x + s + 8] = (255, 140, 0)
        sheet[4:4 + s, x + 4:x + 4 + s] = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return sheet


def publish_loras(ctx, transformer, adapter: bool) -> dict:
    from ..stages.video.lora import ADAPTER, SUBJECT, save_diffusers

    folder = Path(ctx.work_dir) / "loras"
    out = {"3dreambooth": SUBJECT_LORA}
    ctx.add_artifact(SUBJECT_LORA, save_diffusers(transformer, SUBJECT, folder, SUBJECT_LORA))
    if adapter:
        ctx.add_artifact(ADAPTER_LORA, save_diffusers(transformer, ADAPTER, folder, ADAPTER_LORA))
        out["3dapter"] = ADAPTER_LORA
    return out


def publish_video(ctx, index: int, prompt: str, seed: int, frames: np.ndarray, fps: int) -> dict:
    """Frames as PNGs and the H.264 MP4 of one video; returns its report entry."""
    from ..stages.video.mp4 import write_mp4

    names = []
    for f, img in enumerate(frames):
        names.append(frame_name(index, f))
        ctx.add_artifact(names[-1], _png(img))
    tmp = Path(ctx.work_dir) / video_name(index)
    info = write_mp4(tmp, frames, fps)
    ctx.add_artifact(video_name(index), tmp)
    return {"prompt": prompt, "seed": seed, "file": video_name(index), **info, "frame_files": names}


def report(asset, config, device, comps, masked, az, chosen, gap, trained, adapter_dir, adapter_meta, lora_files,
           videos, prompts) -> dict:
    degraded = [comps.label] if comps.degraded else []
    if config.adapter.enabled and adapter_dir is None:
        degraded.append("3Dapter not pre-trained: it started from zero (no `adapter` role in the models folder) and "
                        "learnt only from this subject's views")
    if chosen and gap > 0:
        degraded.append(f"the conditioning views leave an arc of {gap:.0f} degrees around the subject uncovered: no "
                        f"reference sees that side")
    n_refs = len(asset.references)
    if not all(masked[:n_refs]):
        degraded.append(f"{masked[:n_refs].count(False)} reference(s) had no mask (opaque alpha): their background was kept")
    losses = trained.losses
    return {
        "pipeline": "video",
        "device": device,
        "class_word": asset.class_word,
        "settings": config_to_dict(config),
        "models": {"video": comps.provenance(), "adapter": str(adapter_dir) if adapter_dir else None},
        "degraded": degraded,
        "views": {
            "count": len(masked), "references": n_refs, "asset_renders": len(masked) - n_refs, "size": config.views.size,
            "masked": masked[:n_refs],
            "azimuth_degrees": [round(float(a), 2) for a in az],
            "conditioning": [asset.references[i].name if i < n_refs else f"asset_render_{i - n_refs}" for i in chosen],
            "uncovered_arc_degrees": round(float(gap), 2) if chosen else None,
            "asset_renders_refined_by_tire": bool(config.views.refine_first),
        },
        "dreambooth": {
            "prompt": config.dreambooth.prompt(asset.class_word), "steps": len(losses),
            "rank": config.dreambooth.rank, "alpha": config.dreambooth.alpha,
            "learning_rate": config.dreambooth.learning_rate, "seconds": round(trained.seconds, 3),
            "loss_first": round(losses[0], 6) if losses else None,
            "loss_last_10_mean": round(float(np.mean(losses[-10:])), 6) if losses else None,
            "generated_temporal_indices": sorted(trained.gen_frames),
            "objective": "flow-matching velocity (noise - x0) on one-frame videos",
            "cuda_graphs": trained.cuda_graphs,
            "graph_note": trained.graph_note,
        },
        "3dapter": {
            "enabled": config.adapter.enabled,
            "pretrained": adapter_dir is not None,
            "source": str(adapter_dir) if adapter_dir else ("zero (no pre-trained weights)" if config.adapter.enabled else None),
            "pretraining": {k: v for k, v in (adapter_meta or {}).items() if k not in ("target_modules",)} or None,
            "conditioning_temporal_indices": trained.cond_frames,
            "steps": len(losses) if config.adapter.enabled else 0,
        },
        "loras": lora_files,
        "videos": [{k: x for k, x in v.items() if k != "frame_files"} | {"first_frame": v["frame_files"][0]} for v in videos],
        "prompts": prompts,
    }
