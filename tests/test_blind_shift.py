"""What a kernel's place in its frame costs a blind method (python -m deblur_edu.experiments.ch5_blind_shift)."""

import re
from pathlib import Path

import torch

from deblur_edu import results
from deblur_edu.classical.blind_deconvolution import centre_of_mass
from deblur_edu.experiments.ch5_blind_shift import offsets, recentred

ROOT = Path(__file__).resolve().parents[1]


def test_recentred_puts_the_centre_of_mass_in_the_middle_and_keeps_the_kernel():
    k = torch.zeros(1, 1, 9, 9)
    k[0, 0, 1, 5:8] = torch.tensor([0.2, 0.5, 0.3])  # off centre by (-3, +2.1)
    (rows, cols), = offsets([k])
    assert abs(rows + 3) < 1e-6 and abs(cols - 2.1) < 1e-6
    moved = recentred(k)
    assert moved.shape[-1] == 17 and abs(float(moved.sum()) - 1) < 1e-6
    for dim in (-2, -1):
        assert abs(float(centre_of_mass(moved.double(), dim))) < 1e-6


def test_the_readme_quotes_the_measured_figures():
    measured = results.load_json("blind_shift.json")["psnr"]["0.01"]
    text = " ".join((ROOT / "README.md").read_text().split())
    quoted = re.search(r"scores (\d+\.\d\d) dB at σ = 0\.01 unaligned and (\d+\.\d\d) aligned, against (\d+\.\d\d) "
                       r"for the kernel as given and (\d+\.\d\d) aligned; the last (\d+\.\d\d) dB", text)
    assert quoted, "the README's sentence on Levin's off-centre kernels is gone or reworded"
    keys = ("re-centred", "re-centred, aligned", "as given", "as given, aligned")
    assert [float(v) for v in quoted.groups()[:4]] == [round(measured[key], 2) for key in keys]
    assert float(quoted.group(5)) == round(measured["as given, aligned"] - measured["re-centred, aligned"], 2)
