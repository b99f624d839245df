"""boxes_from_scoremap and box_iou reproduce wsolevaluation's own test expectations
(tests/fixtures/wsolevaluation/README.md)."""
import pytest
import torch

from src.metrics import box_iou, boxes_from_scoremap

THRESHOLDS = [0.0, 0.2, 0.4, 0.6, 0.8]


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([[0.0] * 3] * 3, [[0, 0, 0, 0]] * 5),
        (
            [[0, 0, 0, 0, 0], [0, .4, .4, .4, .6], [0, .4, 1, .8, .6], [0, .4, .4, .4, .6]],
            [[1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3], [2, 2, 3, 3]],
        ),
        (
            [[.4, 0, .2, .2, .2], [.4, .4, 0, .4, 0], [0, 0, 0, .4, 0], [1, .6, .8, .2, .2]],
            [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]],
        ),
    ],
)
def test_largest_contour_boxes(rows, expected):
    boxes = boxes_from_scoremap(torch.tensor(rows, dtype=torch.float64), THRESHOLDS, multi_contour=False)
    assert [b.tolist() for b in boxes] == [[e] for e in expected]


def test_multi_contour_keeps_every_blob():
    scoremap = torch.zeros(20, 20)
    scoremap[0:10, 0:10] = 1.0
    scoremap[15:18, 15:18] = 0.5
    (single,) = boxes_from_scoremap(scoremap, [0.1])
    (multi,) = boxes_from_scoremap(scoremap, [0.1], multi_contour=True)
    assert single.tolist() == [[0, 0, 10, 10]]
    assert sorted(multi.tolist()) == [[0, 0, 10, 10], [15, 15, 18, 18]]


@pytest.mark.parametrize("bad", [torch.full((3, 3), float("nan")), torch.full((3, 3), 1.5)])
def test_invalid_scoremap_raises(bad):
    with pytest.raises(ValueError, match="scoremap"):
        boxes_from_scoremap(bad, THRESHOLDS)


def test_box_iou_conventions():
    assert box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).tolist() == [[1.0]]
    assert box_iou(torch.tensor([[1, 2, 5, 6]]), torch.tensor([[3, 1, 4, 5]])).item() == pytest.approx(8 / 27)
    same = torch.tensor([[1, 1, 3, 3], [4, 4, 5, 5]])
    assert torch.equal(box_iou(same, same), torch.eye(2, dtype=torch.float64))


def test_box_iou_rejects_inverted_box():
    with pytest.raises(ValueError, match="x1 < x0"):
        box_iou(torch.tensor([[5, 0, 1, 3]]), torch.zeros(1, 4))
