r"""``book/gpu.md``'s measured section, rendered from the files of one GPU run.

    python -m deblur_edu.experiments.gpu_report [--from benchmarks/gpu] [--write book/gpu.md]

A GPU run is a folder of ``.ci/gpu-check``'s results (``gpu-check.json`` with the provenance, and
``*-cuda.json``, ``chapters.json``, ``gpu-tests.log``), or of earlier runs made by the same
commands by hand (their provenance in ``provenance.md``, the reversible decoders' memory only as the
table its command printed, ``cost-cuda.log``). Every figure on the page is read from those files;
the page says which commit, device and torch they describe. Without ``--write`` the section is printed;
with it, it replaces the ``gpu-measured`` block of that page.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..bench.report import block_bounds, replace_block

BLOCK = "gpu-measured"


def read_json(folder: Path, name: str) -> dict | list | None:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(folder: Path) -> dict:
    """``commit``, ``device``, ``torch``, ``date`` and ``source`` of the run in ``folder``."""
    run = read_json(folder, "gpu-check.json")
    if run is not None:
        env = run["environment"]
        if not env.get("commit"):
            raise ValueError(f"{folder}/gpu-check.json names no commit: a run made without .git must be given "
                             f"GIT_COMMIT (see .ci/gpu-check); results of an unknown commit are not shown.")
        return {"commit": env["commit"][:7], "device": env.get("gpu") or env["device"], "torch": env["torch"],
                "date": env["date"][:10], "source": "`.ci/gpu-check` (`gpu-check.json`)"}
    notes = folder / "provenance.md"
    if not notes.is_file():
        raise FileNotFoundError(f"{folder} holds neither gpu-check.json nor provenance.md: not a GPU run's folder.")
    text = notes.read_text()
    commit = re.search(r"at commit `?([0-9a-f]{7,40})`?", text)
    device = re.search(r"\(one (NVIDIA [^)]+)\)", text)
    torch_version = re.search(r"torch ([0-9][^\s,;]*)", text)
    date = re.search(r"(\d{4}-\d\d-\d\d)", text)
    if not (commit and device and torch_version and date):
        raise ValueError(f"{notes} does not state the commit, the device, the torch version and the date.")
    return {"commit": commit.group(1), "device": device.group(1), "torch": torch_version.group(1),
            "date": date.group(1), "source": "the project's commands run by hand (`provenance.md`)"}


def pytest_summary(folder: Path) -> str | None:
    """pytest's summary line from ``gpu-tests.log`` (e.g. ``7 passed, 1 warning in 14.81s``)."""
    path = folder / "gpu-tests.log"
    if not path.is_file():
        return None
    lines = [ln.strip("= ") for ln in path.read_text().splitlines() if re.search(r"\d+ (passed|failed|skipped)", ln)]
    return lines[-1] if lines else None


def reversible_rows(folder: Path) -> list[dict] | None:
    """The reversible decoders' peak training memory per number of sub-decoders, in MB."""
    data = read_json(folder, "reversible_cost-cuda.json")
    if data is not None:
        return [{"columns": r["columns"], "reversible": r["reversible_peak_bytes"] / 2**20,
                 "plain": r["plain_peak_bytes"] / 2**20, "ratio": r["ratio"]} for r in data["rows"]]
    log = folder / "cost-cuda.log"
    if not log.is_file():
        return None
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", log.read_text().split("sub-decoders")[-1], re.M)
    return [{"columns": int(c), "reversible": float(r), "plain": float(p), "ratio": float(q)} for c, r, p, q in rows]


def table(title: str, header: str, align: str, rows: list[str]) -> list[str]:
    """A titled markdown table (``header`` ``"| a | b |"``, ``align`` its separator line such as
    ``"|---|---:|"``, ``rows`` the body lines), then a blank line."""
    return [title, "", header, align, *rows, ""]


