"""The no-reference sharpness judge of chapter 5 matches scikit-image and orders blur."""

import numpy as np
import pytest
import torch
from skimage.measure import blur_effect as skimage_blur_effect

from deblur_edu.data import centre_crop, sample_image
from deblur_edu.kernels import gaussian
from deblur_edu.physics import blur
from deblur_edu.metrics.sharpness import blur_effect


@pytest.mark.parametrize("h_size", [11, 5])
def test_matches_scikit_image_on_gray_and_rgb(h_size):
    gray = centre_crop(sample_image("camera"), 96).double()
    rgb = torch.rand(2, 3, 40, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = blur_effect(torch.cat([gray, blur(gray, gaussian(5, 1.0, dtype=torch.float64), "replicate")]), h_size)
    for value, image in zip(ours, [gray, blur(gray, gaussian(5, 1.0, dtype=torch.float64), "replicate")]):
        assert float(value) == pytest.approx(skimage_blur_effect(image[0, 0].numpy(), h_size=h_size), abs=1e-9)
    for value, image in zip(blur_effect(rgb, h_size), rgb):
        reference = skimage_blur_effect(np.moveaxis(image.numpy(), 0, -1), h_size=h_size, channel_axis=-1)
        assert float(value) == pytest.approx(reference, abs=1e-9)


def test_more_blur_scores_higher():
    x = centre_crop(sample_image("camera"), 128)
    scores = [float(blur_effect(blur(x, gaussian(15, s), "replicate"))) for s in (0.5, 1.5, 3.0)]
    assert float(blur_effect(x)) < scores[0] < scores[1] < scores[2]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="gray .* or RGB"):
        blur_effect(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="odd"):
        blur_effect(torch.rand(1, 1, 32, 32), h_size=4)
    with pytest.raises(ValueError, match="too small"):
        blur_effect(torch.rand(1, 1, 8, 8))
