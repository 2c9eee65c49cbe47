"""Assignments: student versions are generated from the sources, and their checks fail on the blanks."""

import importlib.util
from pathlib import Path

import nbformat
import pytest
import torch

from deblur_edu.course import grading
from deblur_edu.physics import psf2otf

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "tutorials/source").glob("*.ipynb"))


def _make_student():
    spec = importlib.util.spec_from_file_location("make_student", ROOT / "tutorials/make_student.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_student_versions_are_up_to_date(tmp_path):
    written = _make_student().main(tmp_path)
    assert [p.name for p in written] == [p.name for p in SOURCES]
    for p in written:
        committed = nbformat.read(ROOT / "tutorials/student" / p.name, as_version=4)
        fresh = nbformat.read(p, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in fresh.cells], \
            "regenerate with: python tutorials/make_student.py"


def test_student_versions_hide_every_solution():
    for p in (ROOT / "tutorials/student").glob("*.ipynb"):
        text = p.read_text()
        assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_student_checks_fail_on_the_blanks(tmp_path, source):
    """Run the student notebook: every check cell must fail (a check that cannot fail is a defect)."""
    from nbclient import NotebookClient

    nb = _make_student().student_version(nbformat.read(source, as_version=4))
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    check_cells = [c for c in nb.cells if c.cell_type == "code" and "check_" in c.source and "import" in c.source]
    assert check_cells
    for cell in check_cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors, f"this check passed on an empty student solution:\n{cell.source}"
        assert errors[0].ename in ("NameError", "NotImplementedError", "AssertionError")


def test_checks_pass_on_the_reference():
    grading.check_psf2otf(psf2otf)
    grading.check_admm_step(grading.reference_admm_step)


def test_psf2otf_check_rejects_a_missing_roll():
    def no_roll(k, shape):
        padded = k.new_zeros(*k.shape[:-2], *shape)
        padded[..., : k.shape[-2], : k.shape[-1]] = k
        return torch.fft.rfft2(padded)

    with pytest.raises(AssertionError, match="roll its centre"):
        grading.check_psf2otf(no_roll)


def test_adjoint_check_rejects_convolution_as_adjoint():
    def blur(x, k):
        return torch.fft.irfft2(psf2otf(k, x.shape[-2:]) * torch.fft.rfft2(x), s=x.shape[-2:])

    with pytest.raises(AssertionError, match="conj"):
        grading.check_adjoint(blur, blur)  # the forward map is not its own adjoint


def test_wiener_check_rejects_identity_regulariser():
    from deblur_edu.classical import wiener

    with pytest.raises(AssertionError, match="Wiener"):
        grading.check_wiener(lambda y, k, b: wiener(y, k, b, "identity"))


def test_admm_check_rejects_a_stale_z_step():
    def stale(x, z, u, y, k, lam, rho):
        x_new, _, _ = grading.reference_admm_step(x, z, u, y, k, lam, rho)
        z_new = grading.prox_tv(grading.grad(x) + u, lam / rho)  # uses the old x
        return x_new, z_new, u + grading.grad(x_new) - z_new

    with pytest.raises(AssertionError, match="z-step"):
        grading.check_admm_step(stale)


def test_rgdn_checks_pass_on_the_reference_and_the_library():
    from deblur_edu.learned import RGDN

    grading.check_data_gradient(lambda x, y, k: RGDN.data_gradient(grading.Blur(k, "valid"), x, y))
    grading.check_rgdn_step(grading.reference_rgdn_step)


def test_data_gradient_check_rejects_the_forward_map_as_adjoint():
    def wrong(x, y, k):
        A = grading.Blur(k, "valid")
        residual = grading.Blur(k, "circular")(grading.Blur(k, "circular")(x))  # blur twice, no adjoint
        return residual - A.adjoint(y)

    with pytest.raises(AssertionError, match="data gradient"):
        grading.check_data_gradient(wrong)


def test_rgdn_step_check_rejects_scaling_only_the_gradient():
    def wrong(x, y, k, H, R, D):
        A = grading.Blur(k, "valid")
        return x + D(H(A.adjoint(A(x) - y))) - R(x)

    with pytest.raises(AssertionError, match="RGDN step"):
        grading.check_rgdn_step(wrong)


def test_deq_checks_pass_on_the_reference():
    from deblur_edu.learned.fixed_point import picard

    grading.check_anderson_step(grading.reference_anderson_step)

    def jfb(T, x0):
        with torch.no_grad():
            x_star, _ = picard(T, x0, tol=1e-12, max_iter=500)
        return T(x_star)

    grading.check_jfb(jfb)


def test_anderson_check_rejects_a_swapped_residual():
    with pytest.raises(AssertionError, match="Anderson"):
        grading.check_anderson_step(lambda X, F: grading.reference_anderson_step(F, X))


def test_jfb_check_rejects_the_unrolled_gradient():
    def unrolled(T, x0):
        x = x0
        for _ in range(200):  # converges, but backprop goes through every iteration
            x = T(x)
        return T(x)

    with pytest.raises(AssertionError, match="JFB gradient"):
        grading.check_jfb(unrolled)


# ----- assignment 5 -------------------------------------------------------------------------
import torch.nn.functional as F  # noqa: E402

from deblur_edu.learned.reblur import reblur_module_loss, supervised_reblur_loss  # noqa: E402


def test_reblur_checks_pass_on_the_reference():
    grading.check_reblur_module_loss(reblur_module_loss)
    grading.check_supervised_reblur_loss(supervised_reblur_loss)
    grading.check_tta_step(grading.reference_tta_step)


def test_reblur_module_check_rejects_a_loss_that_trains_the_deblurrer_or_blurs_clean_images():
    no_detach = lambda M_R, d, b, ds: F.l1_loss(M_R(d), b) + F.l1_loss(M_R(ds), ds)
    with pytest.raises(AssertionError, match="detach"):
        grading.check_reblur_module_loss(no_detach)
    wrong_target = lambda M_R, d, b, ds: F.l1_loss(M_R(d.detach()), b) + F.l1_loss(M_R(ds.detach()), b)
    with pytest.raises(AssertionError, match="L_blur"):
        grading.check_reblur_module_loss(wrong_target)


def test_supervised_check_rejects_a_plain_l1_target_and_a_moving_target():
    with pytest.raises(AssertionError, match="supervised"):
        grading.check_supervised_reblur_loss(lambda M_R, d, s: F.l1_loss(M_R(d), s))
    with pytest.raises(AssertionError, match="fixed target"):
        grading.check_supervised_reblur_loss(lambda M_R, d, s: F.l1_loss(M_R(d), M_R(s)))


def test_tta_check_rejects_a_missing_stop_gradient_and_a_trained_judge():
    def no_stop_gradient(M_D, M_R, y, opt):
        from deblur_edu.learned.reblur import frozen

        with frozen(M_R):
            out = M_D(y)
            loss = F.l1_loss(M_R(out), out)
            opt.zero_grad()
            loss.backward()
        opt.step()
        return float(loss.detach())

    with pytest.raises(AssertionError, match="stop-gradient"):
        grading.check_tta_step(no_stop_gradient)

    def unfrozen(M_D, M_R, y, opt):
        out = M_D(y)
        loss = F.l1_loss(M_R(out), out.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    with pytest.raises(AssertionError, match="frozen"):
        grading.check_tta_step(unfrozen)


# ----- assignment 6 -------------------------------------------------------------------------
def reference_forward(e, state, updates, alphas, finer_from_new=True):
    new = []
    for level, (update, alpha) in enumerate(zip(updates, alphas)):
        finer = e if level == 0 else (new if finer_from_new else state)[level - 1]
        coarser = state[level + 1] if level + 1 < len(state) else None
        new.append(alpha * state[level] + update(finer, coarser))
    return new


def reference_inverse(e, new, updates, alphas, coarse_first=True, divide=True):
    old = [None] * len(new)
    for level in (reversed(range(len(new))) if coarse_first else range(len(new))):
        finer = e if level == 0 else new[level - 1]
        coarser = None if level + 1 == len(new) else (old if coarse_first else new)[level + 1]
        rest = new[level] - updates[level](finer, coarser)
        old[level] = rest / alphas[level] if divide else rest
    return old


def test_column_checks_pass_on_the_reference():
    grading.check_column_forward(reference_forward)
    grading.check_column_inverse(reference_inverse)


def test_column_forward_check_rejects_the_old_finer_level():
    with pytest.raises(AssertionError, match="new"):
        grading.check_column_forward(lambda e, s, u, a: reference_forward(e, s, u, a, finer_from_new=False))


def test_column_inverse_check_rejects_fine_to_coarse_and_a_missing_alpha():
    with pytest.raises(AssertionError, match="coarsest level down"):
        grading.check_column_inverse(lambda e, n, u, a: reference_inverse(e, n, u, a, coarse_first=False))
    with pytest.raises(AssertionError, match="divide by α"):
        grading.check_column_inverse(lambda e, n, u, a: reference_inverse(e, n, u, a, divide=False))
