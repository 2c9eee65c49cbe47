r"""Can the data keep up with training? Synthesis throughput against a bare batched blur.

    python -m deblur_edu.experiments.synthesis_speed [--device cpu|cuda] [--batch 16] [--patch 128]
        [--kernel-size 31] [--json benchmarks/synthesis_speed.json]

Times, interleaved in one run (medians of repeated calls, so machine-load drift hits all alike):

- **synthesis**: one training batch of :class:`~deblur_edu.synthesis.BlurSynthesis` — photo and
  dead-leaves crops, a batch of camera-shake kernels, the ``valid`` blur, noise, quantisation;
- **bare blur**: only the batched FFT ``valid`` blur of the same shapes (scene crops and kernels
  given): ``irfft2(rfft2(pad(k)) · rfft2(scene))``, cropped. The rest of the synthesis should cost
  no more than this (synthesis at least half as fast);
- **dead leaves**: :func:`~deblur_edu.synthesis.dead_leaves_batch` per image against the
  per-image :func:`deblur_edu.data.dead_leaves` at the same size (158²) — the old one with its
  1,264 disks, which leave 40–60 % of the canvas flat, the new one with the ~17,000 disks it takes
  to cover the canvas — and a dead-leaves crop from the rendered bank, per sample.
"""

from __future__ import annotations

import sys
import time

import torch

from ..data import dead_leaves, load_photos
from ..physics import crop, psf2otf, scene_padding
from ..cli import experiment_parser, positive_int, user_errors
from ..runtime import interleaved_medians, pick_device, provenance, synchronize, write_json
from ..synthesis import DEAD_LEAVES_BANK, BlurSynthesis, ImageBank, dead_leaves_bank, dead_leaves_batch


def measure(device: torch.device, batch: int, patch: int, kernel_size: int, rounds: int, data_dir=None) -> dict:
    side = patch + kernel_size - 1
    photos = ImageBank(list(load_photos(data_dir_=data_dir, min_side=side).values()), device)
    start = time.perf_counter()
    leaves = ImageBank(dead_leaves_bank(DEAD_LEAVES_BANK["count"], DEAD_LEAVES_BANK["size"], 0, device), device)
    synchronize(device)
    bank_seconds = time.perf_counter() - start
    synth = BlurSynthesis(photos, leaves, patch=patch, kernel_size=kernel_size, dead_leaves_fraction=0.1)
    sample = synth.batch(0, batch)
    scene = photos.crops(batch, side, torch.Generator(device).manual_seed(0))
    k = sample["kernel"]
    pads = scene_padding(kernel_size, kernel_size)
    steps = iter(range(1, 10**9))

    def bare_blur():
        K = psf2otf(k, scene.shape[-2:])
        crop(torch.fft.irfft2(K * torch.fft.rfft2(scene), s=scene.shape[-2:]), pads)

    g = torch.Generator().manual_seed(0)
    blur_times = interleaved_medians({"synthesis": lambda: synth.batch(next(steps), batch), "bare_blur": bare_blur},
                                     rounds, device)
    leaves_times = interleaved_medians({
        "dead_leaves_batch": lambda: dead_leaves_batch(8, 158, torch.Generator(device).manual_seed(0), device=device),
        "data.dead_leaves": lambda: dead_leaves(158, g, n_disks=1264),
        "bank_crop": lambda: leaves.crops(batch, side, torch.Generator(device).manual_seed(0)),
    }, max(3, rounds // 5), device)
    per_image_new = leaves_times["dead_leaves_batch"] / 8
    return {
        "batch": batch, "patch": patch, "kernel_size": kernel_size,
        "synthesis_seconds": blur_times["synthesis"], "bare_blur_seconds": blur_times["bare_blur"],
        "synthesis_samples_per_second": batch / blur_times["synthesis"],
        "bare_blur_samples_per_second": batch / blur_times["bare_blur"],
        "synthesis_over_bare_blur_speed": blur_times["bare_blur"] / blur_times["synthesis"],
        "dead_leaves_old_seconds_per_image": leaves_times["data.dead_leaves"],
        "dead_leaves_new_seconds_per_image": per_image_new,
        "dead_leaves_speedup": leaves_times["data.dead_leaves"] / per_image_new,
        "dead_leaves_bank_crop_seconds_per_sample": leaves_times["bank_crop"] / batch,
        "dead_leaves_bank_speedup": leaves_times["data.dead_leaves"] / (leaves_times["bank_crop"] / batch),
        "dead_leaves_bank_render_seconds": bank_seconds,
    }


def report(r: dict) -> str:
    return "\n".join([
        f"batch {r['batch']} × {r['patch']}², kernels {r['kernel_size']}²:",
        f"  synthesis  {r['synthesis_samples_per_second']:10.0f} samples/s  ({r['synthesis_seconds'] * 1e3:.1f} ms a batch)",
        f"  bare blur  {r['bare_blur_samples_per_second']:10.0f} samples/s  ({r['bare_blur_seconds'] * 1e3:.1f} ms a batch)",
        f"  synthesis runs at {r['synthesis_over_bare_blur_speed']:.2f}× the bare blur's speed (target ≥ 0.5)",
        "dead leaves, 158², one image:",
        f"  data.dead_leaves (1,264 disks)  {r['dead_leaves_old_seconds_per_image'] * 1e3:8.1f} ms",
        f"  dead_leaves_batch (covering)    {r['dead_leaves_new_seconds_per_image'] * 1e3:8.1f} ms  "
        f"({r['dead_leaves_speedup']:.0f}× faster; target ≥ 20×)",
        f"  a crop from the rendered bank   {r['dead_leaves_bank_crop_seconds_per_sample'] * 1e3:8.3f} ms  "
        f"({r['dead_leaves_bank_speedup']:.0f}× faster; the bank renders once in {r['dead_leaves_bank_render_seconds']:.1f} s)",
    ])


def main(argv: list[str] | None = None) -> int:
    p = experiment_parser(__spec__.name, __doc__)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--patch", type=positive_int, default=128)
    p.add_argument("--kernel-size", type=positive_int, default=31)
    p.add_argument("--rounds", type=positive_int, default=21)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):  # no device, no photographs: one line, exit 2, before the timings
        device = pick_device(args.device)
        load_photos(data_dir_=args.data_dir, min_side=args.patch + args.kernel_size - 1)
    result = measure(device, args.batch, args.patch, args.kernel_size, args.rounds, args.data_dir)
    print(report(result))
    if args.json:
        write_json(args.json, {**result, "provenance": provenance(
            device, data="photos/ + dead leaves", command=" ".join([f"python -m {__spec__.name}", *argv]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
