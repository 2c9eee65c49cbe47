"""The one training loop, for every learned model of the book.

    python -m deblur_edu.train MODEL --config PRESET|FILE.yaml [--out DIR] [--resume | --restart]
    torchrun --nproc_per_node=N -m deblur_edu.train MODEL --config ...   # data-parallel

``PRESET`` names ``deblur_edu/configs/MODEL-PRESET.yaml`` (e.g. ``rgdn --config cpu``).
A config has three sections: ``model`` (the constructor's arguments of the model registered
under MODEL in :mod:`deblur_edu.zoo.registry`, plus the names of shipped checkpoints it starts
from), ``data`` (with a ``task``: batches made on the training device from the photographs by
:mod:`deblur_edu.synthesis`; without one, the earlier per-sample recipe,
:class:`deblur_edu.synthesis.BlurDataset` — never the benchmark's images or kernels), and ``train``.

What the loop does: seeds everything; AdamW with a cosine learning-rate schedule;
gradient-norm clipping; mixed precision (float16 autocast + gradient scaling) on CUDA;
a ``tqdm`` progress bar and ``log.jsonl`` metrics (with ``train.val_every``, also the
PSNR on a fixed validation batch drawn from another seed, and the training wall time
without the validation, for PSNR-against-time curves); ``last.pt`` every ``ckpt_every`` steps,
from which ``--resume`` continues *exactly* (the data order is a pure function of the
seed and the step; ``--stop-after N`` or ``--time-budget MINUTES`` end an invocation early,
so a long run fits into sessions or a lent GPU's command limit); with ``train.snapshot_every``, the weights alone as
``snapshots/step-NNNNNN.pt`` (the model at different training stages); and at the end
``model.pt`` + ``model.json`` (see :mod:`deblur_edu.zoo.checkpoints`).

Under ``torchrun`` it uses DistributedDataParallel (gloo on CPU, NCCL on GPU): each
process takes a different shard of every global batch (from a ``DistributedSampler`` for the
per-sample recipe; a slice of the synthesised global batch for a ``task``), gradients are
averaged, and only rank 0 logs and writes files. N processes with batch ``b`` take the same
steps as one process with batch ``N·b`` (tested).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import yaml
from torch import nn

from . import synthesis
from .metrics import psnr
from .runtime import git_commit, pick_device, seed_everything
from . import first_stage
from .first_stage import FirstStageBank
from .synthesis import BlurDataset
from .zoo.checkpoints import save_model
from .zoo.shipped import warm_start
from .zoo.registry import MODELS, deblurred, spec

CONFIG_DIR = Path(__file__).with_name("configs")


# ----- validation -------------------------------------------------------------------------
#: the validation set is drawn like the training data but from another seed: disjoint samples
VALIDATION_SEED_OFFSET = 10_000


def validation_batch(data_cfg: dict, size: int, device: torch.device) -> dict:
    """A fixed batch of ``size`` samples drawn like the training data but from another seed:
    from :class:`BlurDataset`, or from the on-device synthesis when the config names a ``task``."""
    seed = data_cfg.get("seed", 0) + VALIDATION_SEED_OFFSET
    if data_cfg.get("task") == "refine":  # the bank's held-out samples
        return first_stage_bank(data_cfg, device).held_out(size)
    if "task" in data_cfg:
        return synthesis.from_config({**data_cfg, "seed": seed}, device).batch(step=0, size=size)
    ds = BlurDataset(**{**data_cfg, "length": size, "seed": seed})
    samples = [ds[i] for i in range(size)]
    return {k: torch.stack([s[k] for s in samples]).to(device) for k in samples[0]}


@torch.no_grad()
def validation_psnr(model: nn.Module, batch: dict, estimate: Callable[[nn.Module, dict], torch.Tensor] = deblurred
                    ) -> float:
    """Mean PSNR (dB) of the model's estimate (the last step for unrolled models) on ``batch``."""
    was_training = model.training
    model.eval()
    out = estimate(model, batch)
    model.train(was_training)
    return float(psnr(out.clamp(0, 1), batch["sharp"]).mean())


#: banks opened by this process, so that training, validation and the metadata share one copy
_BANKS: dict[tuple, FirstStageBank] = {}


