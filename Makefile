# deblur_edu — two entry points (see README):
#   make book    set up .venv and build the book, executing every notebook (the main job)
#   make test    set up .venv and run the whole test suite (what CI runs)
# and: make bench (the benchmark → benchmarks/foundation.json + README table),
#      make tune (choose hyper-parameters on the tune split),
#      make compare (every method side by side → benchmarks/comparison.json + README table)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# local/CI path: the CPU wheel of torch that lies on this machine's disk; the package
# itself only needs torch>=2.2 (Colab keeps its own)
TORCH_PIN ?= torch==2.13.0
# the project's benchmark data beside the checkout, when present (else the user cache)
ifneq ($(wildcard ../shared/data),)
export DEBLUR_EDU_DATA ?= $(abspath ../shared/data)
endif

.PHONY: setup assets book bench test tune rgdn-checkpoint denoiser-checkpoint deq-checkpoints reblur-checkpoints reblur-l1-checkpoint copy-runs adarevd-checkpoint blind-refiner-checkpoint blind-baseline compare clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# the book's JavaScript (widgets, RequireJS, MathJax) is served by the book itself
ASSETS := book/_extra/assets
book/node_modules/.package-lock.json: book/package.json book/package-lock.json
	cd book && npm ci --no-audit --no-fund --loglevel=error

$(ASSETS)/.copied: book/node_modules/.package-lock.json
	rm -rf $(ASSETS) && mkdir -p $(ASSETS)/html-manager $(ASSETS)/mathjax
	cp book/node_modules/requirejs/require.js $(ASSETS)/
	cp -r book/node_modules/@jupyter-widgets/html-manager/dist/. $(ASSETS)/html-manager/
	cp -r book/node_modules/mathjax/es5 $(ASSETS)/mathjax/
	touch $@

setup: $(VENV)/.installed $(ASSETS)/.copied

assets: $(ASSETS)/.copied

book: setup
	$(VENV)/bin/jupyter-book build -W -n --keep-going book/
	@echo "open book/_build/html/index.html"

# the foundation table: chapter 2's methods, scikit-image's baselines and chapter 3's RGDN (the later
# chapters' models have their own tables below it, and `make compare` runs every method)
FOUNDATION_METHODS := inverse,wiener,wiener-taper,rl-10,rl-30,rl-100,tv-circular,tv,hyper-laplacian,skimage-wiener,skimage-rl-10,skimage-rl-30,skimage-rl-100,rgdn
bench: setup
	$(PY) -m deblur_edu.bench --methods $(FOUNDATION_METHODS) --json benchmarks/foundation.json --readme README.md

tune: setup
	$(PY) -m deblur_edu.bench.tune

# the shipped RGDN checkpoint (chapter 3): RGDN's update unit with chapter 2's pretrained denoiser as its prior
# (preset rgdn-denoiser-cpu; needs deblur_edu/zoo/weights/denoiser-cpu): train (resumable), copy into the package,
# benchmark against TV on the test split and the extra split, record, and measure the PSNR per step
rgdn-checkpoint: setup
	$(PY) -m deblur_edu.train rgdn --config denoiser-cpu --out runs/rgdn-denoiser-cpu --resume --no-progress
	$(MAKE) copy-runs RUNS="rgdn-denoiser-cpu:rgdn-cpu"
	$(PY) -m deblur_edu.bench --methods tv,rgdn --boundaries valid --json benchmarks/rgdn.json --no-speed
	$(PY) -m deblur_edu.bench --methods tv,rgdn --split extra --boundaries valid --json benchmarks/rgdn_extra.json --no-speed
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/rgdn-cpu benchmarks/rgdn.json --method rgdn
	$(PY) -m deblur_edu.experiments.ch3_iterations --checkpoint rgdn-cpu --max-steps 24 --json benchmarks/rgdn_steps.json

