"""Chapter 5's building blocks: the blind U-Net, the reblurring module, its losses, and
test-time adaptation with its guard."""

import pytest
import torch
import torch.nn.functional as F

from deblur_edu.learned import ReblurDeblurrer, Reblurrer, UNet, adapt_at_test_time
from deblur_edu.learned.reblur import (
    adapted_parameters,
    frozen,
    reblur_module_loss,
    reblur_training_loss,
    self_supervised_reblur_loss,
    supervised_reblur_loss,
)


def images(seed: int, n: int = 2, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def silence(module: torch.nn.Module) -> None:
    """Zero the last convolution: a residual network becomes the identity."""
    last = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)


def test_unet_keeps_any_size_and_is_its_encoder_then_decoder():
    torch.manual_seed(0)
    net = UNet(width=4, levels=2)
    y = torch.rand(1, 1, 28, 32)  # divisible by 4: no padding, forward = y + decode(encode(y))
    assert torch.allclose(net(y), y + net.decode(net.encode(y)))
    assert net(torch.rand(2, 1, 29, 31)).shape == (2, 1, 29, 31)
    assert [f.shape[1] for f in net.encode(y)] == [4, 8, 16]


def test_unet_refuses_wrong_channels():
    with pytest.raises(ValueError, match="built for 1 channel"):
        UNet(width=4)(torch.rand(1, 3, 16, 16))


def test_frozen_blocks_gradients_and_restores_the_flags():
    M_R = Reblurrer(features=4, blocks=1)
    M_R.body[0].weight.requires_grad_(False)  # a flag that must come back as it was
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    with frozen(M_R):
        M_R(x).sum().backward()
    assert all(p.grad is None for p in M_R.parameters()) and x.grad is not None
    assert [p.requires_grad for p in M_R.parameters()][0] is False
    assert all(p.requires_grad for p in list(M_R.parameters())[1:])


def test_an_identity_reblurrer_finds_nothing_to_amplify():
    M_R = Reblurrer(features=4, blocks=1)
    silence(M_R)
    x, s = images(0), images(1)
    assert float(self_supervised_reblur_loss(M_R, x).detach()) == 0.0
    assert torch.isclose(supervised_reblur_loss(M_R, x, s), F.l1_loss(x, s))


def test_each_network_receives_only_its_own_objective():
    """One loss, two parameter sets: M_D's gradient is that of L1 + w·L_R (M_R frozen), M_R's
    is that of L_blur + L_sharp on the detached deblurred images."""
    torch.manual_seed(0)
    model = ReblurDeblurrer(width=4, levels=1, reblur_weight=0.5, reblur_features=4, reblur_blocks=1)
    b, s = images(2), images(3)
    reblur_training_loss(model, b, s).backward()
    together = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    deblurred = model.deblurrer(b)
    with frozen(model.reblurrer):
        (F.l1_loss(deblurred, s) + 0.5 * supervised_reblur_loss(model.reblurrer, deblurred, s)).backward()
    with torch.no_grad():
        deblurred, deblurred_sharp = model.deblurrer(b), model.deblurrer(s)
    reblur_module_loss(model.reblurrer, deblurred, b, deblurred_sharp).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, together[name], atol=1e-7), name


def test_l1_only_has_no_reblurrer_and_bad_settings_are_refused():
    assert ReblurDeblurrer(width=4, reblur_weight=0.0).reblurrer is None
    with pytest.raises(ValueError, match="reblur_weight"):
        ReblurDeblurrer(reblur_weight=-1.0)
    with pytest.raises(ValueError, match="needs the reblurring module"):
        ReblurDeblurrer(reblur_weight=1.0, reblurrer=False)


def test_a_judge_reblurrer_learns_without_touching_the_deblurrer():
    """reblur_weight = 0 with a reblurrer: the deblurrer's gradient is plain L1."""
    torch.manual_seed(0)
    judged = ReblurDeblurrer(width=4, levels=1, reblurrer=True, reblur_features=4, reblur_blocks=1)
    b, s = images(7), images(8)
    reblur_training_loss(judged, b, s).backward()
    grads = {n: p.grad.clone() for n, p in judged.deblurrer.named_parameters()}
    assert all(p.grad is not None for p in judged.reblurrer.parameters())
    judged.zero_grad()
    F.l1_loss(judged.deblurrer(b), s).backward()
    assert all(torch.allclose(p.grad, grads[n]) for n, p in judged.deblurrer.named_parameters())


