"""Seed export: IRN- and PuzzleCAM-layout `.npy` and palette PNGs at the original size, each dataset's seed rule
and palette, resuming, and peak memory that does not grow with the split."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from src.cams import CamSpec, create_cam
from src.data import BCSSDataModule, SyntheticDataModule, VOCSegmentationDataModule
from src.data.palettes import voc_palette
from src.evaluation.export import ExportCounts, SeedExport, export_seeds, seed_file_stem, seed_mask
from src.evaluation.protocol import gt_targets, seed_maps
from tests.data.layouts import BCSS_PALETTE, HEIGHT, WIDTH, make_bcss, make_voc
from tests.data.layouts import voc_palette as layout_voc_palette
from tests.helpers import small_resnet, synthetic_datamodule

OPTIONS = {"scales": [1.0, 0.5], "flip": True}  # the CAM config's multi-scale + flip must reach the maps
THRESHOLD = 0.3


def tiny_net(num_classes: int) -> torch.nn.Module:
    return small_resnet(num_classes)


def load_seed(out, image_id: str) -> tuple[dict, Image.Image]:
    stem = seed_file_stem(image_id)
    data = np.load(out / "npy" / f"{stem}.npy", allow_pickle=True).item()
    return data, Image.open(out / "png" / f"{stem}.png")


def resized_oracle(net: torch.nn.Module, sample: dict, keys: list[int], size: tuple[int, int]) -> np.ndarray:
    """The raw CAM of `keys` on an evaluation sample, resized to the original `size`, each divided by its max."""
    with create_cam("cam", net, ["layer4"], normalize=False) as cam:
        raw = cam(sample["image"][None], torch.tensor([keys]))
    resized = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)[0]
    return (resized / (resized.amax(dim=(1, 2), keepdim=True) + 1e-5)).numpy()


def synthetic_module(root, num_val: int, eval_batch_size: int = 4) -> SyntheticDataModule:
    return synthetic_datamodule(root, num_train=16, num_val=num_val, eval_batch_size=eval_batch_size)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_module(tmp_path_factory.mktemp("synthetic"), num_val=5)


def test_file_stems_flatten_ids_and_drop_image_extensions_only():
    assert seed_file_stem("val/0bt_c3/1cd9.jpg") == "val__0bt_c3__1cd9"
    assert seed_file_stem("2007_000032") == "2007_000032"
    assert seed_file_stem("TCGA-A1_MPP-0.2500+0[1101]") == "TCGA-A1_MPP-0.2500+0[1101]"
    assert seed_file_stem("a/b.PNG") == "a__b"


def test_palettes_are_the_datasets_own():
    assert voc_palette() == layout_voc_palette()  # the test layouts' independent VOC palette
    assert BCSSDataModule.palette(None) == BCSS_PALETTE  # the colours BCSS-WSSS masks are written with
    assert SyntheticDataModule.palette(None) == VOCSegmentationDataModule.palette(None) == voc_palette()
    assert voc_palette()[3:6] == [128, 0, 0] and voc_palette()[-3:] == [224, 224, 192]


def test_seed_rules_break_ties_like_irn():
    maps = torch.tensor([[[0.3, 0.8], [0.1, 0.5]], [[0.2, 0.9], [0.3, 0.4]]])  # classes 2 and 5
    keys = torch.tensor([2, 5])
    # a plane at 0.3: the tie (0.3 vs 0.3) goes to background, then the best of the classes, shifted by one
    assert seed_mask(maps, keys, 0.3, 255).tolist() == [[0, 6], [0, 3]]
    assert seed_mask(maps, keys, None, 4).tolist() == [[2, 5], [5, 2]]
    empty = torch.zeros(0, 2, 2)
    assert seed_mask(empty, keys[:0], 0.3, 255).tolist() == [[0, 0], [0, 0]]
    assert seed_mask(empty, keys[:0], None, 4).tolist() == [[4, 4], [4, 4]]


def test_synthetic_seeds_are_the_evaluations_maps(synthetic, tmp_path):
    net = tiny_net(synthetic.num_classes)
    counts = export_seeds(net, CamSpec("cam", ["layer4"], OPTIONS), synthetic, "val", tmp_path, threshold=THRESHOLD,
                          progress=False)
    assert counts == ExportCounts(written=5, skipped=0)
    samples = [synthetic.eval_set[i] for i in range(len(synthetic.eval_set))]
    images, labels = torch.stack([s["image"] for s in samples]), torch.stack([s["labels"] for s in samples])
    targets, valid = gt_targets(labels)
    with create_cam("cam", net, ["layer4"], normalize=False, **OPTIONS) as cam:
        expected = seed_maps(cam(images, targets), targets, valid, synthetic.num_classes)  # [N, C, 64, 64]
    for i, sample in enumerate(samples):
        data, png = load_seed(tmp_path, sample["id"])
        keys = np.flatnonzero(labels[i].numpy())
        assert set(data) == {"keys", "cam", "high_res"}
        assert data["keys"].dtype == np.int64 and data["keys"].tolist() == keys.tolist()
        assert data["high_res"].dtype == np.float32 and data["high_res"].shape == (len(keys), 64, 64)
        assert isinstance(data["cam"], torch.Tensor) and data["cam"].device.type == "cpu"  # IRN calls .cuda() on it
        assert data["cam"].dtype == torch.float32 and data["cam"].shape == (len(keys), 16, 16)
        oracle = expected[i, keys].numpy()
        np.testing.assert_allclose(data["high_res"], oracle, atol=1e-5)  # the evaluation's float32 maps
        assert png.mode == "P" and png.size == (64, 64) and png.getpalette()[:768] == voc_palette()
        irn = np.pad(keys + 1, (1, 0))[np.pad(oracle, ((1, 0), (0, 0), (0, 0)), constant_values=THRESHOLD).argmax(0)]
        assert (np.array(png) == irn).mean() > 0.99
        assert set(np.unique(np.array(png))) <= {0, *(keys + 1)}


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    layout = make_voc(tmp_path_factory.mktemp("voc"))
    return layout, VOCSegmentationDataModule(str(layout.root), image_size=48, eval_batch_size=4)


def test_voc_seeds_are_at_the_original_size_and_resume(voc, tmp_path):
    layout, dm = voc
    net = tiny_net(dm.num_classes)
    run = lambda: export_seeds(net, CamSpec("cam", ["layer4"]), dm, "all", tmp_path, threshold=THRESHOLD, progress=False)
    # all = train_aug (13 images) + VOC train (5), which train_aug already holds: written once
    assert run() == ExportCounts(written=13, skipped=5)
    assert len(list((tmp_path / "npy").iterdir())) == len(list((tmp_path / "png").iterdir())) == 13
    image_id = layout.splits["train"][0]  # 2007_000032: aeroplane, person
    data, png = load_seed(tmp_path, image_id)
    assert data["keys"].tolist() == sorted(layout.labels[image_id])
    assert data["high_res"].shape == (2, HEIGHT, WIDTH) and data["cam"].shape == (2, HEIGHT // 4, WIDTH // 4)
    assert png.size == (WIDTH, HEIGHT) and png.getpalette()[:768] == layout_voc_palette()
    sample = dm.build_dataset("train", train=False)[0]  # VOC's evaluation view: the original 32×40, no resize
    assert sample["image"].shape[-2:] == (HEIGHT, WIDTH)
    oracle = resized_oracle(net, sample, [0, 14], (HEIGHT, WIDTH))
    np.testing.assert_allclose(data["high_res"], oracle, atol=1e-5)
    mtime = (tmp_path / "npy" / "2007_000032.npy").stat().st_mtime_ns
    assert run() == ExportCounts(written=0, skipped=18)
    (tmp_path / "png" / "2009_000001.png").unlink()  # a half-exported image is redone
    assert run() == ExportCounts(written=1, skipped=17)
    assert (tmp_path / "npy" / "2007_000032.npy").stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob("*.tmp*"))


def test_bcss_seeds_are_the_argmax_over_the_image_classes(tmp_path):
    layout = make_bcss(tmp_path / "data")
    dm = BCSSDataModule(str(layout.root), image_size=48, eval_split="val", eval_batch_size=2)
    net = tiny_net(4)
    counts = export_seeds(net, CamSpec("cam", ["layer4"]), dm, "test", tmp_path / "seeds", progress=False)
    assert counts == ExportCounts(written=2, skipped=0)
    test_set = dm.build_dataset("test", train=False)
    for index, stem in enumerate(layout.splits["test"]):
        data, png = load_seed(tmp_path / "seeds", stem)
        keys = sorted(layout.labels[stem])
        assert data["keys"].tolist() == keys and data["high_res"].shape == (len(keys), 32, 32)
        assert png.getpalette()[:768] == BCSS_PALETTE and png.size == (32, 32)
        mask = np.array(png)
        expected = np.array(keys)[resized_oracle(net, test_set[index], keys, (32, 32)).argmax(0)]
        assert (mask == expected).mean() > 0.99 and set(np.unique(mask)) <= set(keys)
    single = [s for s in layout.splits["test"] if len(layout.labels[s]) == 1][0]
    assert (np.array(load_seed(tmp_path / "seeds", single)[1]) == min(layout.labels[single])).all()


def test_puzzlecam_format_shifts_the_keys_behind_the_background_and_names_hr_cam(synthetic, tmp_path):
    net = tiny_net(synthetic.num_classes)
    spec = CamSpec("cam", ["layer4"])
    export_seeds(net, spec, synthetic, "val", tmp_path / "irn", threshold=THRESHOLD, progress=False)
    export_seeds(net, spec, synthetic, "val", tmp_path / "puzzle", threshold=THRESHOLD, progress=False,
                 seed_format="puzzlecam")
    for sample in (synthetic.eval_set[i] for i in range(len(synthetic.eval_set))):
        irn, irn_png = load_seed(tmp_path / "irn", sample["id"])
        puzzle, puzzle_png = load_seed(tmp_path / "puzzle", sample["id"])
        assert set(puzzle) == {"keys", "cam", "hr_cam"}
        assert puzzle["keys"].dtype == np.int64 and puzzle["keys"].tolist() == [0, *(irn["keys"] + 1)]
        np.testing.assert_array_equal(puzzle["hr_cam"], irn["high_res"])
        assert torch.equal(puzzle["cam"], irn["cam"])
        np.testing.assert_array_equal(np.array(puzzle_png), np.array(irn_png))


def test_puzzlecam_format_needs_a_background_plane_and_unknown_formats_are_named(tmp_path):
    layout = make_bcss(tmp_path / "data")
    dm = BCSSDataModule(str(layout.root), image_size=48, eval_split="val", eval_batch_size=2)
    with pytest.raises(ValueError, match="export.format=puzzlecam: .*expected export.format=irn"):
        export_seeds(tiny_net(4), CamSpec("cam", ["layer4"]), dm, "test", tmp_path / "s", progress=False,
                     seed_format="puzzlecam")
    with pytest.raises(ValueError, match="export.format='amn'"):
        SeedExport(seeds=True, format="amn")


def test_bad_split_and_missing_threshold_are_named(synthetic, tmp_path):
    net = tiny_net(synthetic.num_classes)
    with pytest.raises(ValueError, match="export.split='trainval'"):
        export_seeds(net, CamSpec("cam", ["layer4"]), synthetic, "trainval", tmp_path, threshold=0.2, progress=False)
    with pytest.raises(ValueError, match="export.threshold"):
        export_seeds(net, CamSpec("cam", ["layer4"]), synthetic, "val", tmp_path, progress=False)


def test_peak_memory_does_not_grow_with_the_split(tmp_path):
    """tracemalloc sees numpy and Python objects: keeping every image's arrays would grow the peak 4×."""
    net = tiny_net(8)
    peaks = []
    for count in (4, 16):
        dm = synthetic_module(tmp_path / "data", num_val=count, eval_batch_size=2)  # split arrays load first
        # an untraced warm-up, so that one-time imports and caches do not count in the first peak
        export_seeds(net, CamSpec("cam", ["layer4"]), dm, "val", tmp_path / f"warm{count}", threshold=0.2, progress=False)
        tracemalloc.start()
        export_seeds(net, CamSpec("cam", ["layer4"]), dm, "val", tmp_path / f"seeds{count}", threshold=0.2, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks  # measured: ×1.14 streaming, ×2.3 when every image is kept