def deq_cost_section(cost: dict) -> list[str]:
    model = cost["settings"].get("model", {})
    form = model.get("form", "?")
    times = {r["mode"]: r for r in cost["time"]}
    jfb = times["jfb"]["backward_seconds"]
    lines = [f"**The DEQ's backward cost** (`deq_cost-cuda.json`; chapter 4's `ch4_backward_cost`, the model of that "
             f"commit: form `{form}`, batch {cost['settings']['batch']} × {cost['settings']['size']}²), seconds per "
             f"training step:", "",
             "| backward | forward iterations | forward s | backward s | step s | backward ÷ JFB's |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, r in times.items():
        lines.append(f"| {mode} | {r['forward_iterations']} | {r['forward_seconds']:.4f} | {r['backward_seconds']:.4f} | "
                     f"{r['step_seconds']:.4f} | {r['backward_seconds'] / jfb:.1f} |")
    memory: dict[str, dict[int, float]] = {}
    for r in cost.get("memory", []):
        memory.setdefault(r["mode"], {})[r["forward_iterations"]] = r["peak_bytes"] / 2**20
    if memory:
        its = sorted({i for m in memory.values() for i in m})
        lines += ["", "Peak memory of one training step (MB) against the forward solve's iterations:", "",
                  "| backward | " + " | ".join(f"{i} it" for i in its) + " |", "|---|" + "---:|" * len(its)]
        lines += [f"| {mode} | " + " | ".join(f"{m.get(i, float('nan')):,.0f}" for i in its) + " |"
                  for mode, m in memory.items()]
    return lines


def render(folder: Path) -> str:
    """The markdown of the measured section (see the module docstring)."""
    folder = Path(folder)
    p = provenance(folder)
    lines = [f"Measured on one **{p['device']}** with torch {p['torch']} on {p['date']}, at commit `{p['commit']}` of "
             f"this repository, by {p['source']}; the files are in `benchmarks/{folder.name}/`. They describe the code "
             f"at that commit: a model changed since then is not the one measured here.", ""]
    tests = pytest_summary(folder)
    if tests:
        lines += [f"**CUDA tests** (`tests/test_cuda.py` and the blur operators' CUDA test): {tests}.", ""]
    cost = read_json(folder, "deq_cost-cuda.json")
    if cost is not None:
        lines += deq_cost_section(cost) + [""]
    rows = reversible_rows(folder)
    if rows:
        lines += table("**Reversible decoders** (chapter 6's `ch6_reversible_cost`): peak training memory (MB)",
                       "| sub-decoders | reversible | plain | ratio |", "|---:|---:|---:|---:|",
                       [f"| {r['columns']} | {r['reversible']:.1f} | {r['plain']:.1f} | {r['ratio']:.2f} |"
                        for r in rows])
    throughput = read_json(folder, "throughput-cuda.json")
    if throughput is not None:
        lines += table("**Training throughput** (`train_throughput`, the training loop as it trains):",
                       "| model:preset | batch | patch | steps/s |", "|---|---:|---:|---:|",
                       [f"| {r['model']}:{r['preset']} | {r['batch']} | {r['patch']}² | {r['steps_per_second']:.2f} |"
                        for r in throughput["rows"]])
    bench = read_json(folder, "bench-cuda.json")
    if bench is not None:
        lines += table("**The benchmark on CUDA** (valid boundary, `bench-cuda.json`): PSNR (dB) and seconds "
                       "per image",
                       "| method | σ | PSNR | s/image |", "|---|---:|---:|---:|",
                       [f"| {r['method']} | {r['sigma']} | {r['psnr']:.2f} | {r['seconds_per_image']:.4f} |"
                        for r in bench["results"]])
    chapters = read_json(folder, "chapters.json")
    if chapters:
        lines += table("**The chapters in full mode as plain Python** (`chapters.json`; each stopped at the run's "
                       "limit if still running):",
                       "| chapter | status | seconds | peak CUDA MB |", "|---|---|---:|---:|",
                       [f"| {c['notebook']} | {c['status']} | {c['seconds']:.1f} | "
                        f"{'—' if c['cuda_peak_mb'] is None else format(c['cuda_peak_mb'], ',.0f')} |"
                        for c in chapters])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.gpu_report", description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="folder", type=Path, default=Path("benchmarks/gpu"), help="the GPU run's folder")
    p.add_argument("--write", type=Path, default=None, help=f"replace this page's {BLOCK} block (e.g. book/gpu.md)")
    args = p.parse_args(argv)
    try:
        if args.write:
            block_bounds(args.write, BLOCK)
        text = render(args.folder)
    except (OSError, ValueError) as err:
        p.error(str(err))
    except KeyError as err:  # a file of the run lacks a field the page shows
        p.error(f"a file in {args.folder} lacks the field {err}: was it written by the commands gpu-check runs?")
    if args.write:
        replace_block(args.write, BLOCK, text)
        print(f"wrote the {BLOCK} block of {args.write}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