def first_stage_bank(data_cfg: dict, device: torch.device) -> FirstStageBank:
    """The bank a ``task: refine`` config trains on (:mod:`deblur_edu.first_stage`), checked against its recipe."""
    args = (data_cfg["bank"], data_cfg["patch"], data_cfg.get("holdout", 32),
            data_cfg.get("draw_seed", data_cfg.get("seed", 0)), str(device), data_cfg.get("keep", "all"))
    target = data_cfg.get("reblur_target", "noisy")  # what a reblurring module rebuilds: y, or y without its noise
    if target not in ("noisy", "noise-free"):
        raise ValueError(f"data.reblur_target must be 'noisy' or 'noise-free', got {target!r}.")
    noise_free = target == "noise-free"
    if (args, noise_free) not in _BANKS:
        _BANKS.clear()  # one bank at a time
        _BANKS[args, noise_free] = FirstStageBank(*args, expected=first_stage.recipe(data_cfg), noise_free=noise_free)
    return _BANKS[args, noise_free]


def training_batches(data_cfg: dict, tc: dict, step: int, rank: int, world: int, device: torch.device):
    """This process's training batches from ``step`` on, on ``device``.

    With a ``task`` in the config, a batch is made on the device by :mod:`deblur_edu.synthesis`
    as a pure function of (seed, step): every process makes the whole global batch and keeps
    its slice, so N processes with batch b take the steps of one process with batch N·b.
    Otherwise the samples come from :class:`BlurDataset` through a ``DataLoader``, one seeded
    shuffle per epoch sharded like ``DistributedSampler``.
    """
    b = tc["batch_size"]
    if "task" in data_cfg:
        source = (first_stage_bank(data_cfg, device) if data_cfg["task"] == "refine"
                  else synthesis.from_config(data_cfg, device))
        while True:
            batch = source.batch(step, b * world)
            yield {k: v[rank * b : (rank + 1) * b] for k, v in batch.items()}
            step += 1
    dataset = BlurDataset(**data_cfg)
    per_epoch = len(dataset) // (b * world)
    if per_epoch < 1:
        raise ValueError(f"data.length={len(dataset)} is smaller than one global batch ({b}×{world}).")
    while True:
        epoch, offset = divmod(step, per_epoch)
        batches = batches_for_epoch(len(dataset), b, rank, world, tc["seed"], epoch)[offset:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=tc.get("workers", 0))
        for batch in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            step += 1


# ----- configuration --------------------------------------------------------------------
def load_config(model: str, config: str) -> dict:
    """A preset name (``configs/MODEL-NAME.yaml``) or a path to a YAML file."""
    path = Path(config)
    if not path.is_file():
        path = CONFIG_DIR / f"{model}-{config}.yaml"
    if not path.is_file():
        presets = sorted(p.stem.split("-", 1)[1] for p in CONFIG_DIR.glob(f"{model}-*.yaml"))
        raise FileNotFoundError(f"no config {config!r} for {model}: give a YAML file or a preset from {presets}.")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"config {path} is not valid YAML: {err}") from None
    for section in ("model", "data", "train"):
        if not isinstance(cfg, dict) or not isinstance(cfg.get(section), dict):
            raise ValueError(f"config {path} lacks its {section!r} section (a mapping).")
    return cfg


# ----- distributed helpers --------------------------------------------------------------
def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def batches_for_epoch(n: int, batch_size: int, rank: int, world: int, seed: int, epoch: int) -> list[list[int]]:
    """This rank's index batches for one epoch: a seeded shuffle, sharded like
    ``DistributedSampler`` (rank r takes positions r, r + world, …), cut into batches."""
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                                  seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i : i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]


# ----- the loop -------------------------------------------------------------------------
def drop_log_after(log: Path, step: int) -> None:
    """On resume, forget the log records past the step ``last.pt`` holds: those steps run again,
    and the log would otherwise count them twice."""
    if not log.is_file():
        return
    lines = log.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        log.write_text("".join(line + "\n" for line in kept))


def out_of_time(elapsed: float, budget: float, world: int) -> bool:
    """Whether this invocation has used its time budget. Under DDP rank 0 decides for all
    ranks (clocks differ a little), so every rank stops after the same step."""
    flag = torch.tensor([float(elapsed >= budget)])
    if world > 1:
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.broadcast(flag, src=0)
    return bool(flag.item())


