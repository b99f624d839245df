"""A job's timings charge each stage exactly the seconds it spent (issue 15, made checkable in issue 20).

`time.perf_counter` is replaced by a clock that stands still except where a stage's stand-in advances it by a
known amount, so every phase has an exact expected value: a lap taken at the wrong place (BLS time charged to
training), a phase counted twice or left out, fails.
"""
from __future__ import annotations

import time

import src.bls.fitting as bls_fitting
import src.jobs.cam_job as cam_job_module
import src.run as run_module
from src.cams.engine import CamEngine
from src.evaluation import CamEvaluation
from src.run import run_job
from tests.helpers import assert_timings_add_up, compose_config


class FakeClock:
    """`time.perf_counter` that only moves by `advance`."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def after(clock: FakeClock, seconds: float, function):
    """`function`, then `seconds` on the clock (a stage that took that long)."""
    def timed(*args, **kwargs):
        out = function(*args, **kwargs)
        clock.advance(seconds)
        return out
    return timed


def before(clock: FakeClock, seconds: float, function):
    def timed(*args, **kwargs):
        clock.advance(seconds)
        return function(*args, **kwargs)
    return timed


def test_each_phase_gets_exactly_the_seconds_its_stage_spent(tiny_overrides, monkeypatch):
    cfg = compose_config(tiny_overrides + ["seed=31", "cam=broadcam", "data.eval_batch_size=8"])  # 2 CAM batches
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(run_module, "build_job", after(clock, 7, run_module.build_job))
    monkeypatch.setattr(cam_job_module, "classifier_protocol", after(clock, 100, cam_job_module.classifier_protocol))
    monkeypatch.setattr(bls_fitting, "extract_gap_features", after(clock, 3, bls_fitting.extract_gap_features))
    monkeypatch.setattr(cam_job_module, "fit_cam_method", after(clock, 4, cam_job_module.fit_cam_method))
    monkeypatch.setattr(CamEngine, "maps_at", before(clock, 2, CamEngine.maps_at))  # inside cam_s
    monkeypatch.setattr(CamEvaluation, "test_step", before(clock, 1, CamEvaluation.test_step))  # the loop's share
    monkeypatch.setattr(cam_job_module, "save_cam_grid", after(clock, 5, cam_job_module.save_cam_grid))
    results = run_job(cfg)
    assert_timings_add_up(results, expected={
        "setup_s": 7, "train_s": 100, "bls_extract_s": 3, "bls_fit_s": 4, "cam_s": 2 * 2, "eval_s": 0,
        "eval_loader_s": 1 * 2, "write_s": 5})
