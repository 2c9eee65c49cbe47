"""The benchmark CLI's contract: arguments, protocol, table and JSON."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io

from deblur_edu.bench import report
from deblur_edu.bench import run as bench
from deblur_edu.bench.protocol import case_seed, load_benchmark, load_kernels
from deblur_edu.kernels import motion
from deblur_edu.physics import Blur
from deblur_edu.bench.methods import METHODS, load_defaults, weight_at

FIELDS = {"method", "boundary", "sigma", "psnr", "ssim", "blur_effect", "seconds_per_image", "cases", "warnings",
          "first_warning", "align"}


@pytest.fixture
def tiny_benchmark(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    g = np.random.default_rng(0)
    for i in range(2):
        rgb = (g.random((60, 70, 3)) * 255).astype(np.uint8)
        io.imsave(images / f"im{i}.png", rgb, check_contrast=False)
    kernels = tmp_path / "kernels.npz"
    np.savez(kernels, a=motion(5, 20)[0, 0].numpy(), b=np.ones((4, 4)) / 16)
    return images, kernels


def test_cli_writes_table_and_json(tiny_benchmark, tmp_path, capsys):
    images, kernels = tiny_benchmark
    out = tmp_path / "r.json"
    argv = ["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--sigmas", "0.01",
            "--methods", "wiener,tv,rl-10,skimage-wiener", "--json", str(out), "--device", "cpu", "--no-speed"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "tv" in printed and "PSNR / SSIM" in printed
    result = json.loads(out.read_text())
    assert len(result["results"]) == 4 * 2  # methods × boundaries
    for r in result["results"]:
        assert set(r) == FIELDS
        assert r["cases"] == 4 and np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1
    assert result["environment"]["torch"] == torch.__version__


def test_a_method_s_warnings_are_counted_and_summarised(tiny_benchmark, tmp_path, capsys, monkeypatch):
    """A warning (e.g. a DEQ solve stopped at its iteration cap) is counted per batch, the first
    kept in the JSON, and summarised under the table — not lost, and not repeated per case."""
    import warnings
    from dataclasses import replace

    def noisy_wiener(y, k, sigma, weight, defaults):
        warnings.warn("solve stopped at its cap", RuntimeWarning)
        return METHODS["wiener"](y, k, sigma, defaults)

    monkeypatch.setitem(METHODS, "noisy", replace(METHODS["wiener"], name="noisy", run=noisy_wiener, weight=None))
    images, kernels = tiny_benchmark
    out = tmp_path / "r.json"
    argv = ["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--sigmas", "0.01",
            "--boundaries", "valid", "--methods", "wiener,noisy", "--json", str(out), "--device", "cpu", "--no-speed"]
    assert bench.main(argv) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert (rows["wiener"]["warnings"], rows["wiener"]["first_warning"]) == (0, None)
    assert rows["noisy"]["warnings"] == 2  # one per kernel batch
    assert rows["noisy"]["first_warning"] == "RuntimeWarning: solve stopped at its cap"
    assert "noisy, valid, σ = 0.01: 2 warning(s) over 2 batches" in capsys.readouterr().out


def test_noise_seed_is_documented_formula():
    import hashlib

    key = b"test|09|3|valid|0.0100"
    assert case_seed("test", "09", 3, "valid", 0.01) == int(hashlib.sha256(key).hexdigest()[:15], 16)


def test_valid_case_depends_on_unseen_pixels(data_dir):
    b = load_benchmark("test", data_dir=data_dir)
    y, x = b.case("09", 3, "valid", 0.0)
    yc, _ = b.case("09", 3, "circular", 0.0)
    assert y.shape == x.shape == (1, 1, 256, 256)
    r = 13  # kernel 4 is 27×27
    assert torch.allclose(y[..., r:-r, r:-r], yc[..., r:-r, r:-r], atol=1e-5)
    assert not torch.allclose(y[..., :r, :], yc[..., :r, :], atol=1e-3)


def test_default_benchmark_is_levin_times_set12(data_dir):
    b = load_benchmark("test", data_dir=data_dir)
    assert sorted(b.images) == ["09", "10", "11", "12"] and len(b.kernels) == 8 and b.crop == 256
    t = load_benchmark("tune", data_dir=data_dir)
    assert sorted(t.images) == ["05", "07"] and t.crop == 224
    assert all(k.shape[-1] == 25 for k in t.kernels)  # camera shake, never Levin's


def test_fallback_without_data(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path))
    b = load_benchmark("test", fallback=True)
    assert "FALLING BACK" in b.note and len(b.images) == 4
    with pytest.raises(FileNotFoundError):
        load_benchmark("test")


def test_every_tuned_method_has_defaults():
    d = load_defaults()
    for name, m in METHODS.items():
        if m.weight:
            assert len(d["methods"][name][m.weight]) == 2
    assert d["split"] == "tune"


def test_weight_power_law_interpolation():
    assert weight_at(0.01, [0.01, 0.03], [1.0, 9.0]) == pytest.approx(1.0)
    assert weight_at(0.03, [0.01, 0.03], [1.0, 9.0]) == pytest.approx(9.0)
    assert weight_at(0.02, [0.01, 0.03], [1.0, 9.0]) == pytest.approx(4.0)


def test_load_kernels_from_folder(tmp_path):
    np.save(tmp_path / "k1.npy", np.ones((3, 3)))
    ks = load_kernels(tmp_path)
    assert len(ks) == 1 and abs(float(ks[0].sum()) - 1) < 1e-6


def test_unknown_method_is_refused(tiny_benchmark, cli_error):
    assert "unknown method 'nope'" in cli_error(bench.main, ["--methods", "nope"])


def test_readme_table_is_generated_from_the_committed_json():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = json.loads((root / "benchmarks/foundation.json").read_text())
    readme = (root / "README.md").read_text()
    assert report.markdown_table(out) in readme


def test_readme_deq_table_is_generated_from_the_committed_json():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = json.loads((root / "benchmarks/deq.json").read_text())
    readme = (root / "README.md").read_text()
    assert f"<!-- deq:start -->\n{report.markdown_table(out)}\n<!-- deq:end -->" in readme


def test_update_readme_fills_the_named_block_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- bench:start -->\nold\n<!-- bench:end -->\nb\n<!-- deq:start -->\nold\n<!-- deq:end -->\n")
    out = json.loads((Path(__file__).resolve().parent.parent / "benchmarks/deq.json").read_text())
    report.update_readme(readme, out, "deq")
    text = readme.read_text()
    assert "<!-- bench:start -->\nold\n<!-- bench:end -->" in text and report.markdown_table(out) in text
    with pytest.raises(ValueError, match="no <!-- other:start -->"):
        report.update_readme(readme, out, "other")


def test_learned_method_without_checkpoint_is_left_out_or_a_clear_error(monkeypatch, tmp_path):
    from deblur_edu.bench import methods
    from deblur_edu.zoo import shipped as zoo_shipped

    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(methods, "_MODELS", {})
    assert "rgdn" not in methods.available_methods()
    with pytest.raises(FileNotFoundError, match="make .*rgdn-checkpoint.*python -m deblur_edu.train MODEL --config cpu"):
        methods.get_method("rgdn")(torch.rand(1, 1, 32, 32), motion(5, 0), 0.01, {})


def test_training_recipe_scores_compare_models_with_tv_on_the_validation_batch():
    import warnings

    cfg = {"length": 4, "patch": 48, "kernel_size": 15, "sigma_range": [0.005, 0.02], "seed": 0}

    def do_nothing(y, k, sigma):  # the blurry observation, as if it were the answer
        warnings.warn("a capped solve", RuntimeWarning)
        return y

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes
        scores = bench.training_recipe_scores({"nothing": do_nothing}, cfg, torch.device("cpu"), size=4)
    assert set(scores) == {"TV", "nothing"}
    assert 15 < scores["nothing"] < scores["TV"] < 60
    assert scores == bench.training_recipe_scores({"nothing": do_nothing}, cfg, torch.device("cpu"), size=4)


@pytest.mark.parametrize("case", ["images missing", "images empty", "kernels missing", "data-dir missing",
                                  "data-dir empty"])
def test_a_given_path_without_data_is_an_error_never_replaced_by_fallback_data(tiny_benchmark, tmp_path, case):
    """Each of these ran on the offline stand-in images and kernels, exited 0 and wrote
    ``split: test`` — also discarding a valid --kernels given beside a missing --images."""
    images, kernels = tiny_benchmark
    (tmp_path / "empty").mkdir()
    args = {"images missing": dict(images_dir=tmp_path / "nope", kernels_path=kernels),
            "images empty": dict(images_dir=tmp_path / "empty", kernels_path=kernels),
            "kernels missing": dict(images_dir=images, kernels_path=tmp_path / "nope.npz"),
            "data-dir missing": dict(kernels_path=kernels, data_dir=tmp_path / "nope"),
            "data-dir empty": dict(data_dir=tmp_path / "empty")}[case]
    named = str(next(v for v in args.values() if "nope" in str(v) or "empty" in str(v)))
    with pytest.raises(FileNotFoundError) as err:
        load_benchmark("test", crop=40, fallback=True, **args)
    assert named in str(err.value)


def test_the_json_records_where_the_data_came_from(tiny_benchmark, data_dir, monkeypatch, tmp_path):
    images, kernels = tiny_benchmark
    assert load_benchmark("test", images, kernels, 40, fallback=True).data == "user"
    assert load_benchmark("test", kernels_path=kernels, crop=40, data_dir=data_dir).data == "user+set12"
    assert load_benchmark("test", data_dir=data_dir).data == "levin09+set12"
    assert load_benchmark("tune", data_dir=data_dir).data == "tune-shakes+set12"
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path))  # no path given, no data there: the fallback
    assert load_benchmark("test", fallback=True).data == "fallback"
    out = tmp_path / "r.json"
    bench.main(["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--sigmas", "0.01", "--boundaries",
                "valid", "--methods", "wiener", "--json", str(out), "--device", "cpu", "--no-speed"])
    assert json.loads(out.read_text())["environment"]["data"] == "user"


def test_readme_refuses_fallback_results_before_the_run(monkeypatch, tmp_path, capsys):
    """With no data, --readme overwrote the README's Levin × Set12 table with stand-in numbers."""
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- bench:start -->\nold\n<!-- bench:end -->\n")
    monkeypatch.setattr(bench, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--methods", "wiener", "--readme", str(readme), "--json", str(tmp_path / "r.json"), "--no-speed"])
    assert exit_.value.code == 2 and "offline fallback" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and "old" in readme.read_text()
    out = {"results": [], "environment": {"data": "fallback"}}
    with pytest.raises(ValueError, match="refusing"):
        report.update_readme(readme, out)


@pytest.mark.parametrize("content", ["no markers\n", "x\n<!-- bench:end -->\nold\n<!-- bench:start -->\n"],
                         ids=["no-markers", "reversed"])
def test_readme_markers_are_checked_before_the_run(tiny_benchmark, tmp_path, monkeypatch, content, cli_error):
    """The README was checked only after the whole run; reversed markers then failed with
    "not enough values to unpack"."""
    images, kernels = tiny_benchmark
    readme = tmp_path / "README.md"
    readme.write_text(content)
    monkeypatch.setattr(bench, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    argv = ["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--methods", "wiener", "--no-speed"]
    line = cli_error(bench.main, argv + ["--readme", str(readme)])
    assert "comes before" in line or "no <!-- bench:start -->" in line
    assert "nope.md does not exist" in cli_error(bench.main, argv + ["--readme", str(tmp_path / "nope.md")])
    assert readme.read_text() == content


@pytest.mark.parametrize("case", ["images missing", "kernels missing", "data-dir empty"])
def test_the_cli_names_a_missing_input_in_one_line_and_writes_nothing(tiny_benchmark, tmp_path, case, cli_error):
    """Before: exit 0 on stand-in data, with a JSON saying split: test."""
    images, kernels = tiny_benchmark
    (tmp_path / "empty").mkdir()
    args = {"images missing": ["--images", str(tmp_path / "nope"), "--kernels", str(kernels)],
            "kernels missing": ["--images", str(images), "--kernels", str(tmp_path / "nope.npz")],
            "data-dir empty": ["--data-dir", str(tmp_path / "empty")]}[case]
    out = tmp_path / "r.json"
    line = cli_error(bench.main, args + ["--crop", "40", "--methods", "wiener", "--json", str(out), "--no-speed"])
    assert line.startswith("python -m deblur_edu.bench: error:") and ("nope" in line or "empty" in line)
    assert not out.exists()


@pytest.mark.parametrize("flag, value, says", [
    ("--crop", "0", "--crop: must be a whole number ≥ 1"), ("--crop", "-10", "--crop: must be a whole number ≥ 1"),
    ("--sigmas", "nan", "--sigmas: must be a finite noise level ≥ 0"),
    ("--sigmas", "inf", "--sigmas: must be a finite noise level ≥ 0"),
    ("--methods", ",", "--methods: names nothing"),
    ("--device", "gpu7", "unknown device 'gpu7'"),
])
def test_bad_arguments_are_one_line_errors_before_the_run(tiny_benchmark, flag, value, says, cli_error):
    """--crop 0 silently became 256, --crop -10 failed deep inside, NaN/Inf σ raised from the
    noise after the data was loaded, and --methods ',' ran nothing and exited 0."""
    images, kernels = tiny_benchmark
    argv = ["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--methods", "wiener", "--no-speed"]
    assert says in cli_error(bench.main, argv + [flag, value])


def test_a_corrupt_image_in_images_is_named(tiny_benchmark, cli_error):
    images, kernels = tiny_benchmark
    good = (images / "im0.png").read_bytes()
    (images / "im1.png").write_bytes(good[: len(good) // 2])
    line = cli_error(bench.main, ["--images", str(images), "--kernels", str(kernels), "--crop", "40", "--no-speed"])
    assert "cannot read the image" in line and "im1.png" in line


def test_16_bit_images_are_scored_on_their_0_1_scale(tiny_benchmark, tmp_path):
    """A 16-bit PNG was loaded as 0–65535 and the benchmark scored around −92 dB."""
    from PIL import Image

    _, kernels = tiny_benchmark
    folder = tmp_path / "sixteen"
    folder.mkdir()
    ramp = np.add.outer(np.arange(60), np.arange(70)) / 128.0
    Image.fromarray((np.clip(ramp, 0, 1) * 65535).astype(np.uint16)).save(folder / "ramp.png")
    out = tmp_path / "r.json"
    bench.main(["--images", str(folder), "--kernels", str(kernels), "--crop", "40", "--sigmas", "0.01", "--boundaries",
                "valid", "--methods", "wiener", "--json", str(out), "--device", "cpu", "--no-speed"])
    assert json.loads(out.read_text())["results"][0]["psnr"] > 20


def test_non_blind_learned_methods_are_told_sigma_and_blind_ones_are_not(monkeypatch):
    """Item 0 of issue 23: rgdn, deq-* and feedforward get σ as the classical methods do."""
    from deblur_edu.bench import methods

    calls = {}

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, y, k, *rest):
            calls[self.name] = rest
            return y

    names = {"rgdn": "rgdn-cpu", "deq-jfb": "deq-jfb-cpu", "deq-implicit": "deq-implicit-cpu",
             "feedforward": "feedforward-cpu", "reblur-l1": "reblur-l1-cpu"}
    monkeypatch.setattr(methods, "_MODELS", {(c, "cpu"): Recorder(c) for c in names.values()})
    for method in names:
        methods.get_method(method).run(torch.rand(1, 1, 32, 32), motion(5, 0), 0.03, None, {})
    assert all(calls[names[m]] == (0.03,) for m in ("rgdn", "deq-jfb", "deq-implicit", "feedforward"))
    assert calls["reblur-l1-cpu"] == ()


def test_blind_methods_use_neither_the_kernel_nor_sigma():
    """Item 5 of issue 24: a method marked blind gets the same answer whatever k and σ it is handed."""
    from deblur_edu.bench import methods

    blind = [name for name, m in METHODS.items() if m.blind]
    assert {"blind-tv", "blind-pnp", "blind-refiner", "reblur-l1", "reblur", "reblur-tta", "adarevd"} <= set(blind)
    assert not any(METHODS[n].blind for n in ("tv", "pnp", "rgdn", "deq-jfb"))
    y = Blur(motion(7, 30), "valid")(torch.rand(1, 1, 72, 72))
    defaults = methods.load_defaults()
    for name in ("blind-tv", "blind-pnp", "blind-refiner"):
        first = methods.get_method(name)(y, motion(5, 0), 0.01, defaults)
        second = methods.get_method(name)(y, motion(9, 90), 0.03, defaults)
        assert torch.equal(first, second), name