#: the files a run writes into its folder (``--restart`` removes exactly these)
RUN_FILES = ("last.pt", "model.pt", "model.json", "log.jsonl", "config.yaml", "snapshots")


def prepare_out_dir(out: Path, resume: bool, restart: bool, clean: bool = True) -> None:
    """Refuse to overwrite a run: a folder that already holds one is continued (``resume``) or,
    explicitly, started over (``restart``: its run files are removed first), never mixed.

    Raises ``FileExistsError`` naming both options when ``out`` holds a run and neither is
    given, or when ``resume`` finds run files but no ``last.pt`` to continue from. With
    ``clean=False`` it only checks (the CLI checks before it starts, for a one-line error).
    """
    import shutil

    if resume and restart:
        raise ValueError("--resume and --restart exclude each other: continue the run, or start it over.")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if restart:
        for name in present if clean else ():
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    if present and not resume:
        raise FileExistsError(f"{out} already holds a training run ({', '.join(present)}); continue it with --resume, "
                              f"or start over with --restart (which deletes those files first), or choose another --out.")
    if present and resume and not (out / "last.pt").is_file():
        raise FileExistsError(f"{out} holds run files ({', '.join(present)}) but no last.pt to resume from; "
                              f"start over with --restart, or choose another --out.")


def check_train_config(cfg: dict) -> None:
    """The ``train`` section's counts must be positive integers (0 or negative steps would save
    untrained weights as if the run had finished)."""
    for key in ("steps", "batch_size"):
        value = cfg["train"].get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train.{key} must be an integer >= 1, got {value!r}.")


