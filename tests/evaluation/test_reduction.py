"""The evaluation's metric states reach the reduction device by one mechanism that cannot skip one (issue 19: the
hand-kept list left `n_without_class` on the CPU, which NCCL cannot gather)."""
from __future__ import annotations

import pytest
import torch
from torchmetrics import Metric

from src.cams import CamSpec
from src.evaluation import CamEvaluation
from tests.helpers import small_resnet


class Reduced(Exception):
    """Raised where the reduction would start: the states have been moved by then."""


def every_state(evaluation: CamEvaluation) -> dict[str, torch.Tensor]:
    """Every registered state of every metric under the evaluation (list states: each element), by name."""
    states = {}
    for name, metric in evaluation.named_modules():
        if isinstance(metric, Metric):
            for state in metric._defaults:
                value = getattr(metric, state)
                for i, tensor in enumerate(value if isinstance(value, list) else [value]):
                    states[f"{name}.{state}[{i}]"] = tensor
    return states


def test_every_registered_evaluation_state_is_on_the_reduction_device():
    net = small_resnet(3)
    evaluation = CamEvaluation(net, CamSpec("cam", ["layer4"], {}), 3, seed_background=False, ignore_index=255,
                               metric_names=["seed_mIoU", "PxAP", "MaxBoxAccV2"], seed_thresholds=[0.5],
                               figure_images=0)
    evaluation.metrics["seed"].image_index.append(torch.arange(2))  # a list state with content moves too
    assert {t.device.type for t in every_state(evaluation).values()} == {"cpu"}
    seen = {}

    def first_compute():  # the reduction's first step: every state must be on its device by then
        seen.update({name: tensor.device.type for name, tensor in every_state(evaluation).items()})
        raise Reduced

    evaluation.cls_map.compute = first_compute
    with pytest.raises(Reduced):
        evaluation.results("meta")  # a device other than the states' own (the test has no GPU)
    left = {name: device for name, device in seen.items() if device != "meta"}
    assert seen and not left, f"states left off the reduction device: {left}"
    assert "n_without_class.sum_value[0]" in seen and "metrics.seed.image_index[0]" in seen
