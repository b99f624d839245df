"""Every stage runs on the trainer's root device, on a cache hit too: BLS features, the CAM pass, the seed export."""
from __future__ import annotations

import src.bls.fitting as bls_fitting
import src.evaluation.export as export_module
import src.run as run_module
from src.evaluation import CamEvaluation
from src.run import run_job
from tests.helpers import compose_config


def test_bls_cams_and_export_run_on_the_trainers_device_on_a_cache_hit(tiny_overrides, monkeypatch):
    run_job(compose_config(tiny_overrides + ["proportion=50"]))  # trains and caches the classifier
    seen = {}
    job_ranks = run_module.job_ranks

    def spy_ranks(cfg, trainer):
        seen["trainer"] = trainer.strategy.root_device
        return job_ranks(cfg, trainer)

    def spy_features(net, dataloader, stages, device):
        seen["bls"] = (device, next(net.parameters()).device)
        return extract(net, dataloader, stages, device)

    def spy_cam(self):
        seen["cam"] = (self.device, next(self.net.parameters()).device)
        return on_test_start(self)

    def spy_export(net, cam, datamodule, split, out_dir, **kwargs):
        seen["export"] = kwargs["device"]
        return export_seeds(net, cam, datamodule, split, out_dir, **kwargs)

    extract, on_test_start, export_seeds = (bls_fitting.extract_gap_features, CamEvaluation.on_test_start,
                                            export_module.export_seeds)
    monkeypatch.setattr(run_module, "job_ranks", spy_ranks)
    monkeypatch.setattr(bls_fitting, "extract_gap_features", spy_features)
    monkeypatch.setattr(CamEvaluation, "on_test_start", spy_cam)
    monkeypatch.setattr(export_module, "export_seeds", spy_export)
    results = run_job(compose_config(tiny_overrides + ["proportion=50", "overwrite=true", "export.seeds=true"]))
    assert results["classifier"]["cache_hit"]
    device = seen["trainer"]
    assert seen["bls"] == (device, device) and seen["cam"] == (device, device) and seen["export"] == device
