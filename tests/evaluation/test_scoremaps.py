"""wsolevaluation's scoremap_root (src/evaluation/scoremaps.py): paths from image ids, float64 maps exactly the
float32 ones scored, and the evaluation refusing score maps where no WSOL metric makes them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.cams import CamSpec
from src.evaluation import CamEvaluation
from src.evaluation.scoremaps import ScoremapWriter, scoremap_path
from tests.helpers import small_resnet


def test_an_image_id_that_is_a_path_gives_subfolders_and_keeps_its_extension(tmp_path):
    assert scoremap_path(tmp_path, "val/0bt_c3/1cd9ac0169ec7df0.jpg") == tmp_path / "val/0bt_c3/1cd9ac0169ec7df0.jpg.npy"
    assert scoremap_path(tmp_path, "val_00003") == tmp_path / "val_00003.npy"
    for bad in ("../escape.jpg", "/abs/x.jpg", "a/../../b"):
        with pytest.raises(ValueError, match="relative path inside the scoremap root"):
            scoremap_path(tmp_path, bad)


def test_maps_are_written_as_float64_equal_to_the_scored_float32(tmp_path):
    maps = torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0))  # float32, as wsol_scoremaps gives
    writer = ScoremapWriter(tmp_path / "scoremaps")
    writer(maps, ["val/a/1.jpg", "val/b/2.jpg"])
    assert writer.written == 2
    for image_id, expected in zip(["val/a/1.jpg", "val/b/2.jpg"], maps):
        loaded = np.load(tmp_path / "scoremaps" / f"{image_id}.npy")
        assert loaded.dtype == np.float64 and loaded.shape == (224, 224)
        assert np.array_equal(loaded.astype(np.float32), expected.numpy())
    assert not list((tmp_path / "scoremaps").rglob("*.tmp*"))
    with pytest.raises(ValueError, match="one map per id"):
        writer(maps, ["only_one"])


def test_score_maps_need_a_wsol_metric(tmp_path):
    net = small_resnet(3)
    with pytest.raises(ValueError, match="export.scoremaps=true: .*PxAP or MaxBoxAccV2"):
        CamEvaluation(net, CamSpec("cam", ["layer4"]), 3, seed_background=True, ignore_index=255,
                      metric_names=["seed_mIoU"], seed_thresholds=[0.1], scoremap_dir=str(tmp_path))