class PullToGrey(torch.nn.Module):
    """A stand-in reblurrer ``M_R(x) = x + (x − ½)``: the self-supervised loss is ``‖x − ½‖₁``,
    which adaptation can lower by moving the output towards grey."""

    def forward(self, x):
        return x + (x - 0.5)


def test_test_time_adaptation_lowers_the_loss_and_leaves_the_model_alone():
    torch.manual_seed(0)
    M_D = UNet(width=4, levels=1)
    before = {n: p.clone() for n, p in M_D.state_dict().items()}
    y = images(4, n=1)
    x_hat, info = adapt_at_test_time(M_D, PullToGrey(), y, steps=5, lr=1e-3)
    assert x_hat.shape == y.shape
    assert info.losses == sorted(info.losses, reverse=True) and info.losses[-1] < info.losses[0]
    assert info.kept_step == 5 and info.stopped == "steps done"
    assert float((x_hat - 0.5).abs().mean()) == pytest.approx(info.losses[-1])
    assert all(torch.equal(p, before[n]) for n, p in M_D.state_dict().items())


def test_the_guard_stops_a_diverging_adaptation_and_keeps_the_output_from_before():
    torch.manual_seed(0)
    M_D, M_R = UNet(width=4, levels=1), Reblurrer(features=4, blocks=1)
    y = images(5, n=1)
    # a tight tolerance: the loss may exceed its start by 1 % only; a large step soon breaks that
    x_hat, info = adapt_at_test_time(M_D, M_R, y, steps=20, lr=1e-3, tolerance=0.01)
    assert info.stopped.startswith("loss diverged")
    assert info.losses[-1] > 1.01 * info.losses[0] and len(info.losses) == info.kept_step + 2
    assert all(v <= 1.01 * info.losses[0] for v in info.losses[: info.kept_step + 1])
    if info.kept_step == 0:
        with torch.no_grad():
            assert torch.allclose(x_hat, M_D(y))


def test_a_step_moves_the_output_against_what_the_reblurrer_adds():
    # M_R adds +0.1 everywhere: the stop-gradient step must lower the output (sharpening = undoing M_R)
    class AddConstant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.tensor(0.1))

        def forward(self, z):
            return z + self.c

    torch.manual_seed(0)
    M_D, y = UNet(width=4, levels=1), images(7, n=1)
    x_hat, info = adapt_at_test_time(M_D, AddConstant(), y, steps=3, lr=1e-3, parameters="head")
    with torch.no_grad():
        assert float(x_hat.mean()) < float(M_D(y).mean()) and info.kept_step == 3


def test_bad_adaptation_settings_are_clear_errors():
    M_D, M_R, y = UNet(width=4, levels=1), Reblurrer(features=4, blocks=1), images(6, n=1)
    with pytest.raises(ValueError, match="unknown parameter set"):
        adapt_at_test_time(M_D, M_R, y, parameters="encoder")
    with pytest.raises(ValueError, match="lr"):
        adapt_at_test_time(M_D, M_R, y, lr=0.0)
    assert len(adapted_parameters(M_D, "head")) == 2


def test_the_reblur_model_trains_through_the_same_cli(tmp_path):
    from deblur_edu.zoo.checkpoints import load_model
    from deblur_edu.zoo.registry import MODELS
    from deblur_edu.train import main

    assert main(["reblur", "--config", "tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    model, meta = load_model(tmp_path / "model.pt", MODELS["reblur"].build)
    assert meta["config"]["model"]["reblur_weight"] == 1.0 and model.reblurrer is not None


def test_the_alternate_schedule_updates_one_network_per_step():
    torch.manual_seed(0)
    pair = ReblurDeblurrer(width=4, levels=1, reblur_weight=1.0, reblur_features=4, reblur_blocks=1,
                           schedule="alternate")
    y, s = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    for expect_R in (True, False, True):
        pair.zero_grad(set_to_none=True)
        pair(y, sharp=s).backward()
        got_R = all(p.grad is not None for p in pair.reblurrer.parameters())
        got_D = any(p.grad is not None for p in pair.deblurrer.parameters())
        assert (got_R, got_D) == (expect_R, not expect_R)
    assert int(pair.updates) == 3 and "updates" in pair.state_dict()


def test_the_joint_schedule_updates_both_and_keeps_the_state_dict_unchanged():
    pair = ReblurDeblurrer(width=4, levels=1, reblur_weight=1.0, reblur_features=4, reblur_blocks=1)
    pair(torch.rand(2, 1, 16, 16), sharp=torch.rand(2, 1, 16, 16)).backward()
    assert all(p.grad is not None for p in pair.parameters())
    assert "updates" not in pair.state_dict()


def test_schedule_errors_say_what_to_do():
    with pytest.raises(ValueError, match="unknown schedule"):
        ReblurDeblurrer(schedule="sometimes")
    with pytest.raises(ValueError, match="reblur_weight > 0"):
        ReblurDeblurrer(schedule="alternate")


def test_reblur_module_loss_weighs_the_sharp_term():
    torch.manual_seed(0)
    M_R = Reblurrer(1, 4, 1)
    deblurred, blurred, deblurred_sharp = torch.rand(3, 2, 1, 12, 12)
    blur_term = F.l1_loss(M_R(deblurred), blurred)
    sharp_term = F.l1_loss(M_R(deblurred_sharp), deblurred_sharp)
    assert torch.allclose(reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp), blur_term + sharp_term)
    assert torch.allclose(reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp, 0.25), blur_term + 0.25 * sharp_term)
    assert torch.allclose(reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp, 0.0), blur_term)


