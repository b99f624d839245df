# Every target is listed in README.md.
PYTHON ?= python
export WANDB_MODE ?= offline

.PHONY: install run pretrain test slurm-up slurm-down bench sweep-demo docs-demo reproduce-voc reproduce-bcss reproduce-openimages report demo clean

VOC_ROOT ?= data/VOCdevkit/VOC2012
BCSS_ROOT ?= data/BCSS-WSSS
OPENIMAGES_ROOT ?= data/wsolevaluation
SWEEP ?= outputs/broadcam/multiruns/synthetic_demo

DEMO_SWEEP ?= outputs/broadcam/multiruns/synthetic_demo
# Extra overrides for every job of a reproduce-* grid, e.g. a cluster with 4 GPUs per job:
#   make reproduce-voc GRID_ARGS='hydra/launcher=slurm hydra.launcher.partition=gpu trainer=ddp trainer.devices=4'
GRID_ARGS ?=
# Extra overrides of the classifiers pass only, e.g. CLASSIFIER_ARGS=force_retrain=true
CLASSIFIER_ARGS ?=

install:  ## install the package with its test oracles and the SLURM launcher
	$(PYTHON) -m pip install -e ".[dev,slurm]"

run:  ## the default job: synthetic data, resnet18_small from scratch, 100 %, BroadCAM (~3 min on 2 cores)
	$(PYTHON) -m src.run

pretrain:  ## one-time pretraining on the disjoint synthetic world (conf/pretrain.yaml) -> outputs/cache/pretrained/
	$(PYTHON) -m src.pretrain

# Two test processes share the cores (each test runs one intra-op thread, tests/conftest.py); the SLURM tests run
# after them, one at a time, on the one-node cluster (they skip where none is up).
test:  ## the whole test suite (CPU; about 4 min on 2 cores without the SLURM tests)
	WANDB_MODE=disabled $(PYTHON) -m pytest -q -n 2 --ignore=tests/cluster
	WANDB_MODE=disabled $(PYTHON) -m pytest -q tests/cluster

slurm-up:  ## a one-node SLURM cluster on this machine (root; installs slurm-wlm, munge, slurmdbd, mariadb)
	bash scripts/slurm_local.sh up

slurm-down:  ## stop that cluster's daemons (state and logs kept under /var/lib/broadcam-slurm)
	bash scripts/slurm_local.sh down

bench:  ## every benchmark (scripts/bench.py subcommands); JSON under outputs/bench/
	$(PYTHON) scripts/bench.py cams
	$(PYTHON) scripts/bench.py bls
	$(PYTHON) scripts/bench.py eval
	$(PYTHON) scripts/bench.py sweep
	$(PYTHON) scripts/bench.py job

sweep-demo:  ## the demo grid (pretrained; proportion 1,2,5,10,100 × 4 CAM methods × seeds 0,1,2) on the CPU, then its report
	$(PYTHON) -m src.pretrain
	$(PYTHON) -m src.run -m experiment=synthetic_demo
	$(PYTHON) scripts/report.py $(DEMO_SWEEP)

docs-demo:  ## the README's demo figures: the demo sweep's report (tables, intervals, plots, seed grid) into docs/demo/
	$(PYTHON) scripts/report.py $(DEMO_SWEEP) --out docs/demo

# The reproduce-* grids run in two passes: first `job=classifiers` (src/jobs/classifiers_pass.py) with the CAM axis
# replaced by `cam=cam`, in a sweep folder of its own: one job per classifier trains it into the cache, no
# CAMs; then the full grid, whose jobs all load their classifier from the cache, so no job holds a GPU while
# waiting for another to train. CLASSIFIER_ARGS=force_retrain=true retrains them (once, in the first pass).
reproduce-voc:  ## the paper's VOC2012 grid (GPU), then its report; data root from VOC_ROOT
	$(PYTHON) -m src.run -m experiment=voc_wsss data.root=$(VOC_ROOT) job=classifiers cam=cam sweep_name=voc_wsss_classifiers $(GRID_ARGS) $(CLASSIFIER_ARGS)
	$(PYTHON) -m src.run -m experiment=voc_wsss data.root=$(VOC_ROOT) $(GRID_ARGS)
	$(PYTHON) scripts/report.py outputs/broadcam/multiruns/voc_wsss

reproduce-bcss:  ## the paper's BCSS-WSSS grid (GPU), then its report; data root from BCSS_ROOT
	$(PYTHON) -m src.run -m experiment=bcss_wsss data.root=$(BCSS_ROOT) job=classifiers cam=cam sweep_name=bcss_wsss_classifiers $(GRID_ARGS) $(CLASSIFIER_ARGS)
	$(PYTHON) -m src.run -m experiment=bcss_wsss data.root=$(BCSS_ROOT) $(GRID_ARGS)
	$(PYTHON) scripts/report.py outputs/broadcam/multiruns/bcss_wsss

reproduce-openimages:  ## the paper's OpenImages30k WSOL grid (GPU), then its report; root from OPENIMAGES_ROOT
	$(PYTHON) -m src.run -m experiment=openimages_wsol data.root=$(OPENIMAGES_ROOT) job=classifiers cam=cam sweep_name=openimages_wsol_classifiers $(GRID_ARGS) $(CLASSIFIER_ARGS)
	$(PYTHON) -m src.run -m experiment=openimages_wsol data.root=$(OPENIMAGES_ROOT) $(GRID_ARGS)
	$(PYTHON) scripts/report.py outputs/broadcam/multiruns/openimages_wsol

report:  ## tables, plots and the seed grid of a sweep: make report SWEEP=<sweep dir>
	$(PYTHON) scripts/report.py $(SWEEP)

demo:  ## seed grids (methods × proportions) of the synthetic demo sweep; run `make sweep-demo` first
	$(PYTHON) -m src.demo sweep=$(DEMO_SWEEP) 'cams=[broadcam,gradcam]' 'proportions=[1,5,100]' seed=0

clean:  ## remove run outputs and caches (keeps outputs/.gitkeep)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
