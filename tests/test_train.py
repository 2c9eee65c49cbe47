"""The training loop: DDP on different shards = one process on the combined batch; exact resume;
checkpoints verified by sha256 and loaded with weights_only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deblur_edu.zoo.checkpoints import load_model, sign_config
from deblur_edu.zoo.registry import MODELS
from deblur_edu.train import batches_for_epoch, load_config, train, validation_batch

ROOT = Path(__file__).resolve().parent.parent


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_shards_are_disjoint_and_cover_the_combined_batches():
    r0 = batches_for_epoch(64, 2, 0, 2, seed=0, epoch=0)
    r1 = batches_for_epoch(64, 2, 1, 2, seed=0, epoch=0)
    single = batches_for_epoch(64, 4, 0, 1, seed=0, epoch=0)
    assert not set(sum(r0, [])) & set(sum(r1, []))
    for a, b, s in zip(r0, r1, single):
        assert sorted(a + b) == sorted(s)


def torchrun_tiny(out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``torchrun`` with 2 CPU processes on the tiny RGDN preset (batch 2 each), one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "deblur_edu.train", "rgdn", "--config", "tiny", "--batch-size", "2",
           "--out", str(out), "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_ddp_on_two_processes_equals_one_process_on_the_combined_batch(tmp_path):
    torchrun_tiny(tmp_path / "ddp")
    cfg = load_config("rgdn", "tiny")
    cfg["train"]["batch_size"] = 4
    train("rgdn", cfg, tmp_path / "single", progress=False)
    a, b = weights(tmp_path / "ddp/model.pt"), weights(tmp_path / "single/model.pt")
    assert max_diff(a, b) < 1e-5
    init = MODELS["rgdn"].build(cfg["model"]).state_dict()
    assert max_diff(a, init) > 1e-4  # training did move the weights


def test_resume_continues_exactly(tmp_path):
    cfg = load_config("rgdn", "tiny")
    train("rgdn", cfg, tmp_path / "straight", progress=False)
    assert train("rgdn", cfg, tmp_path / "resumed", progress=False, stop_after=2) is None
    train("rgdn", cfg, tmp_path / "resumed", resume=True, progress=False)
    assert max_diff(weights(tmp_path / "straight/model.pt"), weights(tmp_path / "resumed/model.pt")) < 1e-6


def test_time_budget_stops_early_and_resume_finishes_the_same_run(tmp_path):
    cfg = load_config("rgdn", "tiny")
    train("rgdn", cfg, tmp_path / "straight", progress=False)
    # a zero budget is spent after the first step: last.pt holds step 1, no model.pt yet
    assert train("rgdn", cfg, tmp_path / "sliced", progress=False, time_budget=0) is None
    assert torch.load(tmp_path / "sliced/last.pt", weights_only=True)["step"] == 1
    assert not (tmp_path / "sliced/model.pt").exists()
    train("rgdn", cfg, tmp_path / "sliced", resume=True, progress=False, time_budget=3600)
    assert max_diff(weights(tmp_path / "straight/model.pt"), weights(tmp_path / "sliced/model.pt")) < 1e-6


def test_time_budget_under_ddp_stops_every_rank_after_the_same_step(tmp_path):
    proc = torchrun_tiny(tmp_path / "ddp", "--time-budget", "0")
    assert "continue with --resume" in proc.stdout
    assert torch.load(tmp_path / "ddp/last.pt", weights_only=True)["step"] == 1


def test_negative_time_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="time_budget"):
        train("rgdn", load_config("rgdn", "tiny"), tmp_path / "run", progress=False, time_budget=-1)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return train("rgdn", load_config("rgdn", "tiny"), tmp_path / "run", progress=False)


def test_checkpoint_metadata_and_loading(checkpoint):
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    for key in ("config", "data_recipe", "commit", "training", "sha256"):
        assert key in meta
    assert meta["training"]["steps"] == 4 and meta["training"]["wall_seconds"] > 0
    model, _ = load_model(checkpoint, MODELS["rgdn"].build, expected={"channels": 1})
    saved = torch.load(checkpoint, weights_only=True)
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    init = MODELS["rgdn"].build(load_config("rgdn", "tiny")["model"]).state_dict()
    assert any(not torch.equal(saved[k], init[k]) for k in saved)  # the trained weights, not a fresh model's


def test_corrupted_checkpoint_is_refused(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    data[-10] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(checkpoint, MODELS["rgdn"].build)


def test_checkpoint_config_mismatch_is_refused(checkpoint):
    with pytest.raises(ValueError, match="channels=1"):
        load_model(checkpoint, MODELS["rgdn"].build, expected={"channels": 3})
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"]["features"] = 16
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not the one the weights were trained with"):
        load_model(checkpoint, MODELS["rgdn"].build)
    sign_config(meta_path)  # even a (wrongly) signed config must fit the weights
    with pytest.raises(ValueError, match="does not fit"):
        load_model(checkpoint, MODELS["rgdn"].build)


@pytest.mark.parametrize("key, value", [("steps", 1), ("features", 4), ("depth", 2)])
def test_an_edited_config_is_refused_by_its_hash(checkpoint, key, value):
    """Editing what rebuilds the model (here RGDN's steps: the weights still fit, the output
    changes) is refused, naming the file — the sha256 of the weights alone would not notice."""
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["config"]["model"][key] != value
    meta["config"]["model"][key] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"config in {meta_path}.*not the one"):
        load_model(checkpoint, MODELS["rgdn"].build)


def test_the_data_or_train_recipe_is_covered_by_the_hash_too(checkpoint):
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["config"]["data"]["seed"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not the one"):
        load_model(checkpoint, MODELS["rgdn"].build)


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ('{"sha256": "x"}', "no config"),
                                         ('{"config": {"data": {}}}', "no config"), ("[]", "no config")])
def test_malformed_or_config_less_metadata_names_the_file(checkpoint, text, match):
    meta_path = checkpoint.with_suffix(".json")
    meta_path.write_text(text)
    with pytest.raises(ValueError, match=f"{meta_path}.*{match}|{match}.*{meta_path}"):
        load_model(checkpoint, MODELS["rgdn"].build)


def test_metadata_without_a_config_hash_is_refused_until_signed(checkpoint):
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["config_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no config_sha256.*checkpoints sign"):
        load_model(checkpoint, MODELS["rgdn"].build)
    from deblur_edu.zoo.checkpoints import main as checkpoints_main

    assert checkpoints_main(["sign", str(meta_path)]) == 0
    load_model(checkpoint, MODELS["rgdn"].build)


def test_every_shipped_checkpoint_carries_a_verified_config_hash():
    from deblur_edu.zoo.checkpoints import config_sha256, load_metadata

    shipped = sorted((ROOT / "deblur_edu" / "zoo" / "weights").glob("*.json"))
    assert shipped
    for path in shipped:
        meta = load_metadata(path)
        assert meta["config_sha256"] == config_sha256(meta), path


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_model(tmp_path / "nothing.pt", MODELS["rgdn"].build)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_config("rgdn", "huge")


def test_record_metrics_keeps_the_weights_hash(checkpoint, tmp_path):
    from deblur_edu.zoo.checkpoints import record_metrics

    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"results": [{"method": "rgdn", "boundary": "valid", "sigma": 0.01, "psnr": 30.0,
                                              "ssim": 0.9, "seconds_per_image": 0.1, "cases": 32}],
                                 "environment": {"device": "cpu"}}))
    meta = record_metrics(checkpoint, bench, "rgdn")
    assert meta["metrics"]["benchmark"]["valid sigma=0.01"]["psnr"] == 30.0
    load_model(checkpoint, MODELS["rgdn"].build)  # hash still verifies
    with pytest.raises(ValueError, match="no results"):
        record_metrics(checkpoint, bench, "tv")


@pytest.mark.parametrize("config", ["tiny", "hqs-tiny"])
@pytest.mark.parametrize("backward", ["jfb", "implicit-anderson"])
def test_deq_trains_through_the_same_cli_with_each_backward_mode(tmp_path, backward, config, skip_without_photos):
    from deblur_edu.train import main

    skip_without_photos(load_config("deq", config)["data"])
    assert main(["deq", "--config", config, "--backward", backward, "--out", str(tmp_path), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["config"]["model"]["backward"] == backward
    model, _ = load_model(tmp_path / "model.pt", MODELS["deq"].build)
    assert model.backward == backward and model.form == meta["config"]["model"].get("form", "gradient")


def test_the_feedforward_comparator_trains_through_the_same_cli(tmp_path):
    from deblur_edu.train import main

    assert main(["feedforward", "--config", "tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    model, meta = load_model(tmp_path / "model.pt", MODELS["feedforward"].build)
    assert meta["config"]["model"]["features"] == 8 and model.channels == 1


def test_backward_option_is_refused_for_rgdn(capsys):
    from deblur_edu.train import main

    with pytest.raises(SystemExit) as exit_:
        main(["rgdn", "--config", "tiny", "--backward", "jfb"])
    assert exit_.value.code == 2 and "deq model only" in capsys.readouterr().err


RUN_FILES = ("model.pt", "model.json", "last.pt", "log.jsonl")


def test_training_into_a_finished_run_without_resume_is_refused(checkpoint, capsys):
    """Nothing is overwritten, nothing appended: the error names --resume and --restart."""
    from deblur_edu.train import main

    out = checkpoint.parent
    before = {name: (out / name).read_bytes() for name in RUN_FILES}
    with pytest.raises(FileExistsError, match="--resume.*--restart"):
        train("rgdn", load_config("rgdn", "tiny"), out, progress=False)
    with pytest.raises(SystemExit) as exit_:
        main(["rgdn", "--config", "tiny", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--resume" in err and "--restart" in err and "Traceback" not in err
    assert {name: (out / name).read_bytes() for name in RUN_FILES} == before


def test_restart_starts_a_clean_run_in_the_same_folder(checkpoint):
    from deblur_edu.train import main

    out = checkpoint.parent
    (out / "snapshots").mkdir()
    (out / "snapshots" / "step-000001.pt").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")  # not a run file: left alone
    assert main(["rgdn", "--config", "tiny", "--out", str(out), "--no-progress", "--restart", "--steps", "2"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})  # one run, not two
    assert records[-1]["step"] == 2 and not (out / "snapshots").exists() and (out / "notes.txt").is_file()
    assert json.loads((out / "model.json").read_text())["training"]["steps"] == 2


def test_resume_and_restart_together_are_refused(tmp_path, capsys):
    from deblur_edu.train import main

    with pytest.raises(SystemExit):
        main(["rgdn", "--config", "tiny", "--out", str(tmp_path), "--resume", "--restart"])
    assert "exclude each other" in capsys.readouterr().err


def test_resume_without_last_pt_beside_old_run_files_is_refused(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"step": 25}\n')
    with pytest.raises(FileExistsError, match="no last.pt"):
        train("rgdn", load_config("rgdn", "tiny"), tmp_path, resume=True, progress=False)


def test_resume_drops_the_log_records_of_steps_that_run_again(tmp_path):
    cfg = load_config("rgdn", "tiny")
    cfg["train"].update(log_every=1, ckpt_every=2)
    train("rgdn", cfg, tmp_path, progress=False, stop_after=3)  # last.pt at step 3 (the stop), log 1..3
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["step"] = 2  # as if the run had died after step 3 with its last checkpoint at step 2
    torch.save(state, tmp_path / "last.pt")
    train("rgdn", cfg, tmp_path, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_zero_or_negative_steps_are_refused(tmp_path, steps, capsys):
    from deblur_edu.train import main

    with pytest.raises(SystemExit) as exit_:
        main(["rgdn", "--config", "tiny", "--out", str(tmp_path / "run"), "--steps", steps, "--no-progress"])
    assert exit_.value.code == 2 and "--steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    cfg = load_config("rgdn", "tiny")
    cfg["train"]["steps"] = int(steps)
    with pytest.raises(ValueError, match="train.steps must be an integer >= 1"):
        train("rgdn", cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_validation_psnr_is_logged_with_the_training_time(tmp_path):
    cfg = load_config("rgdn", "tiny")
    cfg["train"].update(val_every=2, val_size=4)
    train("rgdn", cfg, tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    validated = [r for r in records if "val_psnr" in r]
    assert [r["step"] for r in validated] == [2, 4]
    assert all(5 < r["val_psnr"] < 60 for r in validated)
    # every row carries the training time without validation, not only the validated ones
    assert all(0 < r["train_seconds"] <= r["seconds"] for r in records)
    assert [r["train_seconds"] for r in records] == sorted(r["train_seconds"] for r in records)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert 0 < meta["training"]["train_seconds"] <= meta["training"]["wall_seconds"]


def test_validation_samples_are_not_training_samples():
    cfg = load_config("rgdn", "tiny")["data"]
    val = validation_batch(cfg, 4, torch.device("cpu"))
    from deblur_edu.synthesis import BlurDataset

    train_set = BlurDataset(**cfg)
    for i in range(len(train_set)):
        assert not any(torch.equal(train_set[i]["sharp"], v) for v in val["sharp"])


PRESETS = sorted((ROOT / "deblur_edu" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_builds_its_model_and_takes_a_finite_loss_on_its_data(path, skip_without_photos, small_bank):
    """Each shipped YAML — also the GPU presets that never run here — builds its model, and
    one batch of its own data recipe (patches shrunk to 32² for speed; a first-stage bank of 16) gives a finite loss."""
    model_name = next(m for m in sorted(MODELS, key=len, reverse=True) if path.stem.startswith(m + "-"))
    cfg = load_config(model_name, str(path))
    torch.manual_seed(0)
    model = MODELS[model_name].build(cfg["model"])
    skip_without_photos(cfg["data"])
    batch = validation_batch(small_bank({**cfg["data"], "patch": 32}), 2, torch.device("cpu"))
    loss = MODELS[model_name].loss(model, batch)
    assert torch.isfinite(loss) and loss.ndim == 0


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_takes_a_mixed_precision_step(model_name, skip_without_photos, small_bank):
    """The loop's ``amp`` (float16 autocast + gradient scaling) is for CUDA; float16 autocast on
    the CPU runs the same op lists here, so a model that breaks under it (a dtype clash, an
    FFT or an inverse in float16) fails now rather than on the first GPU."""
    cfg = load_config(model_name, "tiny")
    torch.manual_seed(0)
    model = MODELS[model_name].build(cfg["model"])
    skip_without_photos(cfg["data"])
    batch = validation_batch(small_bank({**cfg["data"], "patch": 32}), 2, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.float16):
        loss = MODELS[model_name].loss(model, batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)


def test_the_training_loss_tells_non_blind_models_sigma_and_no_one_else():
    from deblur_edu.zoo.registry import NON_BLIND, deblurred

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, y, k, *rest):
            seen.append(rest)
            return y

    batch = {"blurred": torch.rand(2, 1, 8, 8), "kernel": torch.rand(2, 1, 3, 3), "sigma": torch.tensor([0.01, 0.02])}
    deblurred(Probe(), batch)
    assert seen.pop() == ()
    for cls in NON_BLIND:
        probe = type("P", (cls,), {"__init__": torch.nn.Module.__init__, "forward": Probe.forward})()
        deblurred(probe, batch)
        assert seen.pop()[0] is batch["sigma"]

        class Wrapped(torch.nn.Module):  # what DistributedDataParallel looks like from outside: .module inside
            def __init__(self):
                super().__init__()
                self.module = probe

            def forward(self, *args, **kwargs):
                return self.module(*args, **kwargs)

        deblurred(Wrapped(), batch)
        assert seen.pop()[0] is batch["sigma"]


def test_rgdn_recursive_supervision_tells_rgdn_sigma():
    from deblur_edu.learned import RGDN
    from deblur_edu.zoo.registry import recursive_supervision_loss

    seen = []

    class Probe(RGDN):
        def forward(self, y, k, sigma=None, **options):
            seen.append((sigma, options))
            return super().forward(y, k, sigma, **options)

    k = torch.rand(2, 1, 3, 3)
    batch = {"blurred": torch.rand(2, 1, 16, 16), "kernel": k / k.sum((-2, -1), keepdim=True), "sharp": torch.rand(2, 1, 16, 16),
             "sigma": torch.tensor([0.01, 0.02])}
    assert torch.isfinite(recursive_supervision_loss(Probe(features=4, depth=2, steps=2), batch))
    assert seen[0][0] is batch["sigma"] and seen[0][1] == {"return_all": True}


def test_the_hqs_deq_its_comparator_and_rgdn_start_from_the_whole_shipped_denoiser():
    """``denoiser_from: denoiser-cpu`` copies chapter 2's denoiser into the model (source part "")."""
    from deblur_edu.zoo import pretrained
    from deblur_edu.zoo.shipped import warm_start

    reference = pretrained("denoiser-cpu").state_dict()
    for model_name, preset in (("deq", "hqs-cpu"), ("feedforward", "hqs-cpu"), ("rgdn", "denoiser-cpu")):
        cfg = load_config(model_name, preset)
        model = MODELS[model_name].build(cfg["model"])
        assert warm_start(model_name, model, cfg["model"]) == ["denoiser from denoiser-cpu"]
        assert all(torch.equal(v, reference[n]) for n, v in model.denoiser.state_dict().items())


def test_a_warm_start_into_a_part_the_config_leaves_out_says_what_to_set():
    from deblur_edu.zoo.shipped import warm_start

    model = MODELS["rgdn"].build({"features": 4, "depth": 2})  # the plain prior: no denoiser to copy into
    with pytest.raises(ValueError, match="denoiser_from: denoiser-cpu needs this model's denoiser.*set prior: denoiser"):
        warm_start("rgdn", model, {"denoiser_from": "denoiser-cpu"})
