"""Chapter 7's comparison: one command, one JSON, the same table in the README and the book."""

import json
from pathlib import Path

import pytest

from deblur_edu.bench import compare
from deblur_edu.bench.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "benchmarks" / "comparison.json"


def test_every_compared_method_is_registered_and_every_checkpoint_names_its_model():
    """A checkpoint's own metadata names the model it rebuilds (no second list to keep in step)."""
    from deblur_edu.zoo import MODELS, available, metadata

    assert set(compare.COMPARED) <= set(METHODS) and set(compare.QUICK) <= set(compare.COMPARED)
    needed = {METHODS[m].checkpoint for m in compare.COMPARED} - {None}
    for name in needed:
        if available(name):
            assert metadata(name)["model_name"] in MODELS, name


def test_the_command_writes_json_and_the_readme_block(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))  # the README takes benchmark results, never the fallback's
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- compare:start -->\nold\n<!-- compare:end -->\nb\n")
    out = tmp_path / "cmp.json"
    compare.main(["--quick", "--methods", "wiener-taper,rgdn", "--json", str(out), "--readme", str(readme),
                  "--figure", str(tmp_path / "fig.png")])
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    result = json.loads(out.read_text())
    assert [r["method"] for r in result["results"]] == ["wiener-taper"] * 4 + ["rgdn"] * 4
    assert all(0 < r["blur_effect"] < 1 for r in result["results"])
    rgdn = next(m for m in result["methods"] if m["method"] == "rgdn")
    assert rgdn["training"]["minutes"] > 0 and rgdn["chapter"] == 3
    assert "old" not in readme.read_text() and compare.markdown(result) in readme.read_text()


def test_parameters_count_what_runs_at_test_time():
    from deblur_edu.learned import AdaRevD, ReblurDeblurrer

    pair = ReblurDeblurrer(width=4, levels=1, reblur_weight=1.0, reblur_features=4)
    deblurrer = sum(p.numel() for p in pair.deblurrer.parameters())
    assert compare.inference_parameters(pair, "reblur") == deblurrer
    assert compare.inference_parameters(pair, "reblur-tta") == sum(p.numel() for p in pair.parameters())
    model = AdaRevD(width=4, levels=2, columns=2)
    unused = sum(p.numel() for m in (model.decoder.encoder.ups, model.decoder.encoder.decoders,
                                     model.decoder.encoder.head) for p in m.parameters())
    assert compare.inference_parameters(model, "adarevd") == sum(p.numel() for p in model.parameters()) - unused


@pytest.mark.skipif(not SHIPPED.is_file(), reason="make compare has not been run")
def test_the_readme_table_is_the_shipped_comparison():
    table = compare.markdown(json.loads(SHIPPED.read_text()))
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- compare:start -->\n", 1)[1].split("\n<!-- compare:end -->", 1)[0]
    assert block == table, "regenerate with: make compare"


def test_an_unknown_method_is_a_clear_error(cli_error):
    assert "unknown method 'nope'" in cli_error(compare.main, ["--quick", "--methods", "nope"])


@pytest.mark.parametrize("argv, says", [
    (["--methods", ","], "--methods: names nothing"),
    (["--readme", "nope.md"], "nope.md does not exist"),
    (["--device", "gpu7"], "unknown device 'gpu7'"),
])
def test_user_mistakes_are_one_line_errors_before_the_run(argv, says, cli_error, monkeypatch):
    """They were tracebacks (or, for ',', a run of nothing that exited 0)."""
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    assert says in cli_error(compare.main, ["--quick", *argv])


def test_fallback_results_are_not_written_into_the_readme(tmp_path, monkeypatch, cli_error):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path))  # no benchmark data: the offline fallback
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- compare:start -->\nold\n<!-- compare:end -->\n")
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    assert "offline fallback" in cli_error(compare.main, ["--quick", "--readme", str(readme)])
    assert "old" in readme.read_text()


def test_training_cost_counts_the_checkpoints_a_model_is_built_on():
    from deblur_edu.zoo.checkpoints import load_metadata
    from deblur_edu.zoo import WEIGHTS_DIR

    own = lambda name: load_metadata(WEIGHTS_DIR / f"{name}.pt")["training"]["wall_seconds"] / 60
    bank = load_metadata(WEIGHTS_DIR / "reblur-cpu.pt")["training"]["first_stage_seconds"] / 60  # counted once
    total = compare.training_cost("reblur-cpu")["minutes"]
    assert abs(total - (own("reblur-cpu") + bank + own("blind-refiner-cpu") + own("reblur-module-cpu"))) < 1e-9
    assert compare.training_cost("reblur-l1-cpu")["minutes"] == own("reblur-l1-cpu")


def test_update_reruns_the_named_methods_and_keeps_the_others(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))
    out = tmp_path / "cmp.json"
    compare.main(["--quick", "--methods", "blurred,wiener-taper", "--json", str(out)])
    first = json.loads(out.read_text())
    kept = [r for r in first["results"] if r["method"] == "blurred"]
    monkeypatch.setattr(compare, "evaluate", lambda bench, m, b, s, *a: {**next(
        r for r in first["results"] if (r["method"], r["boundary"], r["sigma"]) == (m, b, s)), "psnr": 99.0})
    compare.main(["--quick", "--methods", "wiener-taper", "--json", str(out), "--update"])
    merged = json.loads(out.read_text())
    assert [r for r in merged["results"] if r["method"] == "blurred"] == kept
    assert [r["psnr"] for r in merged["results"] if r["method"] == "wiener-taper"] == [99.0] * 4
    assert [m["method"] for m in merged["methods"]] == ["blurred", "wiener-taper"]  # the book's order
    assert merged["environment"]["updates"][0]["methods"] == ["wiener-taper"]
    assert "Re-run later with `--update`" in compare.markdown(merged) and "`wiener-taper`" in compare.markdown(merged)
    compare.main(["--quick", "--methods", "wiener-taper", "--json", str(out), "--update"])  # again: the footnote
    twice = json.loads(out.read_text())  # names the latest run only, the history keeps both
    assert len(twice["environment"]["updates"]) == 2 and compare.markdown(twice).count("Re-run later") == 1


