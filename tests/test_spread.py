"""The paired bootstrap interval every chapter uses to say how sure a difference is."""

import pytest
import torch

from deblur_edu.metrics import paired_bootstrap


def test_the_mean_is_the_mean_paired_difference_and_the_interval_contains_it():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, generator=g)
    b = a + 0.02 * torch.randn(40, generator=g)
    s = paired_bootstrap(a, b)
    assert s.mean == pytest.approx(float((b - a).double().mean()))
    assert s.low < s.mean < s.high and s.cases == 40 and s.resamples == 1000


def test_pairing_cancels_the_variation_between_cases():
    """Cases that differ a lot (images) but a difference that is steady: paired, the interval is tight and excludes 0;
    the same numbers with the pairs broken (b reversed) give a wide interval."""
    a = torch.linspace(0.2, 0.8, 32)
    b = a - 0.01 + 0.001 * torch.sin(torch.arange(32.0))
    paired = paired_bootstrap(a, b)
    assert paired.excludes_zero and paired.high < 0
    unpaired = paired_bootstrap(a, b.flip(0))
    assert not unpaired.excludes_zero and unpaired.high - unpaired.low > 10 * (paired.high - paired.low)


def test_no_difference_gives_an_interval_around_zero_and_the_seed_fixes_it():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(30, generator=g), torch.rand(30, generator=g)
    s = paired_bootstrap(a, a + (b - b.mean()))  # differences of mean 0
    assert s.low < 0 < s.high and not s.excludes_zero
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b)


def test_a_wider_level_gives_a_wider_interval():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(25, generator=g), torch.rand(25, generator=g)
    s90, s99 = paired_bootstrap(a, b, level=0.9), paired_bootstrap(a, b, level=0.99)
    assert s99.low < s90.low and s99.high > s90.high


@pytest.mark.parametrize("a, b, kwargs, message", [
    ([1.0, 2.0], [1.0], {}, "one of each per case"),
    ([1.0], [2.0], {}, "at least 2 cases"),
    ([1.0, float("nan")], [1.0, 2.0], {}, "NaN or Inf"),
    ([1.0, 2.0], [1.0, 2.0], {"level": 95}, "level must lie in"),
    ([1.0, 2.0], [1.0, 2.0], {"resamples": 0}, "resamples must be an integer"),
])
def test_bad_input_is_refused_with_a_reason(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kwargs)
