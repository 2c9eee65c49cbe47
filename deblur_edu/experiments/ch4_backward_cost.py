"""What each way of training a DEQ costs: time per step, backward iterations, memory.

    python -m deblur_edu.experiments.ch4_backward_cost [--modes jfb implicit-anderson implicit-cg neumann-5 unrolled]
        [--iterations 5 10 20 50] [--size 96] [--batch 4] [--repeats 5] [--threads 2]
        [--checkpoint deq-jfb-cpu] [--json benchmarks/deq_cost.json] [--device cpu|cuda]

The DEQ is the ``deq-cpu`` preset's, untrained, or with ``--checkpoint NAME`` the shipped
checkpoint's weights (a trained map may need more solver iterations than a random one).

Two measurements on one seeded random batch (dead leaves, a camera-shake kernel):

1. **Time per training step** for every backward mode at the same forward tolerance and
   training budget of forward iterations (``train_max_iter``):
   the forward (the no-grad solve plus the differentiable application of T) and the
   backward (``loss.backward()``, which runs the adjoint solve of the implicit modes),
   medians of ``repeats`` runs at a fixed thread count, with the solvers' iteration counts.
2. **Peak memory against forward iterations** (the solve is forced to run exactly n
   iterations; ``unrolled`` runs n steps): the bytes autograd saves for backward
   (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once) and the
   allocator's peak during the step — ``torch.cuda.max_memory_allocated`` on a GPU, the
   profiler's memory timeline (``torch.profiler`` with ``profile_memory=True``) on a CPU — so
   that the solver's history and other no-grad buffers count too.

Timings are only meaningful on an otherwise idle machine; figures go to the JSON and the
book, never into tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..cli import positive_int, user_errors
from ..data import dead_leaves
from ..kernels import camera_shake
from ..learned import DEQ
from ..learned.deq import parse_backward
from ..physics import Blur, add_noise, crop
from ..runtime import pick_device, provenance, synchronize, write_json
from ..train import load_config
from ..zoo import metadata, pretrained
from ..zoo.registry import architecture


def saved_tensor_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd saves for backward while ``step`` runs (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def allocator_peak_bytes(step: Callable[[], None], device: torch.device) -> int | None:
    """Peak bytes allocated while ``step`` runs, above what was allocated before it."""
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the CPU timeline has no replacement yet
        path = Path(tmp) / "timeline.json"
        try:
            prof.export_memory_timeline(str(path), device="cpu")
        except (AttributeError, RuntimeError):  # a torch without the timeline: report it as missing
            return None
        _, sizes = json.loads(path.read_text())
    return int(max(sum(row) for row in sizes)) if sizes else 0


#: the noise level of the measured batch (the DEQ is told it; only the hqs form uses it)
SIGMA = 0.01


def problem(size: int, batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded training batch ``(y, k, x)``: dead-leaves scenes, one camera-shake kernel, σ = ``SIGMA``."""
    g = torch.Generator().manual_seed(seed)
    k = camera_shake(15, g)
    A = Blur(k, "valid")
    scenes = torch.cat([dead_leaves(size + 14, generator=g) for _ in range(batch)])
    y = add_noise(A(scenes), SIGMA, g)
    return y.to(device), k.to(device), crop(scenes, A.pads).to(device)


def build(mode: str, model_cfg: dict, device: torch.device, iterations: int | None = None,
          state: dict | None = None) -> DEQ:
    """A DEQ with backward ``mode`` (and the weights ``state``, if given); ``iterations``
    forces that many forward iterations."""
    cfg = dict(model_cfg, backward=mode)
    if iterations is not None:
        cfg.update(tol=1e-30, max_iter=iterations, train_max_iter=iterations, unroll_steps=iterations)
    torch.manual_seed(0)
    model = DEQ(**cfg)
    if state is not None:
        model.load_state_dict(state)
    return model.to(device).train()


def model_and_weights(checkpoint: str | None) -> tuple[dict, dict | None]:
    """The ``deq-cpu`` preset's model config and no weights, or a shipped checkpoint's both."""
    if checkpoint is None:
        return architecture("deq", load_config("deq", "cpu")["model"]), None
    meta = metadata(checkpoint)
    if meta["model_name"] != "deq":
        raise ValueError(f"{checkpoint} is a {meta['model_name']} checkpoint; the backward cost is measured on a DEQ.")
    return architecture("deq", meta["config"]["model"]), pretrained(checkpoint).state_dict()