def one_training_step(model: ReblurDeblurrer) -> None:
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(images(1, 2, 16), sharp=images(2, 2, 16)).backward()
    optimiser.step()


@pytest.mark.parametrize("part", ["deblurrer", "reblurrer"])
def test_a_frozen_network_keeps_its_weights_and_the_other_learns(part):
    torch.manual_seed(0)
    model = ReblurDeblurrer(width=4, levels=1, reblur_weight=1.0, reblur_features=4, reblur_blocks=1, frozen=part)
    other = "reblurrer" if part == "deblurrer" else "deblurrer"
    before = {name: [p.clone() for p in getattr(model, name).parameters()] for name in ("deblurrer", "reblurrer")}
    one_training_step(model)
    assert all(torch.equal(a, b) for a, b in zip(before[part], getattr(model, part).parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before[other], getattr(model, other).parameters()))


def test_the_unet_reblurrer_has_the_module_form():
    torch.manual_seed(0)
    model = ReblurDeblurrer(width=4, levels=1, reblurrer=True, reblurrer_shape="unet", reblur_features=4, reblur_blocks=1)
    assert isinstance(model.reblurrer, UNet) and model.reblurrer.levels == 2
    torch.nn.init.zeros_(model.reblurrer.head.weight)
    torch.nn.init.zeros_(model.reblurrer.head.bias)
    z = images(3, 2, 20)
    assert torch.equal(model.reblurrer(z), z)  # z + U(z) with U = 0 is the identity


@pytest.mark.parametrize("kwargs, message", [
    ({"frozen": "both"}, "frozen must be None"),
    ({"frozen": "reblurrer"}, "needs the reblurring module"),
    ({"reblurrer": True, "reblurrer_shape": "vit"}, "unknown reblurrer shape"),
    ({"reblur_weight": 1.0, "frozen": "reblurrer", "schedule": "alternate"}, "with one frozen"),
])
def test_bad_reblur_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReblurDeblurrer(width=4, levels=1, **kwargs)