def train(model_name: str, cfg: dict, out: str | Path, resume: bool = False, device: str | None = None,
          progress: bool = True, stop_after: int | None = None, time_budget: float | None = None,
          restart: bool = False) -> Path | None:
    """Train ``model_name`` with ``cfg``; returns the model checkpoint path (rank 0) or None.

    ``stop_after`` ends this invocation after that many steps, ``time_budget`` after the
    first step that ends past that many seconds of this invocation's wall time (both save
    ``last.pt``): long runs fit into sessions or a lent GPU's command limit, and
    ``resume=True`` later continues exactly where they stopped. A folder that already holds
    a run is never overwritten: pass ``resume=True`` or ``restart=True`` (:func:`prepare_out_dir`).
    """
    if time_budget is not None and not time_budget >= 0:
        raise ValueError(f"time_budget must be a number of seconds >= 0, got {time_budget}.")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an integer >= 1, got {stop_after!r}.")
    check_train_config(cfg)
    from tqdm.auto import tqdm

    entry, tc = spec(model_name), cfg["train"]
    dev = pick_device(device)
    rank, world = init_distributed(dev)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    out = Path(out)
    if rank == 0:
        prepare_out_dir(out, resume, restart)
    if world > 1:
        dist.barrier()  # the other ranks start once rank 0 has checked (and maybe cleaned) the folder
    seed_everything(tc["seed"])
    model = entry.build(cfg["model"])
    warm_start(model_name, model, cfg["model"])  # parts named in the config (e.g. deblurrer_from); resume overwrites them
    model = model.to(dev)
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc["steps"])
    amp = bool(tc.get("amp")) and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step, wall, val_seconds = 0, 0.0, 0.0
    val_every = tc.get("val_every")
    val_batch = validation_batch(cfg["data"], tc.get("val_size", 16), dev) if val_every and rank == 0 else None
    if resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, wall = int(state["step"]), float(state["wall_seconds"])
        val_seconds = float(state.get("val_seconds", 0.0))
        if rank == 0:
            drop_log_after(out / "log.jsonl", step)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    batches = training_batches(cfg["data"], tc, step, rank, world, dev)
    bar = tqdm(total=tc["steps"], initial=step, disable=not progress or rank != 0, desc=model_name)
    started = time.time() - wall
    invoked = time.time()
    last_step = tc["steps"] if stop_after is None else min(tc["steps"], step + stop_after)
    if step < last_step:
        for batch in batches:
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                loss = entry.loss(ddp, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc["clip"])
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            bar.update(1)
            if time_budget is not None and out_of_time(time.time() - invoked, time_budget, world):
                last_step = step
            validate = val_batch is not None and step % val_every == 0
            if rank == 0 and (step % tc["log_every"] == 0 or step == tc["steps"] or validate):
                record = {"step": step, "loss": float(loss.detach()), "grad_norm": float(grad_norm),
                          "lr": sched.get_last_lr()[0], "seconds": time.time() - started}
                if validate:
                    t0 = time.time()
                    record["val_psnr"] = validation_psnr(model, val_batch, entry.estimate)
                    val_seconds += time.time() - t0
                record["train_seconds"] = record["seconds"] - val_seconds  # wall time without validation
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{float(loss.detach()):.2e}")
            if rank == 0 and (step % tc["ckpt_every"] == 0 or step == last_step):
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                            "step": step, "wall_seconds": time.time() - started, "val_seconds": val_seconds},
                           out / "last.pt")
            snapshot_every = tc.get("snapshot_every")
            if rank == 0 and snapshot_every and step % snapshot_every == 0:
                (out / "snapshots").mkdir(exist_ok=True)
                torch.save(model.state_dict(), out / "snapshots" / f"step-{step:06d}.pt")
            if step >= last_step:
                break
    bar.close()
    if rank != 0 or step < tc["steps"]:
        return None
    meta = {
        "model_name": model_name,
        "config": cfg,
        "data_recipe": synthesis.describe(cfg["data"]) if "task" in cfg["data"] else
                       "deblur_edu.synthesis.BlurDataset(**config['data']): dead leaves + scikit-image sample images, "
                       "seeded camera-shake kernels, sigma ~ U(sigma_range), valid blur, 8-bit quantised; "
                       "no benchmark images or Levin kernels",
        "commit": git_commit(),
        "training": {"wall_seconds": time.time() - started, "train_seconds": time.time() - started - val_seconds,
                     "device": str(dev), "steps": step,
                     "world_size": world, "torch": torch.__version__,
                     "command": f"python -m deblur_edu.train {model_name} --config <config.yaml>"},
        "metrics": {},
    }
    if cfg["data"].get("task") == "refine":  # the first stage's bank is part of what training this model cost
        bank = first_stage_bank(cfg["data"], dev)
        meta["training"] |= {"first_stage_seconds": bank.build_seconds,
                             "first_stage_samples": {"built": bank.built, "kept": bank.kept}}
    return save_model(out / "model", model, meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.train", description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--config", default="cpu", help="preset name or YAML file")
    p.add_argument("--out", default=None, help="output folder (default: runs/MODEL-CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/last.pt")
    p.add_argument("--restart", action="store_true",
                   help="start over in an OUT that already holds a run (its run files are deleted first)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--batch-size", type=int, default=None, help="override train.batch_size (per process)")
    p.add_argument("--stop-after", type=int, default=None, help="stop this run after N steps (resume later)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop this run after the step that ends past MINUTES of wall time (resume later)")
    p.add_argument("--backward", default=None,
                   help="DEQ only: jfb, implicit-anderson, implicit-cg, unrolled or neumann-K (overrides model.backward)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--stop-after", args.stop_after)):
        if value is not None and value < 1:
            p.error(f"{flag} must be >= 1, got {value}.")
    if args.time_budget is not None and not args.time_budget >= 0:
        p.error(f"--time-budget must be a number of minutes >= 0, got {args.time_budget}.")
    if args.backward and args.model != "deq":
        p.error("--backward applies to the deq model only.")
    try:
        cfg = load_config(args.model, args.config)
        if args.steps is not None:
            cfg["train"]["steps"] = args.steps
        if args.batch_size is not None:
            cfg["train"]["batch_size"] = args.batch_size
        if args.backward:
            cfg["model"]["backward"] = args.backward
        check_train_config(cfg)
        suffix = f"-{args.backward}" if args.backward else ""
        out = Path(args.out or f"runs/{args.model}-{Path(args.config).stem}{suffix}")
        prepare_out_dir(out, args.resume, args.restart, clean=False)  # a one-line error now; train() cleans
        device = pick_device(args.device)
    except (OSError, ValueError) as err:
        p.error(str(err))
    path = train(args.model, cfg, out, args.resume, str(device), progress=not args.no_progress,
                 stop_after=args.stop_after, restart=args.restart,
                 time_budget=None if args.time_budget is None else 60 * args.time_budget)
    print(f"wrote {path}" if path is not None else f"stopped; continue with --resume --out {out}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
