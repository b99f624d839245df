"""Test oracle and benchmark reference: a literal numpy/scikit-learn port of the original `BLS.fit`.

It follows the control flow of `linjiatai/BroadCAM` `utils/broadcam_final.py` (StandardScaler, the two
ridges fitted two target columns at a time, the per-class loops building θ, the collapse to
channel weights), with these deliberate differences:
- `Ridge(normalize=True)` was removed in scikit-learn 1.2, so `old_sklearn_ridge` reproduces it: centre each
  column, divide it by its centred L2 norm (a zero norm stays 1), fit `Ridge(alpha)`, scale the
  coefficients back, intercept `ȳ − mean(A)·coef`;
- the pair loop runs over `range(0, C, 2)`, so an odd last class is fitted too (the original drops it);
- `m = 0` skips the enhancement nodes (the original crashes on the empty min/max);
- `coef_` collapses with `1 / (max D + 1e-8)` as METHOD.md §2.5 and as `H` itself is scaled, so that
  `predict − X·coef` is constant; the original's literal `1 / max D` is kept as `coef_literal_`. The two
  differ by ~1e-8 / max D relative, and max D is tiny at VOC scale (≈1e-4 relative there).
Everything runs in float64 (the original kept the features' float32).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

PAIR = 2  # the original's `ridge_step`


def old_sklearn_ridge(a: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """`Ridge(alpha, normalize=True, fit_intercept=True)` of scikit-learn < 1.2 → (coef [k, d], intercept [k])."""
    offset = a.mean(0)
    norm = np.sqrt(((a - offset) ** 2).sum(0))
    norm[norm == 0] = 1.0
    ridge = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit((a - offset) / norm, y)
    coef = np.atleast_2d(ridge.coef_) / norm
    return coef, y.mean(0) - coef @ offset


class OriginalBLS:
    """The original BLS (alpha, step; one enhancement group, no whitening) with `coef_` [C, d] and `predict`."""

    def __init__(self, alpha: float = 50.0, step: int = 256):
        self.alpha, self.step = alpha, step

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "OriginalBLS":
        self.scaler = StandardScaler()
        z = self.scaler.fit_transform(np.asarray(features, dtype=np.float64))
        y = np.asarray(labels, dtype=np.float64)
        n_class = y.shape[1]
        factor_z = 1.0 / self.scaler.scale_

        pre_w = np.zeros((z.shape[1], n_class))
        for i in range(0, n_class, PAIR):
            pre_w[:, i : i + PAIR] = old_sklearn_ridge(z, y[:, i : i + PAIR], self.alpha)[0].T
        pre_w = (pre_w.T * factor_z).T

        per_class = int(np.sum(pre_w > 0, 0).min() / self.step)
        xita = np.zeros((z.shape[1], 0))
        for i in range(n_class):
            xita_tmp = np.zeros((z.shape[1], per_class))
            idx = np.flip(np.argsort(pre_w[:, i]))
            for j in range(per_class):
                xita_tmp[idx[j * self.step : (j + 1) * self.step], j] = np.ones(self.step) / self.step
            xita = np.column_stack((xita, (xita_tmp.T * pre_w[:, i]).T))
        self.xita = xita
        if per_class > 0:
            d_nodes = z @ xita
            self.offset_, self.scale_h = d_nodes.min(0), d_nodes.max(0)
            a = np.column_stack((z, (d_nodes - self.offset_) / (self.scale_h + 1e-8)))
        else:
            a = z

        self.w = np.zeros((a.shape[1], n_class))
        self.intercept_ = np.zeros(n_class)
        for i in range(0, n_class, PAIR):
            coef, intercept = old_sklearn_ridge(a, y[:, i : i + PAIR], self.alpha)
            self.w[:, i : i + PAIR], self.intercept_[i : i + PAIR] = coef.T, intercept

        n_z = z.shape[1]
        coef = (self.w[:n_z].T * factor_z).T
        self.coef_, self.coef_literal_ = coef.T.copy(), coef.T.copy()
        if per_class > 0:
            self.coef_ += (((xita.T * factor_z).T * (1.0 / (self.scale_h + 1e-8))).dot(self.w[n_z:])).T
            self.coef_literal_ += (((xita.T * factor_z).T * (1.0 / self.scale_h)).dot(self.w[n_z:])).T
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(np.asarray(features, dtype=np.float64))
        a = z
        if self.xita.shape[1] > 0:
            a = np.column_stack((z, (z @ self.xita - self.offset_) / (self.scale_h + 1e-8)))
        return a @ self.w + self.intercept_
