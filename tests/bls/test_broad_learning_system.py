"""BroadLearningSystem against the port of the original procedure (tests/bls/original_port.py)."""

import numpy as np
import pytest
import torch

from src.bls import BroadLearningSystem
from tests.bls.original_port import OriginalBLS


def gap_like_problem(n: int, d: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """features [n, d] float32 ≥ 0 (|correlated gaussians|), labels [n, C] 0/1 with every class present."""
    rng = np.random.default_rng(seed)
    features = np.abs(rng.normal(size=(n, d)) + 0.5 * rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)))
    labels = (rng.random((n, num_classes)) < 0.3).astype(np.float64)
    labels[:num_classes] = np.eye(num_classes)
    return features.astype(np.float32), labels


def relative_error(ours: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.abs(ours.numpy() - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("n, d", [(60, 40), (30, 80)], ids=["primal n>d", "dual n<d"])
@pytest.mark.parametrize("num_classes", [4, 5], ids=["even C", "odd C"])
@pytest.mark.parametrize("step", [4, 256], ids=["with H nodes", "m=0"])
def test_cam_weights_match_original_procedure(n, d, num_classes, step):
    features, labels = gap_like_problem(n, d, num_classes)
    bls = BroadLearningSystem(alpha=50.0, step=step).fit(features, labels)
    reference = OriginalBLS(alpha=50.0, step=step).fit(features, labels)
    assert bls.num_enhancement_nodes == reference.xita.shape[1]
    assert (bls.num_enhancement_nodes > 0) == (step == 4)
    assert bls.cam_weights.shape == (d, num_classes)
    assert relative_error(bls.cam_weights, reference.coef_.T) < 1e-9
    assert relative_error(bls.cam_weights, reference.coef_literal_.T) < 1e-4  # the original's own collapse
    np.testing.assert_allclose(bls.predict(features).numpy(), reference.predict(features), atol=1e-12)


def test_alpha_is_on_the_old_normalize_scale():
    """normalize=True ridge == standardised ridge with alpha·n: check the m=0 model against a direct solve."""
    features, labels = gap_like_problem(60, 40, 3)
    alpha, n = 7.0, 60
    z = (features - features.mean(0)) / features.std(0)
    yc = labels - labels.mean(0)
    expected = np.linalg.solve(z.T @ z + alpha * n * np.eye(40), z.T @ yc) / features.std(0)[:, None]
    bls = BroadLearningSystem(alpha=alpha, step=10_000).fit(features, labels)
    np.testing.assert_allclose(bls.cam_weights.numpy(), expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("n, d", [(60, 40), (30, 80)])
def test_predictions_are_affine_in_features_through_cam_weights(n, d):
    features, labels = gap_like_problem(n, d, 5, seed=1)
    bls = BroadLearningSystem(alpha=50.0, step=4).fit(torch.from_numpy(features), torch.from_numpy(labels))
    assert bls.num_enhancement_nodes > 0
    probe = torch.from_numpy(gap_like_problem(25, d, 5, seed=2)[0])  # unseen features too
    constants = []
    for x in (torch.from_numpy(features), probe):
        residual = bls.predict(x) - x.double() @ bls.cam_weights
        assert torch.allclose(residual, residual[:1].expand_as(residual), rtol=0, atol=1e-12)
        constants.append(residual[0])
    assert torch.allclose(constants[0], constants[1], rtol=0, atol=1e-12)


def test_constant_columns_give_zero_weights_and_no_nan():
    features, labels = gap_like_problem(60, 40, 4)
    features[:, 3] = 0.0
    features[:, 7] = 2.5
    for x in (features, features[:30]):  # primal and dual
        bls = BroadLearningSystem(alpha=50.0, step=4).fit(x, labels[: len(x)])
        weights = bls.cam_weights
        assert torch.isfinite(weights).all() and torch.isfinite(bls.predict(x)).all()
        assert weights[[3, 7]].abs().max() == 0
        reference = OriginalBLS(alpha=50.0, step=4).fit(x, labels[: len(x)])
        assert relative_error(weights, reference.coef_.T) < 1e-9


def test_class_without_positive_image_gets_zero_weights_and_disables_h_nodes():
    features, labels = gap_like_problem(60, 40, 4)
    labels[:, 2] = 0.0
    bls = BroadLearningSystem(alpha=50.0, step=4).fit(features, labels)
    assert bls.num_enhancement_nodes == 0  # m is a minimum over classes, as in the original
    assert torch.isfinite(bls.cam_weights).all()
    assert bls.cam_weights[:, 2].abs().max() == 0 and bls.intercept[2] == 0
    assert bls.cam_weights[:, [0, 1, 3]].abs().min(0).values.max() > 0


def test_save_load_round_trip_is_exact(tmp_path):
    features, labels = gap_like_problem(60, 40, 5)
    bls = BroadLearningSystem(alpha=20.0, step=4).fit(features, labels)
    bls.stages = ["layer3", "layer4"]
    bls.save(tmp_path / "sub" / "bls.pt")
    payload = torch.load(tmp_path / "sub" / "bls.pt", weights_only=True)
    assert payload.pop("stages") == ["layer3", "layer4"]
    assert all(isinstance(value, torch.Tensor) for value in payload.values())
    loaded = BroadLearningSystem.load(tmp_path / "sub" / "bls.pt")
    assert (loaded.alpha, loaded.step, loaded.stages) == (20.0, 4, ["layer3", "layer4"])
    assert torch.equal(loaded.cam_weights, bls.cam_weights)
    assert torch.equal(loaded.predict(features), bls.predict(features))


def test_bad_inputs_raise_clear_errors(tmp_path):
    features, labels = gap_like_problem(30, 10, 3)
    with pytest.raises(ValueError, match=r"\[30, 10\] and \[29, 3\]"):
        BroadLearningSystem().fit(features, labels[:29])
    with pytest.raises(ValueError, match="0/1"):
        BroadLearningSystem().fit(features, labels * 2)
    with pytest.raises(ValueError, match="0/1"):
        BroadLearningSystem().fit(features, labels - 0.5)
    bad = features.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        BroadLearningSystem().fit(bad, labels)
    with pytest.raises(ValueError, match="alpha"):
        BroadLearningSystem(alpha=0.0)
    with pytest.raises(ValueError, match="step"):
        BroadLearningSystem(step=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        BroadLearningSystem().cam_weights
    fitted = BroadLearningSystem().fit(features, labels)
    with pytest.raises(ValueError, match=r"\[n, 10\]"):
        fitted.predict(features[:, :9])
    torch.save({"coef": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(KeyError, match="not a saved BroadLearningSystem"):
        BroadLearningSystem.load(tmp_path / "other.pt")


def test_inputs_are_not_modified():
    features, labels = gap_like_problem(60, 40, 4)
    x64 = torch.from_numpy(features.astype(np.float64))
    before = x64.clone()
    BroadLearningSystem(step=4).fit(x64, labels)
    assert torch.equal(x64, before)