def test_drop_takes_methods_out_without_running_and_the_footnote_says_so(tmp_path, data_dir, monkeypatch, cli_error):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))
    out = tmp_path / "cmp.json"
    compare.main(["--quick", "--methods", "blurred,wiener-taper,tv", "--json", str(out)])
    first = json.loads(out.read_text())
    monkeypatch.setattr(compare, "evaluate", lambda *a: {**first["results"][0], "method": "tv", "psnr": 99.0})
    compare.main(["--quick", "--methods", "tv", "--json", str(out), "--update"])
    monkeypatch.setattr(compare, "evaluate", lambda *a: pytest.fail("--drop ran a method"))
    compare.main(["--drop", "tv", "--json", str(out)])
    dropped = json.loads(out.read_text())
    assert [m["method"] for m in dropped["methods"]] == ["blurred", "wiener-taper"]
    assert {r["method"] for r in dropped["results"]} == {"blurred", "wiener-taper"}
    assert dropped["results"] == [r for r in first["results"] if r["method"] != "tv"]
    table = compare.markdown(dropped)
    assert "Taken out with `--drop`" in table and "`tv`" in table and "Re-run later" not in table
    assert "not in the comparison" in cli_error(compare.main, ["--drop", "tv", "--json", str(out)])
    assert "runs nothing" in cli_error(compare.main, ["--drop", "blurred", "--json", str(out), "--update"])
    assert "name an existing one" in cli_error(compare.main, ["--drop", "blurred"])


@pytest.mark.parametrize("argv, says", [
    (["--update", "--methods", "tv"], "give both"),
    (["--update", "--json", "x.json"], "give both"),
    (["--update", "--methods", "tv", "--json", "nope.json"], "nope.json does not exist"),
])
def test_update_needs_methods_and_an_existing_comparison(argv, says, cli_error, monkeypatch):
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    assert says in cli_error(compare.main, ["--quick", *argv])


def test_update_refuses_a_comparison_of_another_protocol(tmp_path, data_dir, monkeypatch, cli_error):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))
    out = tmp_path / "cmp.json"
    compare.main(["--quick", "--methods", "blurred", "--json", str(out)])
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    assert "run the whole comparison instead" in cli_error(compare.main, ["--methods", "blurred", "--json", str(out), "--update"])


def test_update_from_a_benchmark_run_takes_its_rows_without_running(tmp_path, data_dir, monkeypatch, cli_error):
    """--from-bench: the rows a bench run wrote for the same protocol are merged, nothing runs; another
    protocol, a missing setting or no --update are one-line errors."""
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))
    out = tmp_path / "cmp.json"
    compare.main(["--quick", "--methods", "blurred,wiener-taper", "--json", str(out)])
    first = json.loads(out.read_text())
    bench_rows = [{**r, "psnr": 77.0} for r in first["results"] if r["method"] == "wiener-taper"]
    bench_env = {**first["environment"], "command": "python -m deblur_edu.bench --methods wiener-taper", "commit": "abc"}
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"results": bench_rows, "environment": bench_env}))
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    compare.main(["--quick", "--methods", "wiener-taper", "--json", str(out), "--update", "--from-bench", str(bench_file)])
    merged = json.loads(out.read_text())
    assert [r["psnr"] for r in merged["results"] if r["method"] == "wiener-taper"] == [77.0] * 4
    assert [r for r in merged["results"] if r["method"] == "blurred"] == first["results"][:4]
    update = merged["environment"]["updates"][-1]
    assert update["methods"] == ["wiener-taper"] and update["commit"] == "abc" and "--from-bench" in update["command"]

    bench_file.write_text(json.dumps({"results": bench_rows[:3], "environment": bench_env}))
    argv = ["--quick", "--methods", "wiener-taper", "--json", str(out), "--update", "--from-bench", str(bench_file)]
    assert "lacks wiener-taper" in cli_error(compare.main, argv)
    bench_file.write_text(json.dumps({"results": bench_rows, "environment": {**bench_env, "crop": 64}}))
    assert "was measured on" in cli_error(compare.main, argv)
    assert "add --update" in cli_error(compare.main, [a for a in argv if a != "--update"])


@pytest.mark.skipif(not SHIPPED.is_file(), reason="make compare has not been run")
def test_the_table_marks_the_blind_methods_apart():
    """Item 5 of issue 24: a blind model is not listed as if it had been told the kernel."""
    lines = compare.markdown(json.loads(SHIPPED.read_text())).splitlines()
    rows = {line.split("`")[1]: line.split(" | ")[2] for line in lines if line.startswith("| `")}
    assert rows["tv"] == rows["pnp"] == "k, σ"
    assert rows["reblur-l1"] == rows["adarevd"] == "—"
    assert "*given*" in lines[-1]
