"""Reversible sub-decoders (AdaRevD): invertibility, exact gradients, memory that does not grow."""

import pytest
import torch

from deblur_edu.learned.reversible import Column, ReversibleDecoder, multi_decoder_loss
from deblur_edu.learned.unet import UNet


def decoder(columns=4, reversible=True, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    enc = UNet(width=4, levels=2).double()
    torch.manual_seed(seed + 1)
    dec = ReversibleDecoder(enc, columns=columns, reversible=reversible, dropout=dropout).double()
    for column in dec.columns:  # move α away from 1 and the heads away from 0 so that the tests see them
        for a in column.raw_alpha:
            a.data.uniform_(-1.5, 1.5)
        column.head.weight.data.normal_(0, 0.1)
    return dec


def data(seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 1, 16, 20, generator=g, dtype=torch.float64),
            torch.rand(2, 1, 16, 20, generator=g, dtype=torch.float64))


def grads(dec, y, x, seed=0):
    torch.manual_seed(seed)
    dec.zero_grad(set_to_none=True)
    multi_decoder_loss(dec(y), x).backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in dec.columns.parameters()])


def test_a_column_is_inverted_exactly():
    dec = decoder()
    y, _ = data()
    feats = dec.encoder.encode(y[..., :16, :16])
    column = dec.columns[0]
    with torch.no_grad():
        new = column(feats[0], feats)
        old = column.inverse(feats[0], new)
    for a, b in zip(old, feats):
        assert torch.allclose(a, b, atol=1e-12)


def test_a_fresh_decoder_starts_as_the_identity():
    dec = ReversibleDecoder(UNet(width=4, levels=2), columns=2)
    y = torch.rand(1, 1, 16, 20)
    assert all(torch.equal(x_hat, y) for x_hat in dec(y))


def test_alpha_is_kept_away_from_zero_with_its_sign():
    column = Column([4, 8], alpha_min=0.2)
    column.raw_alpha[0].data = torch.tensor([0.0, 0.05, -0.05, -3.0]).reshape(1, 4, 1, 1)
    assert column.alpha(0).flatten().tolist() == pytest.approx([0.2, 0.2, -0.2, -3.0])


@pytest.mark.parametrize("columns", [1, 2, 4])
def test_reversible_and_plain_gradients_agree(columns):
    y, x = data()
    rev, plain = decoder(columns, True), decoder(columns, False)
    g_rev, g_plain = grads(rev, y, x), grads(plain, y, x)
    assert g_plain.abs().sum() > 0  # (the last column's coarse levels feed no output: zero there)
    assert (g_rev - g_plain).norm() / g_plain.norm() <= 1e-6


def test_under_mixed_precision_the_columns_run_in_float32_and_gradients_still_agree():
    """Autocast (float16 here on the CPU; on CUDA the training loop's ``amp``) runs the frozen
    encoder in float16; the columns must not, or inverting them would drift."""
    y, x = (t.float() for t in data())
    rev, plain = decoder(2, True).float(), decoder(2, False).float()
    with torch.autocast("cpu", dtype=torch.float16):
        g_rev, g_plain = grads(rev, y, x), grads(plain, y, x)
        found = [t.dtype for t in rev(y)]
    assert torch.isfinite(g_rev).all() and g_plain.abs().sum() > 0
    assert (g_rev - g_plain).norm() / g_plain.norm() <= 1e-6  # float32 rounding (float16 inverses: ~1e-3)
    assert found == [torch.float32, torch.float32]


def test_dropout_is_recomputed_with_the_same_mask():
    y, x = data()
    rev, plain = decoder(3, True, dropout=0.3).train(), decoder(3, False, dropout=0.3).train()
    g_rev, g_plain = grads(rev, y, x, seed=5), grads(plain, y, x, seed=5)
    assert (g_rev - g_plain).norm() / g_plain.norm() <= 1e-6


def saved_bytes(dec, y, x):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = multi_decoder_loss(dec(y), x)
    loss.backward()
    return total


def test_saved_memory_does_not_grow_with_the_number_of_sub_decoders():
    y, x = data()
    rev = [saved_bytes(decoder(n, True), y, x) for n in (1, 4)]
    plain = [saved_bytes(decoder(n, False), y, x) for n in (1, 4)]
    assert plain[1] > 3 * plain[0]
    # the reversible function itself saves one state; only the tiny per-head outputs and the loss grow
    assert rev[1] < 0.3 * plain[1] and rev[1] - rev[0] < 0.2 * (plain[1] - plain[0])


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="columns"):
        ReversibleDecoder(UNet(width=4, levels=1), columns=0)
    with pytest.raises(ValueError, match="alpha_min"):
        ReversibleDecoder(UNet(width=4, levels=1), alpha_min=0.0)


def test_the_encoder_stays_frozen():
    dec = decoder(2)
    y, x = data()
    multi_decoder_loss(dec(y), x).backward()
    assert all(p.grad is None for p in dec.encoder.parameters())
    dec.train()
    assert not dec.encoder.training


def test_gradients_reach_input_features_that_require_them():
    # the decoder's features come from a frozen encoder; the function must still be exact when they need gradients
    dec = decoder(3)
    y, _ = data()
    feats = [f.detach().requires_grad_() for f in dec.encoder.encode(y[..., :16, :16])]
    grads = []
    for reversible in (True, False):
        dec.reversible = reversible
        loss = sum((r ** 2).sum() for r in dec.decode(feats))
        grads.append(torch.autograd.grad(loss, feats))
    for a, b in zip(*grads):
        assert (a - b).norm() / b.norm() <= 1e-6


def test_a_second_backward_through_the_same_graph_is_a_clear_error():
    dec = decoder(2)
    y, x = data()
    loss = multi_decoder_loss(dec(y), x)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        loss.backward()


def test_the_memory_command_reports_both_paths(tmp_path):
    import json

    from deblur_edu.experiments import ch6_reversible_cost as reversible_cost

    out = tmp_path / "mem.json"
    reversible_cost.main(["--columns", "1", "2", "--size", "32", "--batch", "2", "--width", "4", "--levels", "2",
                          "--device", "cpu", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["columns"] for r in rows] == [1, 2]
    assert all(r["reversible_peak_bytes"] > 0 and r["plain_peak_bytes"] > 0 for r in rows)
    assert rows[1]["plain_peak_bytes"] > rows[0]["plain_peak_bytes"]
