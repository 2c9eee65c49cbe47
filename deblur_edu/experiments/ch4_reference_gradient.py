r"""Chapter 4's yardstick: the exact gradient of a small DEQ, by unrolling its map to convergence.

    python -m deblur_edu.experiments.ch4_reference_gradient [--out deblur_edu/experiments/ch4_reference_gradient.pt]

Every backward mode of :class:`~deblur_edu.learned.DEQ` approximates ∂ℓ/∂θ at the equilibrium.
On a float64 problem small enough to unroll — two 12×12 images, a 5-px motion blur, a 3-layer
4-channel denoiser, step 0.5 — 300 plain iterations from the Tikhonov start reach the fixed point
to machine precision, and backpropagating through all of them gives the exact gradient. That
takes most of a minute on a CPU, so it is computed once by this command and stored (a few
kilobytes, shipped with the package): chapter 4 compares every backward mode with it, and the
tests check the stored vector against a fresh computation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..kernels import motion
from ..learned import DEQ
from ..runtime import git_commit

REFERENCE_FILE = Path(__file__).with_name("ch4_reference_gradient.pt")
#: the unrolled iterations of the reference: enough for the fixed point to converge to machine precision
UNROLL_STEPS = 300


def problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, k, target)``: the seeded float64 problem every backward mode is compared on."""
    k = motion(5, 30, dtype=torch.float64)
    y = torch.rand(2, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.rand(2, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return y, k, target


def small_deq(backward: str = "jfb", form: str = "gradient", **options) -> DEQ:
    """The problem's DEQ (seeded weights, float64, eval mode: spectral normalisation fixed, so T is one map)."""
    torch.manual_seed(0)
    options = {"step_size": 0.5, **options}
    net = DEQ(features=4, depth=3, form=form, backward=backward, tol=1e-12, max_iter=500, **options)
    return net.double().eval()


def parameter_gradient(backward: str, form: str = "gradient", **options) -> torch.Tensor:
    """∂ℓ/∂θ of ``ℓ = ‖DEQ(y, k) − target‖²`` by the backward mode ``backward``, flattened."""
    y, k, target = problem()
    net = small_deq(backward, form, **options)
    ((net(y, k) - target) ** 2).sum().backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def unrolled_gradient(form: str = "gradient", **options) -> torch.Tensor:
    """The exact gradient: backpropagation through :data:`UNROLL_STEPS` plain iterations."""
    return parameter_gradient("unrolled", form, unroll_steps=UNROLL_STEPS, **options)


def load_reference(path: str | Path = REFERENCE_FILE) -> torch.Tensor:
    """The stored :func:`unrolled_gradient` of the gradient form (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; compute it with python -m deblur_edu.experiments.ch4_reference_gradient")
    return torch.load(path, weights_only=True)["gradient"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur_edu.experiments.ch4_reference_gradient",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REFERENCE_FILE))
    args = p.parse_args(argv)
    gradient = unrolled_gradient()
    torch.save({"gradient": gradient, "unroll_steps": UNROLL_STEPS, "commit": git_commit()}, args.out)
    print(f"wrote {args.out}: {gradient.numel()} parameters, norm {float(gradient.norm()):.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
