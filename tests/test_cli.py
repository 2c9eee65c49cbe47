"""Every command line answers a user's mistake with one line and exit status 2, before its run.

bench, compare, train and the data download have their own tests (test_bench, test_compare,
test_train, test_data); these are the chapter measurement commands and the tuner.
"""

import importlib

import pytest

MISTAKES = [
    ("iterations", ["--checkpoint", "nope"], "nope.pt is missing"),
    ("iterations", ["--max-steps", "0"], "--max-steps: must be a whole number ≥ 1"),
    ("iterations", ["--sigmas", "nan"], "--sigmas: must be a finite noise level ≥ 0"),
    ("backward_cost", ["--modes", "jfb", "nope"], "unknown backward mode 'nope'"),
    ("backward_cost", ["--size", "0"], "--size: must be a whole number ≥ 1"),
    ("backward_cost", ["--checkpoint", "nope"], "nope"),
    ("reblur_eval", ["--sigma", "nan"], "--sigma: must be a finite noise level ≥ 0"),
    ("reblur_eval", ["--tta-sweep", "1e-3,-1", "--split", "tune"], "--tta-sweep: must be a finite number > 0"),
    ("reblur_eval", ["--readme", "nope.md"], "nope.md does not exist"),
    ("reblur_eval", ["--split", "tune"], "the tune split is for --tta-sweep"),
    ("reblur_eval", ["--trend-extra", "blind-tv"], "non-blind benchmark methods"),
    ("reblur_eval", ["--align", "-1"], "--align"),
    ("adarevd_eval", ["--checkpoint", "/nope/adarevd"], "/nope/adarevd"),
    ("adarevd_eval", ["--tile", "16", "--overlap", "16"], "0 <= overlap < tile"),
    ("reversible_cost", ["--columns", "0"], "--columns: must be a whole number ≥ 1"),
    ("reversible_cost", ["--device", "gpu7"], "unknown device 'gpu7'"),
    ("tune", ["--methods", "nope"], "'nope' has no weight to tune"),
    ("tune", ["--data-dir", "/nope"], "data directory /nope"),
    ("denoising", ["--sigmas", "0"], "--sigmas must lie in (0, 1)"),
    ("denoising", ["--checkpoint", "nope"], "nope.json is missing"),
    ("pnp_schedule", ["--starts", "2"], "each must be < 1"),
    ("pnp_schedule", ["--iterations", "0"], "--iterations: must be a whole number ≥ 1"),
    ("pnp_schedule", ["--apply", "nope.json"], "nope.json does not exist"),
    ("synthesis_speed", ["--batch", "0"], "--batch: must be a whole number ≥ 1"),
    ("synthesis_speed", ["--data-dir", "/nope"], "/nope"),
]


#: the module of each command (python -m deblur_edu.MODULE)
MODULES = {"iterations": "experiments.ch3_iterations", "backward_cost": "experiments.ch4_backward_cost",
           "reblur_eval": "experiments.ch5_reblur_eval",
           "adarevd_eval": "experiments.ch6_adarevd_eval", "reversible_cost": "experiments.ch6_reversible_cost",
           "tune": "bench.tune", "denoising": "experiments.ch2_denoising",
           "pnp_schedule": "experiments.ch2_pnp_schedule", "synthesis_speed": "experiments.synthesis_speed"}
#: each command's first expensive step: reaching it means the mistake was not caught before the run
RUN = {"iterations": "psnr_per_step", "backward_cost": "time_modes",
       "reblur_eval": "evaluate", "adarevd_eval": "per_sub_decoder", "reversible_cost": "measure",
       "tune": "tune_method", "denoising": "measure", "pnp_schedule": "sweep", "synthesis_speed": "measure"}


@pytest.mark.parametrize("command, argv, says", MISTAKES, ids=[f"{c}{' '.join(a)}" for c, a, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2_before_the_run(command, argv, says, cli_error, monkeypatch):
    """Each of these was a Python traceback (some only after minutes of running), or ran on."""
    module = importlib.import_module(f"deblur_edu.{MODULES[command]}")
    monkeypatch.setattr(module, RUN[command], lambda *a, **k: pytest.fail("the run started"))
    line = cli_error(module.main, argv)
    assert line.startswith(f"python -m deblur_edu.{MODULES[command]}: error:") and says in line


def test_user_errors_turns_value_and_os_errors_into_parser_errors_only(capsys):
    import argparse

    from deblur_edu import cli

    p = argparse.ArgumentParser(prog="tool")
    with pytest.raises(SystemExit) as exit_:
        with cli.user_errors(p):
            raise FileNotFoundError("no such\nfile")
    assert exit_.value.code == 2 and capsys.readouterr().err.endswith("tool: error: no such file\n")
    with pytest.raises(KeyError):  # a bug is not a user's mistake: its traceback stays
        with cli.user_errors(p):
            raise KeyError("bug")
