"""MaxBoxAccV2 on hand-computed cases: box +1 quirk, best threshold per IoU level, multi- vs largest contour."""
import pytest
import torch

from src.metrics import MaxBoxAccV2


def hand_batch():
    """Image 0: one blob rows 2..5, cols 3..7 -> predicted box [3, 2, 8, 6] (x + w, clipped), IoU 20/30 with
    its GT [3, 2, 7, 5]. Image 1: blank map -> box [0, 0, 0, 0], IoU 1/100 with [0, 0, 9, 9].
    Image 2: a large blob (box [0, 0, 10, 10]) and a dimmer small one (box [15, 15, 18, 18], IoU 9/16 with
    its GT [15, 15, 17, 17]); the small one only counts with multi-contour boxes and thresholds below 0.5."""
    maps = torch.zeros(3, 20, 20)
    maps[0, 2:6, 3:8] = 1.0
    maps[2, 0:10, 0:10] = 1.0
    maps[2, 15:18, 15:18] = 0.5
    boxes = [torch.tensor([[3, 2, 7, 5]]), torch.tensor([[0, 0, 9, 9]]), torch.tensor([[15, 15, 17, 17], [1, 1, 2, 2]])]
    return maps, boxes


@pytest.mark.parametrize(
    "multi_contour, expected",
    [
        (True, {"MaxBoxAcc@30": 200 / 3, "MaxBoxAcc@50": 200 / 3, "MaxBoxAcc@70": 0.0}),
        (False, {"MaxBoxAcc@30": 100 / 3, "MaxBoxAcc@50": 100 / 3, "MaxBoxAcc@70": 0.0}),
    ],
)
def test_hand_case(multi_contour, expected):
    maps, boxes = hand_batch()
    metric = MaxBoxAccV2(thresholds=[0.1, 0.6], multi_contour=multi_contour)
    metric.update(maps, boxes)
    out = metric.compute()
    assert out.keys() == {"MaxBoxAccV2", *expected}
    for key, value in expected.items():
        assert out[key] == pytest.approx(value)
    assert out["MaxBoxAccV2"] == pytest.approx(sum(expected.values()) / 3)
    # at τ = 0.6 the dim blob is gone: only image 0 is right, whatever the contour mode
    assert metric.num_correct[:, 1].tolist() == [1, 1, 0]
    assert metric.num_correct[:, 0].tolist() == ([2, 2, 0] if multi_contour else [1, 1, 0])


def test_batches_and_merged_states_equal_one_pass():
    maps, boxes = hand_batch()
    whole, first, second = (MaxBoxAccV2(thresholds=[0.0, 0.3, 0.6, 0.9]) for _ in range(3))
    whole.update(maps, boxes)
    first.update(maps[:1], boxes[:1])
    second.update(maps[1:], boxes[1:])
    first.merge_state(second)
    assert torch.equal(first.num_correct, whole.num_correct) and int(first.num_images) == 3
    assert first.compute() == whole.compute()


def test_bad_input_raises():
    metric = MaxBoxAccV2()
    with pytest.raises(ValueError, match="NaN"):
        metric.update(torch.full((1, 4, 4), float("nan")), [torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="box lists"):
        metric.update(torch.zeros(2, 4, 4), [torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="no image"):
        metric.compute()


def test_an_image_without_boxes_is_not_scored():
    """A folder dataset gives boxes for some images only: the others change neither the counts nor the score."""
    maps, boxes = hand_batch()
    scored = MaxBoxAccV2(thresholds=[0.1, 0.6])
    scored.update(maps, boxes)
    mixed = MaxBoxAccV2(thresholds=[0.1, 0.6])
    mixed.update(torch.cat([maps[:1], torch.rand(1, 20, 20), maps[1:]]),
                 [boxes[0], torch.zeros((0, 4)), *boxes[1:]])
    assert int(mixed.num_images) == 3 and mixed.compute() == scored.compute()
