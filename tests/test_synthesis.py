"""Training data: photographs (never a benchmark image), the image bank's crops, batched kernels,
dead leaves that cover the canvas, and blur/denoising batches that are a pure function of (seed, step)."""

import hashlib
import io
import tarfile

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import io as skio
from skimage.transform import resize

from deblur_edu import data
from deblur_edu.bench.protocol import tune_kernels
from deblur_edu.kernels import camera_shakes, motion, rasterise_batch
from deblur_edu.physics import Blur
from deblur_edu.synthesis import (BlurSynthesis, DenoisingSynthesis, ImageBank, dead_leaves_batch, from_config,
                                  step_generator)


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images a square's rotations and mirrors make of ``x`` (last two axes)."""
    out = []
    for t in (x, x.transpose(-2, -1)):
        out += [t, t.flip(-1), t.flip(-2), t.flip(-2, -1)]
    return out


def test_bank_crops_are_windows_of_the_images_in_all_eight_orientations():
    a = torch.arange(30 * 40, dtype=torch.float32).reshape(1, 1, 30, 40) / 2000
    b = 1 - torch.arange(25 * 20, dtype=torch.float32).reshape(1, 1, 25, 20) / 1000
    bank = ImageBank([a, b])
    crops = bank.crops(200, 8, torch.Generator().manual_seed(0))
    seen = set()
    for c in crops[:, 0]:
        found = None
        for img_i, img in enumerate((a[0, 0], b[0, 0])):
            for top in range(img.shape[0] - 7):
                for left in range(img.shape[1] - 7):
                    window = img[top : top + 8, left : left + 8]
                    for o, variant in enumerate(dihedral(window)):
                        if torch.equal(variant, c):
                            found = (img_i, o)
        assert found is not None, "a crop is not a window of a bank image"
        seen.add(found)
    assert {o for _, o in seen} == set(range(8)) and {i for i, _ in seen} == {0, 1}


def test_bank_refuses_crops_larger_than_its_smallest_image():
    bank = ImageBank([torch.rand(1, 1, 30, 40), torch.rand(1, 1, 20, 50)])
    with pytest.raises(ValueError, match="smallest bank image"):
        bank.crops(2, 21, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="one gray image"):
        ImageBank([torch.rand(1, 3, 20, 20)])


def test_batched_camera_shakes_are_normalised_centred_and_seeded():
    g = torch.Generator().manual_seed(0)
    k = camera_shakes(64, 31, g, extent_range=(0.1, 0.9))
    assert k.shape == (64, 1, 31, 31) and bool((k >= 0).all())
    torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(64, 1), atol=1e-5, rtol=0)
    r = torch.arange(31.0) - 15
    centroid_r = (k[:, 0].sum(-1) * r).sum(-1)
    centroid_c = (k[:, 0].sum(-2) * r).sum(-1)
    assert float(centroid_r.abs().max()) < 1.0 and float(centroid_c.abs().max()) < 1.0
    def support(profile):  # first to last non-zero entry, pixels
        seen = (profile > 1e-4).float()
        return 31 - seen.flip(-1).argmax(-1) - seen.argmax(-1)

    extents = torch.maximum(support(k[:, 0].sum(-1)), support(k[:, 0].sum(-2))).tolist()
    assert min(extents) < 10 and max(extents) > 24  # sizes spread over 0.1–0.9 of 29 px
    assert torch.equal(k, camera_shakes(64, 31, torch.Generator().manual_seed(0), extent_range=(0.1, 0.9)))