def training_step(model: DEQ, y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """One step's (forward seconds, backward seconds)."""
    model.zero_grad(set_to_none=True)
    device = y.device
    synchronize(device)
    t0 = time.perf_counter()
    loss = torch.mean((model(y, k, SIGMA) - x) ** 2)
    synchronize(device)
    t1 = time.perf_counter()
    loss.backward()
    synchronize(device)
    return t1 - t0, time.perf_counter() - t1


def time_modes(modes: list[str], model_cfg: dict, batch, repeats: int, device: torch.device,
               state: dict | None = None) -> list[dict]:
    rows = []
    for mode in modes:
        model = build(mode, model_cfg, device, state=state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is reported in the row
            training_step(model, *batch)  # warm-up
            times = [training_step(model, *batch) for _ in range(repeats)]
        fwd, bwd = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        forward_info, backward_info = model.forward_info, model.backward_info
        rows.append({
            "mode": mode, "forward_seconds": fwd, "backward_seconds": bwd, "step_seconds": fwd + bwd,
            "forward_iterations": forward_info.iterations if forward_info and mode != "unrolled" else model.unroll_steps,
            "backward_iterations": (backward_info.iterations if backward_info and mode not in ("jfb", "unrolled")
                                    else (model.unroll_steps if mode == "unrolled" else 1)),
            "backward_converged": bool(backward_info.converged) if backward_info and mode not in ("jfb", "unrolled") else None,
        })
    return rows


def memory_modes(modes: list[str], iterations: list[int], model_cfg: dict, batch, device: torch.device,
                 allocator: bool = True, state: dict | None = None) -> list[dict]:
    """Saved-tensor bytes (and, with ``allocator``, the allocator's peak) per mode and iteration count."""
    rows = []
    for mode in modes:
        for n in iterations:
            model = build(mode, model_cfg, device, iterations=n, state=state)

            def step():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    training_step(model, *batch)

            rows.append({"mode": mode, "forward_iterations": n, "saved_bytes": saved_tensor_bytes(step),
                         "peak_bytes": allocator_peak_bytes(step, device) if allocator else None})
    return rows


def format_tables(out: dict) -> str:
    lines = ["mode                 forward s  backward s   step s   fwd it  bwd it"]
    for r in out["time"]:
        lines.append(f"{r['mode']:<20} {r['forward_seconds']:9.4f} {r['backward_seconds']:11.4f} {r['step_seconds']:8.4f} "
                     f"{r['forward_iterations']:8d} {r['backward_iterations']:7d}")
    lines += ["", "mode                 fwd it   saved MB    peak MB"]
    for r in out["memory"]:
        peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2 ** 20:.1f}"
        lines.append(f"{r['mode']:<20} {r['forward_iterations']:6d} {r['saved_bytes'] / 2 ** 20:10.1f} {peak:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch4_backward_cost", description=__doc__.split("\n")[0])
    p.add_argument("--modes", nargs="+", default=["jfb", "implicit-anderson", "implicit-cg", "neumann-5", "unrolled"])
    p.add_argument("--memory-modes", nargs="+", default=["jfb", "implicit-anderson", "unrolled"])
    p.add_argument("--iterations", type=positive_int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--size", type=positive_int, default=96)
    p.add_argument("--batch", type=positive_int, default=4)
    p.add_argument("--checkpoint", default=None, help="a shipped DEQ checkpoint, e.g. deq-jfb-cpu (default: untrained)")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    with user_errors(p):  # an unknown mode, a missing checkpoint: one line, exit 2
        for mode in (*args.modes, *args.memory_modes):
            parse_backward(mode)
        device = pick_device(args.device)
        model_cfg, state = model_and_weights(args.checkpoint)
    torch.set_num_threads(args.threads)
    batch = problem(args.size, args.batch, device)
    model_cfg = {**model_cfg, "max_iter": 50}  # the seeds' cap, for the forward and the adjoint solve
    out = {"settings": {**vars(args), "model": model_cfg, "device": str(device), "torch": torch.__version__},
           "provenance": provenance(device, data="dead leaves, one seeded camera shake",
                                    command=" ".join([f"python -m {__spec__.name}", *argv])),
           "time": time_modes(args.modes, model_cfg, batch, args.repeats, device, state),
           "memory": memory_modes(args.memory_modes, args.iterations, model_cfg, batch, device, state=state)}
    print(format_tables(out))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