# chapter 4's checkpoints (needs chapter 2's denoiser, deblur_edu/zoo/weights/denoiser-cpu: both start from it):
# the hqs DEQ (preset deq-hqs-cpu) fine-tuned with JFB and with implicit backprop (the two runs share the CPU,
# one thread each, so their wall-clock curves compare), then the feedforward comparator (feedforward-hqs-cpu:
# the same denoiser applied once, JFB's steps); copy, benchmark (test split and the extra split), record, measure the backward cost, and put the
# DEQs' benchmark rows into the comparison (chapter 7, README) without running them again.
# Same wall-clock budget: implicit backprop gets the preset's 500 steps; JFB gets the steps that cost the same
# time side by side. Measured side by side at commit f93342c over steps 20–40 (90 s validation excluded):
# 9.2 s per implicit step, 4.8 s per JFB step: 500 × 9.2 / 4.8 = 960
# (tests/test_shipped_deq.py checks that the shipped logs' budgets agree within 15 %).
DEQ_JFB_STEPS := 960
DEQ_RUNS := deq-hqs-cpu-jfb:deq-jfb-cpu deq-hqs-cpu-implicit-anderson:deq-implicit-cpu feedforward-hqs-cpu:feedforward-cpu
deq-checkpoints: setup
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train deq --config hqs-cpu --backward jfb --steps $(DEQ_JFB_STEPS) --resume --no-progress & \
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train deq --config hqs-cpu --backward implicit-anderson --resume --no-progress & \
	wait
	$(PY) -m deblur_edu.train feedforward --config hqs-cpu --resume --no-progress
	$(MAKE) copy-runs RUNS="$(DEQ_RUNS)"
	$(PY) -m deblur_edu.bench --methods tv,feedforward,deq-jfb,deq-implicit --json benchmarks/deq.json --no-speed \
	  --readme README.md --readme-block deq
	$(PY) -m deblur_edu.bench --methods tv,deq-jfb --split extra --boundaries valid --json benchmarks/deq_extra.json --no-speed
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/deq-jfb-cpu benchmarks/deq.json --method deq-jfb
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/deq-implicit-cpu benchmarks/deq.json --method deq-implicit
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/feedforward-cpu benchmarks/deq.json --method feedforward
	$(PY) -m deblur_edu.experiments.ch4_backward_cost --checkpoint deq-jfb-cpu --json benchmarks/deq_cost.json
	$(PY) -m deblur_edu.bench.compare --methods deq-jfb,deq-implicit --update --from-bench benchmarks/deq.json \
	  --json benchmarks/comparison.json --readme README.md --figure benchmarks/comparison.png

# chapter 5's reblurring, on its two-stage blind deblurrer (needs make blind-refiner-checkpoint and its bank): the
# reblurring module M_R and the independent judge, each trained alone against the frozen deblurrer, side by side on one
# CPU thread each; then the deblurrer fine-tuned with L1 + reblurring loss (that M_R a frozen critic) and, as its
# control, with L1 alone; the adaptation's learning rate chosen on the tune split, then the evaluation on the blind
# split (modules, table, paired bootstrap intervals, trend), recorded into the modules' metadata
reblur-checkpoints: setup
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train reblur --config module --resume --no-progress & p0=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train reblur --config judge --resume --no-progress & p1=$$!; \
	wait $$p0 && wait $$p1
	$(MAKE) copy-runs RUNS="reblur-module:reblur-module-cpu reblur-judge:reblur-judge"
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train reblur --config cpu --resume --no-progress & p0=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.train reblur --config l1-ft --resume --no-progress & p1=$$!; \
	wait $$p0 && wait $$p1
	$(MAKE) copy-runs RUNS="reblur-cpu:reblur-cpu reblur-l1-ft:reblur-l1-ft-cpu"
	$(PY) -m deblur_edu.experiments.ch5_reblur_eval --split tune --tta-sweep 1e-5,3e-5,1e-4,3e-4 --json benchmarks/reblur_tta_tune.json
	@echo "REBLUR_TTA in deblur_edu/bench/methods.py must carry the chosen lr (tests/test_shipped_reblur.py checks it)"
	$(PY) -m deblur_edu.experiments.ch5_reblur_eval --json benchmarks/reblur.json --readme README.md --record \
	  --tta-lr $$($(PY) -c "import json; print(json.load(open('benchmarks/reblur_tta_tune.json'))['chosen_lr'])")

# the end-to-end blind U-Net trained with L1 on 13-px shakes (reblur-l1, the one-step comparator; with snapshots)
reblur-l1-checkpoint: setup
	$(PY) -m deblur_edu.train reblur --config cpu-l1 --resume --no-progress
	$(MAKE) copy-runs RUNS="reblur-cpu-l1:reblur-l1-cpu"

# the learned Gaussian denoiser and plug-and-play (chapter 2's last section): train on the photographs,
# copy, measure it as a denoiser, choose pnp's schedule (iterations, x8 mode) with its λ per σ on the tune split (written
# into deblur_edu/bench/tuned_defaults.json), refine λ for those schedules on a finer grid (same split), benchmark
# pnp on the test split (README block) and on the second test set, record, re-run it in the comparison
# (chapter 7, README); and the synthesis speed
denoiser-checkpoint: setup
	$(PY) -m deblur_edu.train denoiser --config cpu --out runs/denoiser-cpu --resume --no-progress
	$(MAKE) copy-runs RUNS="denoiser-cpu:denoiser-cpu"
	$(PY) -m deblur_edu.experiments.ch2_denoising --json benchmarks/denoiser.json
	$(PY) -m deblur_edu.experiments.ch2_pnp_schedule --iterations 12 24 --variants plain x8 --lams 0.2 0.4 --json benchmarks/pnp_schedule.json
	$(PY) -m deblur_edu.bench.tune --methods pnp > benchmarks/tune_pnp.log && cat benchmarks/tune_pnp.log
	$(PY) -m deblur_edu.bench --methods tv,hyper-laplacian,pnp --boundaries valid circular --json benchmarks/pnp.json \
	  --no-speed --readme README.md --readme-block pnp
	$(PY) -m deblur_edu.bench --methods tv,hyper-laplacian,pnp --split extra --boundaries valid --json benchmarks/pnp_extra.json --no-speed
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/denoiser-cpu benchmarks/pnp.json --method pnp
	$(PY) -m deblur_edu.bench.compare --methods pnp --update --json benchmarks/comparison.json --readme README.md \
	  --figure benchmarks/comparison.png
	$(PY) -m deblur_edu.experiments.synthesis_speed --json benchmarks/synthesis_speed.json

