"""Reports of benchmark runs: the printed table, the README's table and the README blocks that
hold generated tables (a README never holds a typed number), and the provenance of a run."""

from __future__ import annotations

from pathlib import Path

import torch

from ..runtime import provenance
from .protocol import Benchmark


def environment(device: torch.device, bench: Benchmark, command: str) -> dict:
    """What produced the numbers: the one provenance record (:func:`deblur_edu.runtime.provenance`)
    plus the benchmark's images, kernels and crop."""
    return {**provenance(device, split=bench.split, data=bench.data, command=command),
            "images": sorted(bench.images), "kernels": len(bench.kernels), "crop": bench.crop, "note": bench.note}


def _layout(results: list[dict]) -> tuple[list[tuple[str, float]], list[str], dict]:
    """Table layout shared by the printed and the README tables: columns (boundary, σ) with
    ``valid`` first, methods in run order, and the rows keyed by (method, boundary, σ)."""
    cols = sorted({(r["boundary"], r["sigma"]) for r in results}, key=lambda c: (c[0] != "valid", c[1]))
    methods = list(dict.fromkeys(r["method"] for r in results))
    return cols, methods, {(r["method"], r["boundary"], r["sigma"]): r for r in results}


def format_table(results: list[dict], times: bool = True) -> str:
    """Rows = methods; columns = PSNR/SSIM per (boundary, σ), then mean seconds per image
    (left out with ``times=False``, e.g. where the output must be reproducible)."""
    cols, methods, by = _layout(results)
    head = f"{'method':<16}" + "".join(f"{b + ' σ=' + format(s, 'g'):>18}" for b, s in cols) + (f"{'s/image':>10}" if times else "")
    lines = [head, f"{'':<16}" + "".join(f"{'PSNR / SSIM':>18}" for _ in cols), "-" * len(head)]
    for m in methods:
        cells = []
        secs = []
        for b, s in cols:
            r = by.get((m, b, s))
            cells.append(f"{r['psnr']:>9.2f} / {r['ssim']:.3f}" if r else f"{'—':>18}")
            if r:
                secs.append(r["seconds_per_image"])
        seconds = f"{sum(secs) / len(secs):>10.4f}" if times else ""
        lines.append(f"{m:<16}" + "".join(f"{c:>18}" for c in cells) + seconds)
    return "\n".join(lines)


def markdown_table(out: dict) -> str:
    """The README's results table (mean PSNR dB / SSIM; seconds per image), from the JSON."""
    cols, methods, by = _layout(out["results"])
    lines = [
        "| method | " + " | ".join(f"{b} σ={s:g}" for b, s in cols) + " | s / image |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for m in methods:
        rows = [by[(m, b, s)] for b, s in cols if (m, b, s) in by]
        cells = [f"{r['psnr']:.2f} / {r['ssim']:.3f}" for r in rows]
        t = sum(r["seconds_per_image"] for r in rows) / len(rows)
        lines.append(f"| `{m}` | " + " | ".join(cells) + f" | {t:.4f} |")
    env = out["environment"]
    lines.append("")
    lines.append(
        f"Split `{env['split']}`: images {', '.join(env['images'])} ({env['crop']}² crops) × {env['kernels']} kernels; "
        f"{env['cpu']}, {env['torch_threads']} threads, torch {env['torch']}; commit `{env['commit'][:10]}`."
    )
    shifts = {r.get("align", 0) for r in out["results"]}
    if shifts != {0}:
        lines.append(f"Every estimate, the blurry input's included, scored after the shift within ±{max(shifts)} px "
                     f"(to 1/16 px) that best aligns it with the truth (`--align`).")
    if "speed" in out:
        sp = out["speed"]["wiener_batch"]
        lines.append(
            f"Wiener on a batch of {sp['batch']} {sp['size']}² float32 images: {sp['wiener_seconds'] * 1e3:.1f} ms "
            f"vs a bare FFT solve {sp['bare_fft_seconds'] * 1e3:.1f} ms (ratio {sp['ratio']:.2f})."
        )
    return "\n".join(lines)


def block_bounds(path: str | Path, block: str) -> tuple[str, int, int]:
    """``path``'s text and where its block's start marker begins and its end marker begins.

    Refuses, naming the file, a missing file, a missing marker and an end marker that comes
    only before the start marker — a CLI calls this before its run, so that a typo costs
    seconds, not the run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"README {path} does not exist.")
    start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
    content = path.read_text()
    i = content.find(start)
    j = content.find(end, i + len(start)) if i >= 0 else -1
    if i >= 0 and j < 0 and end in content:
        raise ValueError(f"{path}: the marker {end} comes before {start}; put the start marker first.")
    if i < 0 or j < 0:
        raise ValueError(f"{path} has no {start} … {end} block to fill.")
    return content, i, j


def replace_block(path: str | Path, block: str, text: str) -> None:
    """Replace what lies between the markers ``<!-- BLOCK:start -->`` and ``<!-- BLOCK:end -->``
    in ``path`` with ``text`` (generated tables: the README never holds a typed number)."""
    content, i, j = block_bounds(path, block)
    start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
    Path(path).write_text(f"{content[:i]}{start}\n{text}\n{content[j:]}")


def refuse_fallback(data: str, path: str | Path) -> None:
    """Results of the offline fallback data (see :mod:`deblur_edu.bench.protocol`) never go
    into a README, whose tables are the Levin × Set12 benchmark."""
    if data == "fallback":
        raise ValueError(f"the benchmark data is the offline fallback, not Levin × Set12: refusing to write its "
                         f"numbers into {path}. Install the data (python -m deblur_edu.data download) or drop --readme.")


def update_readme(path: str | Path, out: dict, block: str = "bench") -> None:
    """Write :func:`markdown_table` of ``out`` into the README's ``block`` (never fallback results)."""
    refuse_fallback(out["environment"].get("data", ""), path)
    replace_block(path, block, markdown_table(out))


