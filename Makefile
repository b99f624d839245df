# Every target is listed in README.md.
PYTHON ?= python
export WANDB_MODE ?= offline

.PHONY: install run test bench demo clean

DEMO_SWEEP ?= outputs/broadcam/multiruns/synthetic_demo

install:  ## install the package with its test oracles and the SLURM launcher
	$(PYTHON) -m pip install -e ".[dev,slurm]"

run:  ## the default job: synthetic data, ResNet-18, 100 %, default CAM method
	$(PYTHON) -m src.run

test:  ## the whole test suite (CPU, a few minutes on 2 cores)
	WANDB_MODE=disabled $(PYTHON) -m pytest -q

bench:  ## every benchmark; JSON under outputs/bench/
	$(PYTHON) scripts/bench_cams.py
	$(PYTHON) scripts/bench_bls.py
	$(PYTHON) scripts/bench_eval.py

demo:  ## seed grids (methods × proportions) of the synthetic demo sweep; run `make sweep-demo` first
	$(PYTHON) -m src.demo sweep=$(DEMO_SWEEP) 'cams=[broadcam,gradcam]' 'proportions=[1,2,5]'

clean:  ## remove run outputs and caches (keeps outputs/.gitkeep)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