# copy finished runs (RUNS: run:name pairs) to the shipped weights and their logs to benchmarks/
copy-runs:
	mkdir -p deblur_edu/zoo/weights
	for pair in $(RUNS); do run=$${pair%%:*}; name=$${pair##*:}; \
	  cp runs/$$run/model.pt deblur_edu/zoo/weights/$$name.pt; cp runs/$$run/model.json deblur_edu/zoo/weights/$$name.json; \
	  cp runs/$$run/log.jsonl benchmarks/$$name-log.jsonl; done

# chapter 6: four reversible sub-decoders + a degradation classifier on the frozen encoder of chapter 5's
# two-stage deblurrer, trained on its bank (needs make blind-refiner-checkpoint); copy, then measure peak training
# memory, PSNR per sub-decoder against that refiner and patch exiting on the blind split (decoder timings on one
# thread), and record them. The config's class thresholds: python -m deblur_edu.experiments.ch6_adarevd_eval --class-thresholds cpu
adarevd-checkpoint: setup
	$(PY) -m deblur_edu.train adarevd --config cpu --resume --no-progress
	cp runs/adarevd-cpu/model.pt deblur_edu/zoo/weights/adarevd-cpu.pt
	cp runs/adarevd-cpu/model.json deblur_edu/zoo/weights/adarevd-cpu.json
	cp runs/adarevd-cpu/log.jsonl benchmarks/adarevd-cpu-log.jsonl
	$(PY) -m deblur_edu.experiments.ch6_reversible_cost --json benchmarks/reversible_cost.json
	$(PY) -m deblur_edu.experiments.ch6_adarevd_eval --threads 1 --json benchmarks/adarevd.json --readme README.md \
	  --memory benchmarks/reversible_cost.json --record

# chapter 5's blind deblurrer, two stages: blind TV's estimates of 1,280 photograph crops computed once (two parts side
# by side, one CPU thread each; a part already built from the same recipe is kept), then the U-Net that corrects them
blind-refiner-checkpoint: setup
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.bench.first_stage --config cpu --part 0/2 & p0=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m deblur_edu.bench.first_stage --config cpu --part 1/2 & p1=$$!; \
	wait $$p0 && wait $$p1
	$(PY) -m deblur_edu.train blind-refiner --config cpu --resume --no-progress
	$(MAKE) copy-runs RUNS="blind-refiner-cpu:blind-refiner-cpu"

# the blind benchmarks: the kernel estimated from y (its defaults against one-at-a-time changes on the tune split
# first), then TV (blind-tv, classical) or plug-and-play with the learned denoiser (blind-pnp); chapter 5's two-stage
# deblurrer (blind-refiner: needs make blind-refiner-checkpoint) and its older blind U-Net (reblur-l1); TV told the
# kernel. Every estimate is aligned to the truth before scoring (--align); on the blind split and on Levin x Set12.
# The refiner's checkpoint records its blind-split figures; then blind-tv and blind-refiner go into the comparison
# (test split, not aligned, marked blind)
blind-baseline: setup
	$(PY) -m deblur_edu.experiments.ch5_blind_settings --json benchmarks/blind_settings.json
	$(PY) -m deblur_edu.bench --split blind --methods blurred,blind-tv,blind-pnp,blind-refiner,reblur-l1,tv --boundaries valid \
	  --sigmas 0.01 0.03 --align 4 --json benchmarks/blind.json --no-speed --readme README.md --readme-block blind
	$(PY) -m deblur_edu.bench --split test --methods blurred,blind-tv,blind-pnp,blind-refiner,reblur-l1,tv --boundaries valid \
	  --sigmas 0.01 0.03 --align 4 --json benchmarks/blind_levin.json --no-speed --readme README.md --readme-block blind-levin
	$(PY) -m deblur_edu.zoo.checkpoints deblur_edu/zoo/weights/blind-refiner-cpu benchmarks/blind.json --method blind-refiner
	$(PY) -m deblur_edu.bench.compare --methods blind-tv,blind-refiner --update --json benchmarks/comparison.json --readme README.md \
	  --figure benchmarks/comparison.png

# chapter 7 and the README: every method on the benchmark, one table (from the shipped checkpoints)
compare: setup
	$(PY) -m deblur_edu.bench.compare --json benchmarks/comparison.json --readme README.md --figure benchmarks/comparison.png

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) results .pytest_cache
