"""Chapter 5's shipped reblurring checkpoints and results: complete metadata, an independent judge, a control that
differs by the reblurring loss only, generated tables."""

import json
from pathlib import Path

import pytest
import torch

from deblur_edu.experiments import ch5_reblur_eval as reblur_eval
from deblur_edu.zoo import WEIGHTS_DIR, pretrained
from deblur_edu.bench.methods import get_method

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["reblur-cpu", "reblur-judge", "reblur-module-cpu", "reblur-l1-ft-cpu", "reblur-l1-cpu"]


def meta(name: str) -> dict:
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


def evaluation() -> dict:
    return json.loads((ROOT / "benchmarks/reblur.json").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_has_metadata_and_loads(name):
    m = meta(name)
    for key in ("config", "data_recipe", "commit", "training", "sha256"):
        assert m[key], key
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 8_000_000
    assert pretrained(name).channels == 1


def test_the_models_are_what_their_names_say():
    rb, judge, module, control = (meta(n)["config"] for n in SHIPPED[:4])
    for cfg in (rb, judge, module, control):  # all on chapter 5's two-stage deblurrer and its bank of photographs
        assert cfg["model"]["two_stage"] is True and cfg["model"]["refiner_from"] == "blind-refiner-cpu"
        assert cfg["data"]["task"] == "refine"
    assert rb["model"]["reblur_weight"] > 0 and pretrained("reblur-cpu").reblurrer is not None
    # reblur and its control: the same deblurrer fine-tuned with the same data, draws, seed and schedule;
    # the reblurring loss (and its frozen critic) is the only difference
    assert rb["data"] == control["data"] and rb["train"] == control["train"]
    assert control["model"]["reblur_weight"] == 0 and pretrained("reblur-l1-ft-cpu").reblurrer is None
    deblurrer_only = lambda m: {k: v for k, v in m.items() if not k.startswith("reblur") and k != "frozen"}
    assert deblurrer_only(rb["model"]) == deblurrer_only(control["model"])
    # the critic and the judge: trained alone against the frozen deblurrer; the judge from another seed, other draws
    for cfg in (module, judge):
        assert cfg["model"]["frozen"] == "deblurrer" and cfg["model"]["reblurrer"] is True
        assert cfg["model"]["reblur_weight"] == 0
    assert judge["train"]["seed"] != module["train"]["seed"]
    assert judge["data"].get("draw_seed", 0) != module["data"].get("draw_seed", 0)
    assert rb["model"]["frozen"] == "reblurrer" and rb["model"]["reblurrer_from"] == "reblur-module-cpu"


def test_the_frozen_critic_is_the_module_and_no_module_changed_its_deblurrer():
    critic = pretrained("reblur-cpu").reblurrer.state_dict()
    module = pretrained("reblur-module-cpu").reblurrer.state_dict()
    assert critic.keys() == module.keys() and all(torch.equal(critic[k], module[k]) for k in critic)
    base = pretrained("blind-refiner-cpu").state_dict()
    for name in ("reblur-module-cpu", "reblur-judge"):
        d = pretrained(name).deblurrer.state_dict()
        assert all(torch.equal(base[k], d[k]) for k in base), name


def test_each_module_records_how_well_it_reblurs():
    """The evaluation's measurement of each module on the test cases is what its metadata records."""
    out = evaluation()
    for role, name in (("critic", "reblur-module-cpu"), ("judge", "reblur-judge")):
        recorded = meta(name)["metrics"]
        assert recorded["reblurring"] == out["modules"][role] and recorded["setting"]["split"] == "blind"


def test_the_trend_is_reported_only_with_a_judge_that_reblurs():
    out = evaluation()
    assert (out["trend"] is not None) == (out["modules"]["judge"]["ratio"] <= reblur_eval.REBLURS_RATIO)


def test_the_intervals_are_those_of_the_per_case_scores():
    from deblur_edu.metrics import paired_bootstrap

    out = evaluation()
    assert out["setting"]["cases"] == 32 and out["setting"]["split"] == "blind"
    for d in out["differences"]:
        for m in ("psnr", "blur_effect", "reblur_gap"):
            again = paired_bootstrap(out["per_case"][d["baseline"]][m], out["per_case"][d["treatment"]][m])
            assert d[m]["low"] == pytest.approx(again.low) and d[m]["high"] == pytest.approx(again.high)


@pytest.mark.parametrize("method", ["reblur-l1-ft", "reblur", "reblur-tta"])
def test_shipped_methods_deblur(method, data_dir):
    """On the blind split's first shake (13 px, its four images, never trained on), each shipped deblurrer's outputs,
    aligned as the blind benchmark aligns them, are on average closer to the sharp images than the blurry inputs are
    (on one image of the four the kernel estimate fails, and so does every second stage)."""
    from deblur_edu.bench.protocol import load_benchmark, score_crop
    from deblur_edu.metrics import psnr
    from deblur_edu.metrics.alignment import align_to

    bench = load_benchmark("blind", data_dir=data_dir)
    y, x = bench.batch(0, "valid", 0.01)
    with torch.no_grad():  # as the bench runs every method (test-time adaptation turns gradients back on)
        out = get_method(method)(y, bench.kernels[0], 0.01)
    r = score_crop(bench.kernels[0])
    assert out.shape == y.shape and torch.isfinite(out).all()
    aligned = align_to(out.clamp(0, 1), x, 4, r)[0].clamp(0, 1)
    assert float(psnr(aligned, x, crop=r + 5).mean()) > float(psnr(y.clamp(0, 1), x, crop=r + 5).mean()) + 1


def test_readme_reblur_block_is_generated_from_the_committed_json():
    readme = (ROOT / "README.md").read_text()
    assert f"<!-- reblur:start -->\n{reblur_eval.markdown(evaluation())}\n<!-- reblur:end -->" in readme


def test_the_adaptation_settings_are_those_chosen_on_the_tune_split():
    from deblur_edu.bench.methods import REBLUR_TTA

    sweep = json.loads((ROOT / "benchmarks/reblur_tta_tune.json").read_text())
    assert sweep["setting"]["split"] == "tune"
    assert REBLUR_TTA == {"steps": sweep["setting"]["steps"], "lr": sweep["chosen_lr"],
                          "parameters": sweep["setting"]["parameters"]}
    assert evaluation()["setting"]["tta"] == REBLUR_TTA
