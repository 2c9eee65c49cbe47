"""Tiled inference with overlap blending (the frame of AdaRevD's patch exiting)."""

import pytest
import torch

from deblur_edu.learned.tiling import blend_window, tile_starts, tiled_apply


@pytest.mark.parametrize("length, tile, overlap", [(100, 32, 8), (64, 32, 0), (33, 32, 4), (20, 32, 4)])
def test_tiles_cover_the_image_with_the_requested_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_a_pointwise_map_is_reproduced_exactly():
    y = torch.rand(2, 3, 45, 70, generator=torch.Generator().manual_seed(0))
    out = tiled_apply(lambda t, g: t ** 2 + 1, y, tile=16, overlap=5)
    assert torch.allclose(out, y ** 2 + 1, atol=1e-6)


def test_each_group_of_tiles_goes_through_its_own_call():
    y = torch.ones(1, 1, 32, 32)
    groups = torch.tensor([[[0, 1], [1, 2]]])  # 2×2 tiles of 16, no overlap
    calls = []

    def f(tiles, ids):
        calls.append(int(ids[0]))
        assert torch.all(ids == ids[0])
        return tiles * (ids[0] + 1)

    out = tiled_apply(f, y, tile=16, overlap=0, groups=groups)
    assert sorted(calls) == [0, 1, 2]
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 0, 31] == 2 and out[0, 0, 31, 0] == 2 and out[0, 0, 31, 31] == 3


def test_the_blend_window_ramps_to_the_edges_and_never_vanishes():
    w = blend_window(10, 3)
    assert w[5, 5] == 1 and 0 < w[0, 0] < w[1, 1] < w[3, 3]
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.T)


def test_bad_tiling_settings_are_clear_errors():
    y = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(lambda t, g: t, y, tile=8, overlap=8)
    with pytest.raises(ValueError, match="groups must have shape"):
        tiled_apply(lambda t, g: t, y, tile=16, overlap=0, groups=torch.zeros(1, 3, 3, dtype=torch.long))


def random_heads(dec):
    """Fresh sub-decoders output ``y`` exactly (zero heads): give them something to blend."""
    for column in dec.columns:
        column.head.weight.data.normal_(0, 0.1)
    return dec


def test_tiled_sub_decoders_match_the_whole_image_up_to_blending():
    from deblur_edu.data import centre_crop, sample_image
    from deblur_edu.learned import ReversibleDecoder, UNet

    torch.manual_seed(0)
    dec = random_heads(ReversibleDecoder(UNet(width=8, levels=2), columns=3).eval())
    y = centre_crop(sample_image("camera"), 96)
    with torch.no_grad():
        whole = dec(y)[-1]
        gaps = [float((tiled_apply(lambda t, g: dec(t)[-1], y, tile=64, overlap=ov) - whole).abs().mean())
                for ov in (8, 32)]
    residual = float((whole - y).abs().mean())
    assert gaps[1] < gaps[0]  # more overlap, closer to the whole image
    assert gaps[1] <= 0.01 * residual


def test_degradation_classes_and_exit_points():
    from deblur_edu.learned.patch_exit import degradation_class, exit_after

    x = torch.full((4, 1, 8, 8), 0.5)
    noisy = x + torch.tensor([0.0, 0.02, 0.06, 0.2]).reshape(4, 1, 1, 1)  # ∞, 34, 24.4, 14 dB
    assert degradation_class(noisy, x).tolist() == [0, 2, 4, 5]
    assert exit_after(torch.arange(6), 4).tolist() == [1, 2, 2, 3, 3, 4]
    assert exit_after(torch.arange(6), 4, knob=-1).tolist() == [1, 1, 1, 2, 2, 3]
    assert exit_after(torch.arange(6), 4, knob=5).tolist() == [4] * 6


def test_adaptive_deblur_uses_each_tiles_exit_and_equals_full_decoding_when_all_exit_last():
    from deblur_edu.learned import ReversibleDecoder, UNet
    from deblur_edu.learned.patch_exit import DegradationClassifier, adaptive_deblur, decoder_cost

    torch.manual_seed(0)
    dec = random_heads(ReversibleDecoder(UNet(width=4, levels=2), columns=3).eval())
    clf = DegradationClassifier(in_channels=16).eval()
    y = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    out, exits = adaptive_deblur(dec, clf, y, tile=16, overlap=4, knob=10)  # every tile runs all 3
    assert exits.shape == (1, 4, 4) and torch.all(exits == 3) and decoder_cost(exits, 3) == 1.0
    with torch.no_grad():
        full = tiled_apply(lambda t, g: dec(t)[-1], y, tile=16, overlap=4)
    assert torch.allclose(out, full, atol=1e-6)
    fast, fast_exits = adaptive_deblur(dec, clf, y, tile=16, overlap=4, knob=-10)
    assert torch.all(fast_exits == 1) and decoder_cost(fast_exits, 3) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="multiples of 4"):
        adaptive_deblur(dec, clf, torch.rand(1, 1, 30, 30), tile=10, overlap=2)
    with pytest.raises(ValueError, match="overlap < tile"):
        adaptive_deblur(dec, clf, y, tile=16, overlap=16)
    with pytest.raises(ValueError, match="NaN"):
        adaptive_deblur(dec, clf, torch.full((1, 1, 32, 32), float("nan")), tile=16, overlap=4)


def test_decoding_in_chunks_changes_nothing():
    from deblur_edu.learned import ReversibleDecoder, UNet
    from deblur_edu.learned.patch_exit import DegradationClassifier, adaptive_deblur

    torch.manual_seed(0)
    dec = random_heads(ReversibleDecoder(UNet(width=4, levels=2), columns=3).eval())
    clf = DegradationClassifier(in_channels=16).eval()
    y = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(2))
    whole, exits = adaptive_deblur(dec, clf, y, tile=16, overlap=4, knob=-1, chunk=1000)
    parts, same = adaptive_deblur(dec, clf, y, tile=16, overlap=4, knob=-1, chunk=3)
    assert torch.equal(exits, same) and torch.allclose(whole, parts, atol=1e-6)
