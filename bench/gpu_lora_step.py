"""The subject-LoRA training step on the GPU (TIRE's personalise stage): time per step and how much of it the
GPU is busy. On the device, once per version of the code to compare (the script runs against whichever
`likeness3d` is importable):

    PYTHONUNBUFFERED=1 python bench/gpu_lora_step.py --out $OUT/lora --tag new

SD-2-sized inpainting models with random weights (the cost per step does not depend on the weights), the
toolkit's default LoRA config, 3 subject views at 512 px. `--steps` steps are timed after 10 warm-up ones;
then a CUDA timeline (CUPTI only) of `--trace-steps` steps gives the GPU's busy time per step. Prints one
line and writes lora_<tag>.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_diffusion import subject_views  # noqa: E402
from gpu_fit_trace import timeline  # noqa: E402

from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, remove_lora, train_subject_lora  # noqa: E402
from likeness3d.backend.stages.diffusion.components import components_from_modules  # noqa: E402
from likeness3d.backend.stages.diffusion.tiny import SD2_SIZED_LABEL, build_modules  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    ap.add_argument("--tag", default="run")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--trace-steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    with torch.device(device):
        parts = build_modules("inpaint", scale="sd2")
    c = components_from_modules(parts, role="inpaint", device=device, dtype=torch.float16, source="random sd2",
                                label=SD2_SIZED_LABEL)
    images, masks = subject_views(3, 512)
    warm = 10

    def run(steps: int, hook=None) -> tuple[list[float], object]:
        stamps: list[float] = []

        def progress(step: int, total: int, text: str) -> None:
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            if hook is not None:
                hook(step)

        # progress syncs only at the two marks that are timed; in between the steps run as in a job
        marks = {warm, steps}
        result = train_subject_lora(c, images, masks, class_word="toy", config=SubjectLoraConfig(steps=steps),
                                    progress=lambda s, n, text: progress(s, n, text) if s in marks else None)
        remove_lora(c)
        return stamps, result

    rates, graphs = [], []
    for _ in range(args.rounds):
        stamps, result = run(warm + args.steps)
        rates.append((stamps[1] - stamps[0]) / args.steps * 1e3)
        # a degraded (eager) round says why; code from before the result said it: "not reported"
        graphs.append(getattr(result, "graph_note", "graphs not reported") or "cuda graphs")
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CUDA])
    path = args.out / f"trace_lora_{args.tag}.json"
    run(warm + args.trace_steps, hook=lambda s: prof.start() if s == warm else prof.stop())
    prof.export_chrome_trace(str(path))
    tl = timeline(path, args.trace_steps)
    path.unlink()
    result = {"tag": args.tag, "device": torch.cuda.get_device_name(0), "ms_per_step": rates,
              "median_ms": statistics.median(rates), "graphs": graphs,
              "timeline": {k: v for k, v in tl.items() if k != "kernel_us"}}
    (args.out / f"lora_{args.tag}.json").write_text(json.dumps(result, indent=2))
    print(f"{args.tag}: {statistics.median(rates):.1f} ms/step ({', '.join(f'{r:.1f}' for r in rates)}; "
          f"{'; '.join(sorted(set(graphs)))}); timeline "
          f"(CUPTI on): wall {tl['wall_us'] / 1e3:.1f} ms, GPU busy {tl['gpu_busy_us'] / 1e3:.1f} ms, idle host-bound "
          f"{tl['idle_host_bound_us'] / 1e3:.1f} ms, host in sync {tl['host_sync_wait_us'] / 1e3:.1f} ms, "
          f"syncs/step {sum(v['per_step'] for k, v in tl['runtime_calls'].items() if 'Synchronize' in k):.1f}",
          flush=True)


if __name__ == "__main__":
    main()
