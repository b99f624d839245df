"""DDP (gloo, CPU ranks started by the job) on every path (issue 19): the classifiers pass, the global batch, a
rank with nothing to score, and a failing rank that ends its own job only, with its one-line error last."""
from __future__ import annotations

import json

import pytest

from src.config.checks import ConfigError
from src.runtime.rank_failure import FailureWatch, RankFailed, StopOnRankFailure, one_line
from src.runtime.ranks import Rank, check_global_batch
from src.run import run_job
from tests.conftest import TINY_JOB
from tests.data.layouts import make_voc
from tests.helpers import compose_config, run_cli

CPU_DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]
TIMEOUT_S = 1200  # ~1 min on two idle cores; several on a machine shared at high load
BAD_IMAGE = "2008_000002"  # the last of the tiny VOC layout's 3 val images: rank 1's share of 2 ranks


def test_global_batch_is_shared_by_the_ranks_or_a_one_line_error():
    assert [Rank(0, n).batch_share(16) for n in (1, 2, 4)] == [16, 8, 4]
    with pytest.raises(ConfigError, match=r"data.batch_size=8 is the global batch .* 3 DDP ranks"):
        check_global_batch(8, 3)


def test_an_error_from_a_loader_worker_is_its_original_line():
    error = ValueError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                       "last):\n  File \"x.py\", line 1\nsrc.data.image_io.DatasetError: /d/a.jpg: unreadable image")
    assert one_line(error) == "/d/a.jpg: unreadable image"
    assert one_line(RuntimeError("first\nsecond")) == "first"


@pytest.mark.slow
def test_global_batch_that_does_not_divide_stops_before_any_rank_starts(tiny_overrides):
    result = run_cli(tiny_overrides + CPU_DDP + ["trainer.devices=3"], timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.batch_size=8 is the global batch")


@pytest.mark.slow
def test_classifiers_pass_under_ddp_trains_each_classifier_once(cache_dir, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    result = run_cli(["-m", "job=classifiers", "cam=cam", "proportion=5,10", *TINY_JOB, *CPU_DDP,
                      "trainer.devices=2", f"data.root={cache_dir / 'synthetic'}", f"paths.cache_dir={cache}",
                      f"hydra.sweep.dir={sweep}"], timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([d for d in sweep.iterdir() if d.is_dir()]) == 2  # no rank re-ran the sweep
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/classifier.json"))]
    assert [(s["trained"], s["ranks"]) for s in summaries] == [(True, 2), (True, 2)]
    entries = sorted(p.name for p in (cache / "classifiers").iterdir() if (p / "net.pt").is_file())
    assert entries == sorted(s["key"] for s in summaries) and len(entries) == 2
    assert result.stdout.count("[classifier ") == 2 and "[skip]" not in result.stdout


@pytest.mark.slow
def test_three_ranks_on_a_two_image_split_score_like_one_process(cache_dir, tmp_path):
    small = [*TINY_JOB, "data.num_val=2", "data.eval_batch_size=1", "data.batch_size=6", f"paths.cache_dir={cache_dir}"]
    job = tmp_path / "ddp"
    result = run_cli(small + CPU_DDP + ["trainer.devices=3", f"hydra.run.dir={job}"], timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads((job / "results.json").read_text())
    assert (ddp["ranks"], ddp["n_eval"], ddp["rank_batch_size"]) == (3, 2, 2)  # rank 2 scored nothing
    single = run_job(compose_config(small + ["trainer=cpu", "+trainer.precision=32-true",
                                             f"paths.output_dir={tmp_path / 'single'}"]))
    assert single["classifier"] == {**ddp["classifier"], "cache_hit": True}  # one recipe: the global batch
    assert (single["ranks"], single["rank_batch_size"]) == (1, 6)
    assert ddp["metrics"] == pytest.approx(single["metrics"], abs=1e-6)


@pytest.fixture
def broken_voc(tmp_path):
    """The tiny VOC layout with one truncated val image."""
    layout = make_voc(tmp_path / "voc")
    bad = layout.root / "JPEGImages" / f"{BAD_IMAGE}.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # header fine, pixels missing: fails when read, not when listed
    return layout.root, bad


def voc_ddp(root, tmp_path) -> list[str]:
    return ["debug=fast", "logger=csv", "data=voc2012", f"data.root={root}", "data.image_size=32", "data.num_workers=0",
            "cam=cam", *CPU_DDP, "trainer.devices=2", f"paths.cache_dir={tmp_path / 'cache'}"]


@pytest.mark.slow
def test_a_failing_rank_ends_its_job_with_its_error_as_the_last_line(broken_voc, tmp_path):
    root, bad = broken_voc
    result = run_cli(voc_ddp(root, tmp_path) + ["data.eval_split=val", f"hydra.run.dir={tmp_path / 'job'}"],
                     timeout=TIMEOUT_S)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: DDP rank 1 of 2: {bad}: unreadable image (Truncated File Read); expected a JPEG, "
                      "PNG, TIFF or BMP file"] * 2  # rank 1's own line, then rank 0's, the job's last
    assert result.stderr.strip().splitlines()[-1] == errors[-1]
    assert not (tmp_path / "job" / "results.json").exists()


@pytest.mark.slow
def test_a_failing_rank_ends_only_its_job_of_a_local_multirun(broken_voc, tmp_path):
    root, bad = broken_voc
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "data.eval_split=val,train", *voc_ddp(root, tmp_path), f"hydra.sweep.dir={sweep}"],
                     timeout=TIMEOUT_S)
    assert result.returncode == 1  # the sweep reports its failed job, after running the other
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] \
        == [f"error: DDP rank 1 of 2: {bad}: unreadable image (Truncated File Read); expected a JPEG, PNG, TIFF or "
            "BMP file"] * 2
    done = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert [(r["ranks"], r["n_eval"]) for r in done] == [(2, 5)]  # the train split's job completed


@pytest.mark.slow
def test_pretraining_under_ddp_follows_the_rank_protocol(tmp_path):
    tiny = ["data.image_size=24", "data.num_train=24", "data.num_val=8", "data.batch_size=8", "trainer.max_steps=3",
            "checkpoint_every=1", "progress_bar=false", "trainer.accelerator=cpu", "+trainer.strategy=ddp",
            "trainer.devices=2", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli(tiny, module="src.pretrain", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    [entry] = (tmp_path / "cache" / "pretrained").glob("synthetic_pretrained-*/")
    assert json.loads((entry / "meta.json").read_text())["steps"] == 3 and (entry / "backbone.pt").is_file()
    assert result.stdout.count("[pretrained]") == 1 and not list(entry.parent.glob(".*partial"))


def test_a_rank_busy_with_its_own_batches_stops_at_the_next_once_another_failed(tmp_path):
    watch = FailureWatch(tmp_path, world=2, children=[], exclusive=False)
    stop = StopOnRankFailure(watch)
    stop.on_test_batch_start(None, None, {}, 0)  # nothing reported: the pass goes on
    watch.found = "DDP rank 1 of 2: /d/a.jpg: unreadable image"
    with pytest.raises(RankFailed, match="rank 1 of 2: /d/a.jpg"):
        stop.on_test_batch_start(None, None, {}, 1)
    with pytest.raises(RankFailed):
        stop.on_train_batch_start(None, None, {}, 0)
