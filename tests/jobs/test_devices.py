"""Every stage runs on the trainer's root device, on a cache hit too: BLS features, the CAM pass, the seed export.

A CPU-only machine has one device, so "the trainer's device" and "the CPU by default" would be equal and the test
could not fail. The trainer's root device is therefore made `cpu:0`, a device that compares unequal to a bare
`cpu` (what a stage that ignored the trainer would use) while running on the same CPU: a stage given the default
device, or its net's, shows up as `cpu`, not `cpu:0`.
"""
from __future__ import annotations

import torch

import src.bls.fitting as bls_fitting
import src.evaluation.export as export_module
import src.run as run_module
from src.evaluation import CamEvaluation
from src.run import run_job
from tests.helpers import compose_config

ROOT = torch.device("cpu", 0)


def test_bls_cams_and_export_run_on_the_trainers_device_on_a_cache_hit(tiny_overrides, monkeypatch):
    run_job(compose_config(tiny_overrides + ["proportion=50"]))  # trains and caches the classifier
    assert ROOT != torch.device("cpu")
    seen = {}
    job_ranks = run_module.job_ranks

    def on_root_device(trainer, *args, **kwargs):
        trainer.strategy._root_device = ROOT  # the device every stage must be handed
        return job_ranks(trainer, *args, **kwargs)

    def spy_features(net, dataloader, stages, device):
        seen["bls"] = device
        return extract(net, dataloader, stages, device)

    def spy_cam(self):
        seen["cam"] = self.device
        return on_test_start(self)

    def spy_export(net, cam, datamodule, split, out_dir, **kwargs):
        seen["export"] = kwargs["device"]
        return export_seeds(net, cam, datamodule, split, out_dir, **kwargs)

    extract, on_test_start, export_seeds = (bls_fitting.extract_gap_features, CamEvaluation.on_test_start,
                                            export_module.export_seeds)
    monkeypatch.setattr(run_module, "job_ranks", on_root_device)
    monkeypatch.setattr(bls_fitting, "extract_gap_features", spy_features)
    monkeypatch.setattr(CamEvaluation, "on_test_start", spy_cam)
    monkeypatch.setattr(export_module, "export_seeds", spy_export)
    results = run_job(compose_config(tiny_overrides + ["proportion=50", "overwrite=true", "export.seeds=true"]))
    assert results["classifier"]["cache_hit"]
    assert seen == {"bls": ROOT, "cam": ROOT, "export": ROOT}
