"""`.ci/gpu-check`, the one prepared script for a lent GPU machine, and its chapter runner.

A GPU machine's Python has torch, scikit-image, pyyaml, tqdm, matplotlib and pytest but no nbval,
nbclient, ipykernel, ipywidgets (nor IPython): the script must run to the end there. Here it runs in
a virtual environment built without those packages, on this CPU, where its CUDA parts skip.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MISSING_ON_GPU_MACHINES = ("nbval", "nbclient", "ipykernel", "ipywidgets", "ipython", "jupyter", "nbformat",
                           "widgetsnbextension")


def load_runner():
    spec = importlib.util.spec_from_file_location("chapter_as_script", ROOT / ".ci" / "chapter_as_script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(path: Path, *cells: str) -> Path:
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []}
                                          for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.fixture(scope="module")
def gpu_machine_python(tmp_path_factory, make_environment) -> Path:
    """A virtual environment holding this one's packages except those a GPU machine lacks."""
    return make_environment(tmp_path_factory.mktemp("gpu-machine"), MISSING_ON_GPU_MACHINES)


def test_the_environment_is_a_gpu_machines(gpu_machine_python):
    probe = "import importlib.util as u; print([m for m in ('nbval', 'ipywidgets', 'IPython', 'torch', 'pytest') if u.find_spec(m)])"
    found = subprocess.run([str(gpu_machine_python), "-c", probe], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "['torch', 'pytest']"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs its GPU parts: run it there")
def test_gpu_check_runs_to_the_end_without_nbval_or_cuda(gpu_machine_python, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PY": str(gpu_machine_python)}
    run = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads((out / "gpu-check.json").read_text())
    status = {p["part"]: p["status"] for p in record["parts"]}
    assert status["tests"] == "ok"
    assert status["chapter 01_blur_as_a_linear_operator (quick)"] == "ok"
    for part in ("bench", "deq_cost", "reversible_cost", "throughput"):
        assert status[part] == "skipped (no CUDA)"
    assert "skipped" in (out / "gpu-tests.log").read_text()   # pytest ran (the addopts overridden), CUDA tests skip
    (chapter,) = json.loads((out / "chapters.json").read_text())
    assert chapter["status"] == "ok" and set(chapter["stubbed"]) == {"ipywidgets", "IPython.display"}
    assert len(list(out.iterdir())) <= 8


def test_gpu_check_never_writes_into_a_folder_that_holds_results(tmp_path):
    (tmp_path / "deq_cost-cuda.json").write_text("{}")
    run = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check")], env={**os.environ, "OUT": str(tmp_path)},
                         capture_output=True, text=True)
    assert run.returncode == 2 and "already holds files" in run.stderr
    assert (tmp_path / "deq_cost-cuda.json").read_text() == "{}"


def test_the_runner_skips_shell_lines_and_records_errors_with_their_cell(tmp_path):
    runner = load_runner()
    nb = notebook(tmp_path / "nb.ipynb", "import sys\nif False:\n    !pip install x\nvalue = 1\n%matplotlib inline",
                  "value += 1", "raise RuntimeError('broken on purpose')", "value = 100")
    record = runner.run(nb)
    assert record["status"] == "error" and record["error_cell"] == 2
    assert record["error"] == "RuntimeError: broken on purpose"


def test_the_runner_stops_a_chapter_past_its_limit(tmp_path):
    runner = load_runner()
    looping = "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n    except Exception:\n        pass"
    nb = notebook(tmp_path / "nb.ipynb", "x = 0", looping)  # a chapter's own `except Exception` cannot swallow it
    record = runner.run(nb, limit=0.5)
    assert record["status"] == "timeout" and record["error_cell"] == 1 and record["seconds"] < 5


def test_the_widget_stand_in_accepts_what_chapters_do():
    runner = load_runner()
    widgets = runner.stub_module("ipywidgets")
    box = widgets.VBox([widgets.FloatSlider(value=0.5, min=0, max=1), widgets.Output()])
    box.children[0].observe(lambda change: None, names="value")
    with widgets.Output():
        pass
    with pytest.raises(AttributeError):
        widgets.__wrapped__


# ----- book/gpu.md, rendered from the GPU run's files ------------------------------------------------------
from deblur_edu.bench.report import block_bounds  # noqa: E402
from deblur_edu.experiments import gpu_report, train_throughput  # noqa: E402


def test_the_gpu_page_shows_the_kept_runs_files():
    content, i, j = block_bounds(ROOT / "book" / "gpu.md", gpu_report.BLOCK)
    shown = content[i:j].split("-->", 1)[1].strip()
    assert shown == gpu_report.render(ROOT / "benchmarks" / "gpu").strip(), \
        "book/gpu.md is stale: python -m deblur_edu.experiments.gpu_report --write book/gpu.md"


def test_the_page_reads_every_figure_from_a_gpu_check_run(tmp_path):
    env = {"commit": "abcdef0123456789", "gpu": "NVIDIA T4", "device": "cuda", "torch": "2.9.0+cu126",
           "date": "2027-01-02T03:04:05+00:00"}
    (tmp_path / "gpu-check.json").write_text(json.dumps({"environment": env, "parts": []}))
    (tmp_path / "throughput-cuda.json").write_text(json.dumps({"rows": [
        {"model": "rgdn", "preset": "denoiser-full", "batch": 16, "patch": 128, "steps_per_second": 21.234}]}))
    (tmp_path / "reversible_cost-cuda.json").write_text(json.dumps({"rows": [
        {"columns": 4, "reversible_peak_bytes": 3 * 2**20, "plain_peak_bytes": 6 * 2**20, "ratio": 0.5}]}))
    (tmp_path / "chapters.json").write_text(json.dumps([
        {"notebook": "03_x.ipynb", "status": "timeout", "seconds": 25.04, "cuda_peak_mb": 1234.5}]))
    text = gpu_report.render(tmp_path)
    assert "NVIDIA T4" in text and "`abcdef0`" in text and "2027-01-02" in text
    assert "| rgdn:denoiser-full | 16 | 128² | 21.23 |" in text
    assert "| 4 | 3.0 | 6.0 | 0.50 |" in text
    assert "| 03_x.ipynb | timeout | 25.0 | 1,234 |" in text


def test_a_folder_that_is_no_gpu_run_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither gpu-check.json nor provenance.md"):
        gpu_report.render(tmp_path)
    (tmp_path / "provenance.md").write_text("some notes without the facts")
    with pytest.raises(ValueError, match="does not state the commit"):
        gpu_report.render(tmp_path)


def test_training_throughput_runs_the_training_loop(tmp_path):
    row = train_throughput.measure("rgdn", "tiny", batch=2, patch=24, steps=1, device=torch.device("cpu"))
    assert row["measured_steps"] == 1 and row["steps_per_second"] > 0 and row["batch"] == 2 and row["patch"] == 24
    with pytest.raises(argparse.ArgumentTypeError, match="MODEL:PRESET"):
        train_throughput.parse_runs("rgdn-denoiser-full")


def test_a_run_without_its_commit_is_not_shown(tmp_path):
    (tmp_path / "gpu-check.json").write_text(json.dumps({"environment": {"commit": "", "device": "cuda", "torch": "x",
                                                                         "date": "2027-01-01"}, "parts": []}))
    with pytest.raises(ValueError, match="GIT_COMMIT"):
        gpu_report.render(tmp_path)