def test_starting_from_a_shipped_checkpoint_copies_its_weights():
    """A config's ``deblurrer_from`` / ``reblurrer_from`` copy a shipped checkpoint's networks in when
    training starts (:func:`deblur_edu.zoo.shipped.warm_start`), with clear errors."""
    from deblur_edu.zoo import pretrained
    from deblur_edu.zoo.shipped import warm_start

    model = ReblurDeblurrer(width=16, levels=3, blocks=1)
    warm_start("reblur", model, {"deblurrer_from": "reblur-l1-cpu"})
    shipped = pretrained("reblur-l1-cpu").deblurrer
    assert all(torch.equal(a, b) for a, b in zip(model.deblurrer.state_dict().values(), shipped.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit"):
        warm_start("reblur", ReblurDeblurrer(width=8, levels=3, blocks=1), {"deblurrer_from": "reblur-l1-cpu"})
    with pytest.raises(ValueError, match="has no reblurrer"):
        warm_start("reblur", ReblurDeblurrer(width=16, levels=3, reblurrer=True), {"reblurrer_from": "reblur-l1-cpu"})
    with pytest.raises(ValueError, match="needs this model's reblurrer"):
        warm_start("reblur", ReblurDeblurrer(width=4, levels=1), {"reblurrer_from": "reblur-cpu"})


def test_the_guard_stops_when_the_output_is_no_longer_an_image():
    """A U-Net reblurring module refuses inputs far outside [0, 1]; the guard must stop before that,
    not crash: a wild learning rate sends the output to huge values within a step or two."""
    torch.manual_seed(0)
    M_D = UNet(1, 4, 1)
    M_R = UNet(1, 4, levels=2)
    y = images(4, 1, 16)
    out, info = adapt_at_test_time(M_D, M_R, y, steps=5, lr=1e3)
    assert "diverged" in info.stopped and info.kept_step < 5
    assert torch.equal(out, M_D(y).detach()) if info.kept_step == 0 else out.abs().max() <= 2


# ----- the two-stage deblurrer (chapter 5's base: blind TV, then a U-Net that corrects it) -----------------------
def test_a_two_stage_pair_deblurs_from_a_first_estimate_and_its_sharp_image_is_its_own():
    from deblur_edu.learned.blind_refiner import BlindRefiner

    torch.manual_seed(0)
    pair = ReblurDeblurrer(width=4, levels=1, two_stage=True, reblurrer=True, reblur_features=4, reblur_blocks=1)
    assert isinstance(pair.deblurrer, BlindRefiner)
    y, first, s = images(1), images(2), images(3)
    assert torch.equal(pair(y, first=first), pair.deblurrer(y, first=first))
    assert torch.equal(pair.deblur_sharp(s), pair.deblurrer(s, first=s))
    with pytest.raises(ValueError, match="pass first"):
        pair(y)
    with pytest.raises(ValueError, match="channels must be 1"):
        ReblurDeblurrer(channels=3, width=4, levels=1, two_stage=True)


def test_a_two_stage_pair_routes_each_objective_to_its_own_network():
    """As for the one-stage pair: M_D (the second stage) gets L1 + w·L_R with M_R frozen, M_R gets
    L_blur + L_sharp on detached images, with M_D(S) the second stage applied to S as its own first estimate."""
    torch.manual_seed(0)
    pair = ReblurDeblurrer(width=4, levels=1, two_stage=True, reblur_weight=0.5, reblur_features=4, reblur_blocks=1)
    b, first, s = images(4), images(5), images(6)
    pair(b, sharp=s, first=first).backward()
    together = {n: p.grad.clone() for n, p in pair.named_parameters()}
    pair.zero_grad()
    deblurred = pair.deblurrer(b, first=first)
    with frozen(pair.reblurrer):
        (F.l1_loss(deblurred, s) + 0.5 * supervised_reblur_loss(pair.reblurrer, deblurred, s)).backward()
    with torch.no_grad():
        deblurred, deblurred_sharp = pair.deblurrer(b, first=first), pair.deblurrer(s, first=s)
    reblur_module_loss(pair.reblurrer, deblurred, b, deblurred_sharp).backward()
    for name, p in pair.named_parameters():
        assert torch.allclose(p.grad, together[name], atol=1e-7), name


def test_adaptation_of_a_two_stage_deblurrer_keeps_its_first_estimate_and_needs_it():
    from deblur_edu.learned.blind_refiner import BlindRefiner

    torch.manual_seed(0)
    M_D = BlindRefiner(width=4, levels=1)
    y, first = images(7, n=1), images(8, n=1)
    x_hat, info = adapt_at_test_time(M_D, PullToGrey(), y, steps=3, lr=1e-3, first=first)
    assert x_hat.shape == y.shape and info.losses[-1] < info.losses[0]
    with pytest.raises(ValueError, match="pass first"):
        adapt_at_test_time(M_D, PullToGrey(), y, steps=1)
    decoder = adapted_parameters(M_D, "decoder")
    assert decoder and all(any(p is q for q in M_D.unet.parameters()) for p in decoder)
    assert len(adapted_parameters(M_D, "head")) == 2 and adapted_parameters(M_D, "head")[0] is M_D.unet.head.weight


def test_a_two_stage_pair_starts_from_the_shipped_blind_refiner():
    from deblur_edu.zoo import pretrained
    from deblur_edu.zoo.shipped import warm_start

    pair = ReblurDeblurrer(width=16, levels=3, blocks=1, two_stage=True)
    assert warm_start("reblur", pair, {"refiner_from": "blind-refiner-cpu"}) == ["deblurrer from blind-refiner-cpu"]
    shipped = pretrained("blind-refiner-cpu")
    assert all(torch.equal(a, b) for a, b in zip(pair.deblurrer.state_dict().values(), shipped.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit"):
        warm_start("reblur", ReblurDeblurrer(width=16, levels=3), {"refiner_from": "blind-refiner-cpu"})
