"""CUDA paths: each runs on a GPU machine and skips elsewhere (this repository's CI has no GPU;
`.ci/gpu-check` runs them, with the GPU measurements, when one is lent).

They check what the CPU tests cannot: the learned models give the CPU's answer on CUDA, and the
training loop's mixed precision (float16 autocast + gradient scaling, CUDA only) trains every
model with finite losses.
"""

import json

import pytest
import torch

from deblur_edu.kernels import motion
from deblur_edu.learned import DEQ
from deblur_edu.zoo.registry import MODELS
from deblur_edu.train import load_config, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_the_deq_solves_to_the_same_equilibrium_on_cuda():
    torch.manual_seed(0)
    net = DEQ(features=8, depth=3, max_iter=30, tol=1e-4)
    y = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    k = motion(9, 30)
    on_cpu = net(y, k).detach()
    on_gpu = net.cuda()(y.cuda(), k.cuda()).detach().cpu()
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_trains_with_mixed_precision_on_cuda(model_name, tmp_path, skip_without_photos, small_bank):
    cfg = load_config(model_name, "tiny")
    skip_without_photos(cfg["data"])
    cfg["data"] = small_bank(cfg["data"])
    cfg["train"]["amp"] = True
    assert train(model_name, cfg, tmp_path / "run", device="cuda", progress=False) is not None
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
