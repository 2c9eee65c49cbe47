"""Data directory, sha256-checked downloads (from local file:// URLs), images, datasets, kernels."""

import shutil

import numpy as np
import pytest
import torch

from deblur_edu import data
from deblur_edu.synthesis import BlurDataset
from deblur_edu.kernels import camera_shake, disk, gaussian, motion, pad_to
from deblur_edu.data import levin09, read_levin09_mat


def test_data_dir_lookup_order(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(b))
    assert data.data_dir(a) == a
    assert data.data_dir() == b
    monkeypatch.delenv("DEBLUR_EDU_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache" / "deblur_edu"


def fake_remote(tmp_path, shared):
    """A file:// mirror laid out like the KAIR repository, built from the shared data."""
    remote = tmp_path / "remote"
    for rel, (remote_path, _) in data.REMOTE_FILES.items():
        (remote / remote_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / rel, remote / remote_path)
    return remote.as_uri()


def test_download_verifies_sha256(data_dir, tmp_path):
    url = fake_remote(tmp_path, data_dir)
    target = tmp_path / "cache"
    paths = data.download_all(target, base_url=url)
    assert len(paths) == 13 and all(p.is_file() for p in paths)
    assert data.sha256(target / "set12/09.png") == data.REMOTE_FILES["set12/09.png"][1]
    assert len(levin09(target)) == 8  # read from the downloaded .mat


def test_download_refuses_a_corrupted_file(data_dir, tmp_path):
    url = fake_remote(tmp_path, data_dir)
    corrupted = tmp_path / "remote" / "testsets/set12/09.png"
    corrupted.write_bytes(corrupted.read_bytes()[:-10])
    with pytest.raises(OSError, match="sha256 mismatch"):
        data.download("set12/09.png", tmp_path / "cache", base_url=url)
    assert not (tmp_path / "cache" / "set12/09.png").exists()


def test_levin_mat_and_npz_agree(data_dir):
    from_mat = read_levin09_mat(data_dir / "levin09/Levin09.mat")
    npz = np.load(data_dir / "levin09/levin09_kernels.npz")
    for i, k in enumerate(from_mat, start=1):
        np.testing.assert_allclose(k, npz[f"k{i}"])
    sizes = [k.shape[-1] for k in levin09(data_dir)]
    assert sizes == [19, 17, 15, 27, 13, 21, 23, 23]


def test_sample_images_load_offline():
    for name in data.SAMPLE_NAMES:
        img = data.sample_image(name)
        assert img.dim() == 4 and img.shape[1] == 1 and 0 <= float(img.min()) and float(img.max()) <= 1


def test_dead_leaves_statistics_and_reproducibility():
    a = data.dead_leaves(96, torch.Generator().manual_seed(1))
    b = data.dead_leaves(96, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    gx = (a[..., 1:] - a[..., :-1]).flatten()
    kurtosis = float(((gx - gx.mean()) ** 4).mean() / gx.var() ** 2)
    assert kurtosis > 6  # heavy-tailed gradients: a Gaussian has 3


def test_blur_dataset_is_deterministic_and_well_formed():
    ds = BlurDataset(length=4, patch=48, kernel_size=13, seed=3)
    s1, s2 = ds[2], ds[2]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert s1["blurred"].shape == s1["sharp"].shape == (1, 48, 48)
    assert s1["kernel"].shape == (1, 13, 13)
    assert abs(float(s1["kernel"].sum()) - 1) < 1e-5
    assert 0 <= float(s1["sigma"]) <= 0.04
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["blurred"].shape == (4, 1, 48, 48)


def test_kernels_are_normalised_and_shaped():
    g = torch.Generator().manual_seed(0)
    for k in (gaussian(9, 2.0), disk(3.5), motion(10, 33), camera_shake(21, g)):
        assert k.dim() == 4 and k.shape[:2] == (1, 1)
        assert abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0


def test_camera_shake_is_seeded():
    a = camera_shake(25, torch.Generator().manual_seed(5))
    b = camera_shake(25, torch.Generator().manual_seed(5))
    c = camera_shake(25, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_motion_kernel_direction():
    k = motion(9, 0)[0, 0]
    assert float(k[k.shape[0] // 2].sum()) > 0.99  # horizontal: all mass on the middle row


def test_pad_to_keeps_the_centre():
    k = torch.zeros(1, 1, 4, 4)
    k[..., 2, 2] = 1
    p = pad_to(k, 9)
    assert float(p[0, 0, 4, 4]) == 1


def _png_modes(tmp_path):
    """One file per PNG flavour, all holding the same 8-bit gray ramp ``a`` (RGB: a, a, a)."""
    from PIL import Image

    a = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (6, 1))  # 6×32, values 0…248
    rgb = np.stack([a, a, a], -1)
    images = {
        "gray8": Image.fromarray(a, "L"),
        "gray16": Image.fromarray(a.astype(np.uint16) * 257),  # 16-bit: the same values ×257
        "gray-alpha": Image.fromarray(np.stack([a, 255 - a], -1), "LA"),
        "rgb": Image.fromarray(rgb, "RGB"),
        "rgba": Image.fromarray(np.concatenate([rgb, 255 - a[..., None]], -1), "RGBA"),
        "palette": Image.fromarray(rgb, "RGB").quantize(64),
    }
    for name, image in images.items():
        image.save(tmp_path / f"{name}.png")
    return a / 255.0


@pytest.mark.parametrize("mode", ["gray8", "gray16", "gray-alpha", "rgb", "rgba", "palette"])
def test_png_of_any_bit_depth_and_layout_loads_into_0_1(tmp_path, mode):
    """A 16-bit PNG loaded as 0–65535 (the benchmark then scored −92 dB); gray + alpha crashed
    in the RGB → gray conversion. Alpha is dropped; values are scaled by the bit depth."""
    expected = torch.from_numpy(_png_modes(tmp_path)).float()
    img = data.load_image(tmp_path / f"{mode}.png")
    assert img.shape == (1, 1, 6, 32) and img.dtype == torch.float32
    assert torch.allclose(img[0, 0], expected, atol=2e-3)
    assert data.load_image(tmp_path / f"{mode}.png", gray=False).shape[1] in (1, 3)


@pytest.mark.parametrize("array, why", [
    (np.zeros(10), "shape"), (np.zeros((4, 4, 5)), "shape"), (np.zeros((0, 4)), "shape"),
    (np.full((4, 4), 2.5), "float64 with values in"), (np.full((4, 4), 7, dtype=np.int32), "range is unknown"),
])
def test_what_cannot_be_an_image_is_refused_by_name(array, why):
    with pytest.raises(ValueError, match=f"photo.png.*{why}|photo.png has {why}"):
        data.image_to_tensor(array, name="photo.png")


def test_a_corrupt_or_truncated_image_file_is_named(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8) + 9, "L").save(tmp_path / "ok.png")
    full = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    for bad in ("cut.png", "junk.png"):
        with pytest.raises(ValueError, match=f"cannot read the image .*{bad}"):
            data.load_image(tmp_path / bad)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9/KAIR", "file:///nonexistent/KAIR"], ids=["port-9", "file"])
def test_download_offline_says_so_and_leaves_nothing_behind(tmp_path, base_url, capsys):
    """Offline (nothing listens on loopback port 9; a file:// path that does not exist) the
    download raised a raw URLError and left an empty temporary file in the data folder."""
    kept = tmp_path / "existing"
    kept.mkdir()
    for root in (kept, tmp_path / "new" / "deeper"):
        with pytest.raises(ConnectionError, match="seems to be offline.*set DEBLUR_EDU_DATA"):
            data.download("set12/09.png", root, base_url=base_url)
    assert [p.name for p in tmp_path.rglob("*")] == ["existing"]  # no temporary file, no new folder
    with pytest.raises(SystemExit) as exit_:
        data.main(["download", "--dir", str(kept), "--base-url", base_url])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "seems to be offline" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m deblur_edu.data: error: cannot download")
    assert list(kept.iterdir()) == []
