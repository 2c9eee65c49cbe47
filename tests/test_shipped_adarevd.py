"""Chapter 6's shipped checkpoint and measurements: metadata, a really frozen encoder, generated tables."""

import json
from pathlib import Path

import torch

from deblur_edu.experiments import ch6_adarevd_eval as adarevd_eval
from deblur_edu.zoo import WEIGHTS_DIR, pretrained
from deblur_edu.bench.methods import get_method

ROOT = Path(__file__).resolve().parent.parent
RESULTS = json.loads((ROOT / "benchmarks" / "adarevd.json").read_text())
MEMORY = json.loads((ROOT / "benchmarks" / "reversible_cost.json").read_text())


def meta() -> dict:
    return json.loads((WEIGHTS_DIR / "adarevd-cpu.json").read_text())


def test_the_checkpoint_has_metadata_and_loads():
    m = meta()
    for key in ("config", "data_recipe", "commit", "training", "sha256", "metrics"):
        assert m[key], key
    # the largest shipped checkpoint: 4 columns at the encoder's widths (up to 128 channels), plus the encoder
    assert (WEIGHTS_DIR / "adarevd-cpu.pt").stat().st_size < 16_000_000
    model = adarevd_eval.load_adarevd(WEIGHTS_DIR / "adarevd-cpu")
    assert len(model.decoder.columns) == m["config"]["model"]["columns"]


def test_the_encoder_is_chapter_5s_refiner_unchanged_by_training():
    model = adarevd_eval.load_adarevd(WEIGHTS_DIR / "adarevd-cpu")
    assert meta()["config"]["model"]["refiner_from"] == "blind-refiner-cpu" and model.two_stage
    unet = pretrained("blind-refiner-cpu").unet
    for (name, a), b in zip(model.decoder.encoder.state_dict().items(), unet.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_recorded_metrics_are_the_measurement_files():
    recorded = meta()["metrics"]
    measured = {k: v for k, v in RESULTS["sub_decoders"].items() if k != "cases"}
    assert recorded["sub_decoders"] == measured and recorded["exiting"] == RESULTS["exiting"]
    assert recorded["classifier"] == RESULTS["classifier"]
    assert RESULTS["setting"]["checkpoint"].endswith("adarevd-cpu.pt") and RESULTS["setting"]["split"] == "blind"
    assert RESULTS["setting"]["base"] == "blind-refiner-cpu"


def test_the_readme_block_is_generated_from_them():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- adarevd:start -->\n", 1)[1].split("\n<!-- adarevd:end -->", 1)[0]
    assert block == adarevd_eval.markdown(RESULTS, MEMORY), "regenerate with: make adarevd-checkpoint"


def test_the_benchmark_method_runs_blind_tv_then_every_sub_decoder():
    from deblur_edu.data import centre_crop, sample_image

    y = centre_crop(sample_image("camera"), 64)
    model = adarevd_eval.load_adarevd(WEIGHTS_DIR / "adarevd-cpu")
    with torch.no_grad():
        first = get_method("blind-tv")(y, None, 0.01)
        assert torch.allclose(get_method("adarevd")(y, None, 0.01), model.estimates(y, first=first)[-1])
