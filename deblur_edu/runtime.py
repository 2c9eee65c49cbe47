"""Runtime helpers: device choice, seeding, CUDA-safe timing, and the provenance of a measurement."""

from __future__ import annotations

import datetime
import json
import platform
import random
import subprocess
import time
from typing import Callable
from pathlib import Path

import numpy as np
import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = 21,
                        device: torch.device | None = None) -> dict[str, float]:
    """Median wall time (seconds) of each function, the functions called in turn ``rounds`` times
    (after one warm-up call each), so that drift in the machine's load hits them alike; the GPU is
    synchronised around every call. Timings compare as ratios measured side by side in one run."""
    device = device or torch.device("cpu")
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a ``torch.Generator`` seeded the same way.

    Prefer passing the returned generator explicitly to the functions that draw.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


MODES = ("quick", "full")
MODE_VAR = "DEBLUR_EDU_MODE"


def run_mode(device: torch.device | None = None) -> str:
    """``"quick"`` or ``"full"``: how big the notebooks' experiments are.

    Read from the environment variable ``DEBLUR_EDU_MODE``; by default ``"full"`` on a
    CUDA device (a Colab GPU runtime) and ``"quick"`` on a CPU, where every notebook
    must run top to bottom in a few minutes.
    """
    import os

    value = os.environ.get(MODE_VAR, "").strip().lower()
    if value:
        if value not in MODES:
            raise ValueError(f"{MODE_VAR}={value!r} is not a mode; use one of {MODES}.")
        return value
    device = device or pick_device()
    return "full" if device.type == "cuda" else "quick"


def pick(quick, full, mode: str | None = None):
    """``quick`` in quick mode, ``full`` in full mode — one switch sizes every experiment."""
    return full if (mode or run_mode()) == "full" else quick


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, creating the folder; say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")


def git_commit() -> str:
    """The repository's HEAD commit, or "" outside a git checkout (an installed package)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance(device: torch.device, split: str | None = None, data: str | None = None,
               command: str = "") -> dict:
    """What produced a measurement — the one record every measurement command writes into its JSON:
    commit, versions, device (and GPU), CPU and threads, the data and split, the date and the command."""
    import numpy
    import skimage

    return {
        "commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-image": skimage.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "data": data,
        "split": split,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
