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


def test_the_encoder_is_chapter_5s_unchanged_by_training():
    model = adarevd_eval.load_adarevd(WEIGHTS_DIR / "adarevd-cpu")
    assert meta()["config"]["model"]["encoder"] == "reblur-l1-cpu"
    unet = pretrained("reblur-l1-cpu").deblurrer
    for (name, a), b in zip(model.decoder.encoder.state_dict().items(), unet.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_recorded_metrics_are_the_measurement_files():
    recorded = meta()["metrics"]
    assert recorded["sub_decoders"] == RESULTS["sub_decoders"] and recorded["exiting"] == RESULTS["exiting"]
    assert RESULTS["setting"]["checkpoint"].endswith("adarevd-cpu.pt")


def test_the_readme_block_is_generated_from_them():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- adarevd:start -->\n", 1)[1].split("\n<!-- adarevd:end -->", 1)[0]
    assert block == adarevd_eval.markdown(RESULTS, MEMORY), "regenerate with: make adarevd-checkpoint"


def test_the_benchmark_method_runs_every_sub_decoder():
    y = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    model = adarevd_eval.load_adarevd(WEIGHTS_DIR / "adarevd-cpu")
    with torch.no_grad():
        assert torch.allclose(get_method("adarevd")(y, None, 0.01, {}), model.estimates(y)[-1])
