"""Box resizing follows wsolevaluation's `resize_bbox` exactly."""
import random

import torch

from src.data.transforms import EvalTransform, resize_boxes


def wsolevaluation_rule(box, size, new_size):
    """Its formula, written out: each coordinate · new / old in Python floats, then int()."""
    (height, width), (new_height, new_width) = size, new_size
    x0, y0, x1, y1 = map(float, box)
    return [int(x0 * new_width / width), int(y0 * new_height / height),
            int(x1 * new_width / width), int(y1 * new_height / height)]


def test_resize_boxes_equals_wsolevaluation_on_random_boxes():
    rng = random.Random(0)
    truncated = 0
    for _ in range(200):
        size = (rng.randint(1, 700), rng.randint(1, 700))
        new_size = (rng.choice([224, 448, rng.randint(1, 500)]), rng.choice([224, 448, rng.randint(1, 500)]))
        boxes = []
        for _ in range(rng.randint(1, 4)):
            x0, x1 = sorted(rng.randrange(size[1]) for _ in range(2))
            y0, y1 = sorted(rng.randrange(size[0]) for _ in range(2))
            boxes.append([x0, y0, x1, y1])
        ours = resize_boxes(torch.tensor(boxes), size, new_size)
        expected = [wsolevaluation_rule(box, size, new_size) for box in boxes]
        assert ours.dtype == torch.float32 and ours.tolist() == expected
        scale = torch.tensor([new_size[1] / size[1], new_size[0] / size[0]] * 2)
        scaled = torch.tensor(boxes, dtype=torch.float64) * scale
        truncated += int((scaled != ours.double()).any())
    assert truncated > 150  # the rule is not the plain x·s it replaces


def test_exact_products_are_kept_and_the_inclusive_end_is_truncated_like_the_start():
    # 10 · 224 / 100 = 22.4 → 22; 99 · 224 / 100 = 221.76 → 221 (not 223, the last row of the 224 grid)
    assert resize_boxes(torch.tensor([[10, 0, 99, 49]]), (50, 100), (224, 224)).tolist() == [[22, 0, 221, 219]]
    # an unchanged size keeps integer boxes exactly
    boxes = torch.tensor([[0, 3, 223, 100], [5, 5, 5, 5]])
    assert torch.equal(resize_boxes(boxes, (224, 224), (224, 224)), boxes.float())
    assert EvalTransform(224).boxes(torch.tensor([[10, 0, 99, 49]]), 50, 100).tolist() == [[22, 0, 221, 219]]
    assert EvalTransform(None).boxes(boxes, 224, 224).tolist() == boxes.float().tolist()
