"""The evaluation loop (src/evaluation/module.py): one forward per view, cls_mAP from the CAM pass's own forward,
n_scored counting what was scored."""
from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MultilabelAveragePrecision

from src.cams import CamSpec
from src.evaluation import CamEvaluation
from tests.helpers import small_resnet

NUM_CLASSES = 3


def batches(count: int = 3, size: int = 4, height: int = 40, width: int = 48) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for b in range(count):
        labels = (torch.rand(size, NUM_CLASSES, generator=generator) > 0.5).float()
        labels[0] = torch.tensor([1.0, 0.0, 0.0])  # every batch scores at least one class
        out.append({"image": torch.randn(size, 3, height, width, generator=generator), "labels": labels,
                    "mask": torch.randint(0, NUM_CLASSES + 1, (size, height, width), generator=generator),
                    "index": torch.arange(b * size, (b + 1) * size)})  # dataset indices, as every dataset gives
    return out


def evaluate(net, cam: CamSpec, data: list[dict]) -> CamEvaluation:
    evaluation = CamEvaluation(net, cam, NUM_CLASSES, seed_background=True, ignore_index=255,
                               metric_names=["seed_mIoU"], seed_thresholds=[0.1, 0.3], figure_images=0)
    evaluation.on_test_start()
    try:
        for index, batch in enumerate(data):
            evaluation.test_step(batch, index)
    finally:
        evaluation.on_test_end()
    return evaluation


@pytest.fixture(scope="module")
def net():
    return small_resnet(NUM_CLASSES)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_cls_map_is_the_plain_forwards_value_single_scale(net, method):
    data = batches()
    plain = MultilabelAveragePrecision(num_labels=NUM_CLASSES, average="macro")
    with torch.no_grad():
        for batch in data:
            plain.update(net(batch["image"]), batch["labels"].long())
    results = evaluate(net, CamSpec(method, ["layer4"], {}), data).results()
    assert results["metrics"]["cls_mAP"] == float(plain.compute()) * 100
    assert results["n_scored"] == sum(len(b["image"]) for b in data)


@pytest.mark.parametrize(("options", "views"), [({}, 1), ({"scales": [1.0, 0.5], "flip": True}, 4),
                                                 ({"scales": [0.5, 0.75]}, 2)])
@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_each_view_is_forwarded_once_and_cls_scores_come_from_the_unflipped_reference_view(net, method, options,
                                                                                           views):
    data = batches(count=2)
    calls = []
    handle = net.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    try:
        evaluation = evaluate(net, CamSpec(method, ["layer4"], options), data)
    finally:
        handle.remove()
    assert len(calls) == views * len(data)  # no forward besides the CAM's own views
    reference = 1.0 if 1.0 in options.get("scales", [1.0]) else options["scales"][0]
    plain = MultilabelAveragePrecision(num_labels=NUM_CLASSES, average="macro")
    with torch.no_grad():
        for batch in data:
            images = batch["image"]
            if reference != 1.0:
                size = [round(s * reference) for s in images.shape[-2:]]
                images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
            plain.update(net(images), batch["labels"].long())
    assert evaluation.results()["metrics"]["cls_mAP"] == pytest.approx(float(plain.compute()) * 100, abs=1e-9)


def test_engine_logits_are_those_of_the_whole_batch_across_chunks(net):
    images = torch.randn(5, 3, 32, 32)
    engine = CamSpec("cam", ["layer4"], {"batch_size": 2}).create(net)
    try:
        engine(images, torch.zeros(5, dtype=torch.long))
    finally:
        engine.remove()
    with torch.no_grad():
        torch.testing.assert_close(engine.logits, net(images))


def test_no_plane_seeds_count_and_skip_images_without_a_class(net):
    """BCSS: a patch whose mask holds no tissue (all 4 = background, ignored) has no seed to score."""
    data = batches(count=1)
    data[0]["labels"][1] = 0  # one patch without any class: its mask is all background
    data[0]["mask"] = data[0]["mask"].clamp(max=NUM_CLASSES - 1)
    data[0]["mask"][1] = NUM_CLASSES  # = ignore_index below
    evaluation = CamEvaluation(net, CamSpec("cam", ["layer4"], {}), NUM_CLASSES, seed_background=False,
                               ignore_index=NUM_CLASSES, metric_names=["seed_mIoU"], seed_thresholds=[0.1],
                               figure_images=0)
    evaluation.on_test_start()
    evaluation.test_step(data[0], 0)
    evaluation.on_test_end()
    results = evaluation.results()
    assert results["details"]["seed_images_without_class"] == 1 and results["n_scored"] == 4
    assert 0.0 <= results["metrics"]["seed_mIoU"] <= 100.0
    assert results["per_image"]["index"].tolist() == [0, 2, 3]  # the scored patches, by dataset index


def test_per_image_scores_need_the_batch_index(net):
    data = batches(count=1)
    del data[0]["index"]
    with pytest.raises(KeyError, match="per_image_scores"):
        evaluate(net, CamSpec("cam", ["layer4"], {}), data)