def four_corner_splat(points: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear splatting written out point by point: the definition the rasteriser's R^T C must match."""
    k = torch.zeros(size, size, dtype=points.dtype)
    for r, c in (points + size // 2).tolist():
        r0, c0 = int(np.floor(r)), int(np.floor(c))
        for i, wi in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
            for j, wj in ((c0, 1 - (c - c0)), (c0 + 1, c - c0)):
                if 0 <= i < size and 0 <= j < size:
                    k[i, j] += wi * wj
    return k


@pytest.mark.parametrize("size", [9, 8])  # even: the centre is size // 2, the lower-right middle pixel
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_the_rasteriser_is_the_four_corner_bilinear_splat_off_grid_points_included(size, dtype, atol):
    g = torch.Generator().manual_seed(3)
    points = ((torch.rand(3, 40, 2, generator=g, dtype=torch.float64) - 0.5) * 14).to(dtype)  # many off the grid
    points[0, 0] = torch.tensor([1.0, -2.0], dtype=dtype)  # on a pixel: all its weight there
    k = rasterise_batch(points, size)
    for b in range(3):
        torch.testing.assert_close(k[b], four_corner_splat(points[b], size), rtol=0, atol=atol)
    assert float(rasterise_batch(points[:1, :1], size)[0, size // 2 + 1, size // 2 - 2]) == 1.0


def test_the_tune_split_and_motion_kernels_are_unchanged_by_the_batched_rasteriser():
    """The single-kernel paths share the batched rasteriser; the tune split and the float32 motion
    kernels must not move (digests of their bytes before the rasteriser became a matrix product)."""
    digest = hashlib.sha256(b"".join(k.numpy().tobytes() for k in tune_kernels())).hexdigest()
    assert digest == "bf43c8cf48439189f94df765eb40068b8536478cd554369c1b1055d34bced6ea"
    lines = [motion(length, angle) for length in (3, 9.5, 17) for angle in (0, 30, 45, 100)]
    digest = hashlib.sha256(b"".join(k.numpy().tobytes() for k in lines)).hexdigest()
    assert digest == "f1530123008d8510f64a96b7a2e03ce0f46c956b5983dd76d1b3b0d088dcd000"


def test_dead_leaves_cover_the_canvas_and_are_seeded():
    """No flat background: the commonest grey level of an image covers well under 20 % of it
    (today's ``data.dead_leaves`` leaves 40–60 % of the canvas to its background)."""
    x = dead_leaves_batch(4, 96, torch.Generator().manual_seed(1))
    assert x.shape == (4, 1, 96, 96) and float(x.min()) >= 0 and float(x.max()) <= 1
    for img in x[:, 0]:
        _, counts = torch.unique(img, return_counts=True)
        assert float(counts.max()) / img.numel() < 0.2
    assert torch.equal(x, dead_leaves_batch(4, 96, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="coverage"):
        dead_leaves_batch(1, 32, torch.Generator(), coverage=1.0)


@pytest.fixture
def synth():
    bank = ImageBank([torch.rand(1, 1, 90, 110, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    leaves = ImageBank(list(dead_leaves_batch(2, 80, torch.Generator().manual_seed(0)).unbind(0)))
    return BlurSynthesis(bank, leaves, patch=24, kernel_size=13, sigma_range=(0.0, 0.05), dead_leaves_fraction=0.3,
                         seed=3)


def test_a_batch_is_a_pure_function_of_seed_and_step(synth):
    a, b = synth.batch(step=7, size=6), synth.batch(step=7, size=6)
    assert all(torch.equal(a[key], b[key]) for key in a)
    c = synth.batch(step=8, size=6)
    assert not torch.equal(a["sharp"], c["sharp"]) and not torch.equal(a["kernel"], c["kernel"])
    synth.seed = 4
    assert not torch.equal(a["sharp"], synth.batch(step=7, size=6)["sharp"])


def test_a_batch_is_the_valid_blur_of_its_scene_plus_noise_then_quantised(synth):
    """Rebuild step 5's batch from the same generator, piece by piece, with the library's Blur."""
    batch = synth.batch(step=5, size=4)
    g = step_generator(synth.seed, 5)
    scene = synth.scenes(4, 24 + 12, g)
    k = camera_shakes(4, 13, g, synth.extent_range)
    sigma = 0.05 * torch.rand(4, generator=g)
    y = Blur(k, "valid")(scene) + sigma[:, None, None, None] * torch.randn(4, 1, 24, 24, generator=g)
    torch.testing.assert_close(batch["blurred"], torch.round(y.clamp(0, 1) * 255) / 255, atol=1e-6, rtol=0)
    torch.testing.assert_close(batch["sharp"], scene[..., 6:30, 6:30])
    assert torch.equal(batch["kernel"], k) and torch.equal(batch["sigma"], sigma)


def test_mixed_scenes_are_photo_or_dead_leaves_crops_gathered_once(synth):
    """The one gather from both banks gives what two croppings and a choice per sample give."""
    n, side = 40, 36
    scenes = synth.scenes(n, side, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    photos, leaves = synth.photos.crops(n, side, g), synth.dead_leaves.crops(n, side, g)
    use = torch.rand(n, generator=g) < synth.dead_leaves_fraction
    assert 0 < int(use.sum()) < n  # both kinds are in this batch
    assert torch.equal(scenes, torch.where(use[:, None, None, None], leaves, photos))


def test_denoising_batches_draw_sigma_log_uniformly():
    bank = ImageBank([torch.rand(1, 1, 64, 64)])
    synth = DenoisingSynthesis(bank, patch=16, sigma_range=(0.002, 0.2))
    sigma = torch.cat([synth.batch(step, 256)["sigma"] for step in range(8)])
    assert 0.002 <= float(sigma.min()) and float(sigma.max()) <= 0.2
    assert abs(float((sigma < 0.02).float().mean()) - 0.5) < 0.05  # half the octaves lie below 0.02
    b = synth.batch(0, 4)
    noise = (b["noisy"] - b["sharp"]) / b["sigma"][:, None, None, None]
    assert abs(float(noise.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="start above 0"):
        DenoisingSynthesis(bank, patch=16, sigma_range=(0.0, 0.2))


# ----- the photographs ---------------------------------------------------------------------------
def thumbnail(img: np.ndarray) -> np.ndarray:
    t = resize(img, (32, 32), anti_aliasing=True)
    return (t - t.mean()) / (t.std() + 1e-12)


def test_training_never_sees_a_benchmark_image(data_dir):
    """Every training photograph against every Set12 image: not the same file (sha256), not the
    same pixels, and not the same picture at another resolution (32² thumbnails correlate < 0.9)."""
    files = data.photo_files(data_dir_=data_dir)
    assert len(files) >= 39
    set12 = {n: data.load_image(data_dir / f"set12/{n}.png")[0, 0].numpy() for n in [f"{i:02d}" for i in range(1, 13)]}
    set12_pixels = {hashlib.sha256((img * 255).round().astype(np.uint8).tobytes()).hexdigest() for img in set12.values()}
    thumbs = [thumbnail(img) for img in set12.values()]
    for f in files:
        assert data.sha256(f) not in data.BENCHMARK_SHA256, f
        photo = data.load_image(f)[0, 0].numpy()
        assert hashlib.sha256((photo * 255).round().astype(np.uint8).tobytes()).hexdigest() not in set12_pixels, f
        t = thumbnail(photo)
        assert max(float((t * s).mean()) for s in thumbs) < 0.9, f


def test_a_benchmark_image_among_the_photographs_is_refused(data_dir, tmp_path):
    (tmp_path / "mine.png").write_bytes((data_dir / "photos").glob("*.png").__next__().read_bytes())
    assert list(data.load_photos(tmp_path)) == ["mine"]
    (tmp_path / "holiday.png").write_bytes((data_dir / "set12/10.png").read_bytes())
    with pytest.raises(ValueError, match="holiday.png is a benchmark test image"):
        data.load_photos(tmp_path)


def test_missing_photographs_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="download-photos"):
        data.load_photos(tmp_path / "nowhere")


def fake_bsds(path, split_sizes=(("train", 2), ("val", 1), ("test", 2))):
    """A .tgz laid out like BSR_bsds500.tgz, with small random colour JPEGs."""
    g = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split, n in split_sizes:
            for i in range(n):
                buffer = io.BytesIO()
                iio.imwrite(buffer, (g.random((40, 60, 3)) * 255).astype(np.uint8), extension=".jpg")
                info = tarfile.TarInfo(f"BSR/BSDS500/data/images/{split}/{1000 + i}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)


def test_download_photos_keeps_train_and_val_and_records_the_archive_hash(tmp_path):
    archive = tmp_path / "BSR_bsds500.tgz"
    fake_bsds(archive)
    written = data.download_photos(tmp_path / "data", archive.as_uri())
    names = sorted(p.name for p in written)
    assert names == ["bsds500-train-1000.png", "bsds500-train-1001.png", "bsds500-val-1000.png"]
    assert skio.imread(written[0]).dtype == np.uint8 and skio.imread(written[0]).ndim == 2
    record = (tmp_path / "data/photos/bsds500.sha256").read_text()
    assert record.split()[0] == data.sha256(archive)
    assert sorted(p.name for p in (tmp_path / "data/photos").iterdir()) == sorted(["bsds500.sha256", *names])
    assert len(data.load_photos(tmp_path / "data/photos")) == 3
    fake_bsds(archive, (("train", 3),))  # another archive at the same address: refused, nothing written
    with pytest.raises(OSError, match="sha256 mismatch"):
        data.download_photos(tmp_path / "data", archive.as_uri())
    assert sorted(p.name for p in (tmp_path / "data/photos").iterdir()) == sorted(["bsds500.sha256", *names])


def test_download_photos_offline_says_so_and_leaves_nothing_behind(tmp_path):
    """Nothing listens on port 9 of the loopback address: a refused connection, as offline."""
    with pytest.raises(ConnectionError, match="offline.*photos"):
        data.download_photos(tmp_path / "data", "http://127.0.0.1:9/BSR_bsds500.tgz")
    assert not (tmp_path / "data").exists()


def test_synthesis_from_a_config_reads_the_photographs(data_dir):
    synth = from_config({"task": "deblur", "patch": 32, "kernel_size": 15, "sigma_range": [0.0, 0.04],
                         "dead_leaves_fraction": 0.2, "photos": str(data_dir / "photos"), "seed": 0})
    batch = synth.batch(0, 4)
    assert batch["blurred"].shape == (4, 1, 32, 32) and batch["kernel"].shape == (4, 1, 15, 15)
    with pytest.raises(ValueError, match="data.task"):
        from_config({"task": "segment", "patch": 32})
    with pytest.raises(ValueError, match="unexpected keyword"):
        from_config({"task": "denoise", "patch": 32, "sigma_range": [0.01, 0.1], "kernel_sise": 3,
                     "photos": str(data_dir / "photos")})


def test_every_process_keeps_its_slice_of_one_global_batch(data_dir):
    """Data-parallel training with a task: N processes with batch b see the samples that one process
    with batch N·b sees (the property the BlurDataset path gets from DistributedSampler)."""
    from deblur_edu.train import training_batches

    cfg = {"task": "deblur", "patch": 24, "kernel_size": 9, "sigma_range": [0.0, 0.04], "seed": 1,
           "photos": str(data_dir / "photos")}
    tc = {"batch_size": 2, "seed": 0}
    one = next(training_batches(cfg, {**tc, "batch_size": 4}, 5, 0, 1, torch.device("cpu")))
    parts = [next(training_batches(cfg, tc, 5, rank, 2, torch.device("cpu"))) for rank in (0, 1)]
    for key in one:
        assert torch.equal(torch.cat([p[key] for p in parts]), one[key])


def test_training_on_photographs_resumes_exactly(tmp_path, skip_without_photos):
    from deblur_edu.train import load_config, train

    cfg = load_config("denoiser", "tiny")
    skip_without_photos(cfg["data"])
    cfg["train"]["ckpt_every"] = 1
    straight = train("denoiser", cfg, tmp_path / "straight", progress=False)
    assert train("denoiser", cfg, tmp_path / "sliced", progress=False, stop_after=2) is None
    resumed = train("denoiser", cfg, tmp_path / "sliced", resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_the_extra_split_is_set12_images_no_other_split_uses(data_dir):
    from deblur_edu.bench.protocol import SPLITS, load_benchmark

    extra = load_benchmark("extra", data_dir=data_dir)
    assert sorted(extra.images) == ["01", "02", "03", "04", "06"] and extra.crop == 224 and len(extra.kernels) == 8
    assert extra.data == "levin09+set12"
    others = set(SPLITS["test"]["images"]) | set(SPLITS["tune"]["images"])
    assert not set(extra.images) & others


def test_the_synthesis_speed_command_prints_and_writes_its_figures(tmp_path, data_dir, capsys):
    import json

    from deblur_edu.experiments import synthesis_speed

    out = tmp_path / "speed.json"
    assert synthesis_speed.main(["--batch", "2", "--patch", "16", "--kernel-size", "9", "--rounds", "1",
                                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["synthesis_seconds"] > 0 and result["dead_leaves_speedup"] > 0
    assert result["provenance"]["command"].startswith("python -m deblur_edu.experiments.synthesis_speed")
    assert "samples/s" in capsys.readouterr().out


def test_the_blind_split_is_the_test_images_under_shakes_of_13_to_31_px(data_dir):
    import hashlib

    from deblur_edu.bench.protocol import BLIND_KERNEL_SIZES, SPLITS, blind_kernels, load_benchmark

    blind = load_benchmark("blind", data_dir=data_dir)
    assert sorted(blind.images) == SPLITS["test"]["images"] and blind.crop == 256
    assert blind.data == "blind-shakes+set12"
    assert [k.shape[-1] for k in blind.kernels] == list(BLIND_KERNEL_SIZES) == [13, 15, 19, 21, 23, 25, 29, 31]
    assert all(abs(float(k.sum()) - 1) < 1e-5 for k in blind.kernels)
    # seeded: the same kernels on every machine and every run (a changed draw would change the split)
    digest = hashlib.sha256(b"".join(k.numpy().tobytes() for k in blind_kernels())).hexdigest()
    assert digest == "f05798cc0981a596f80333d576811dcb427a68cd676fb2813835d9891d2caa75"
