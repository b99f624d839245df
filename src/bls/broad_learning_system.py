"""The Broad Learning System of BroadCAM, fitted in closed form (METHOD.md §2).

Reading of the original (`linjiatai/BroadCAM`, `utils/broadcam_final.py`, class `BLS`), which this module
reproduces up to float64 rounding:

- Feature nodes `Z = (X - μ) / σ` (StandardScaler, population σ; a constant column gets σ = 1 and an
  exactly-zero Z column, so that rounding in μ cannot leak into it; its weights are then exactly 0).
- Both ridges are sklearn's `Ridge(alpha, normalize=True, fit_intercept=True)` of sklearn < 1.2: columns are
  centred and divided by their centred L2 norm `s_j` before an ordinary ridge with `alpha`. In the units of
  the columns that is the generalised ridge `(Aᶜᵀ Aᶜ + α·diag(s²)) W = Aᶜᵀ Yᶜ` (s_j = 1 for a zero column).
  For the standardised Z, `s_j² = n`, i.e. the familiar `alpha_eff = n·α`; the enhancement columns H are
  not standardised, so their penalty is `α·‖Hᶜ_j‖²`.
- "Two classes at a time": the original loops the two ridges over pairs of target columns. Ridge decomposes
  per target column, and the enhancement nodes are built ONCE from `pre_W` of all classes (one
  `node_generator` receives the full `pre_W`; `m = floor(min over all classes of #{pre_W > 0} / step)`), so
  every pair's output ridge sees the same `A = [Z, H]`. Fitting all classes in one solve is therefore the
  same model, minus the original's bug of dropping the last class when C is odd.
- Enhancement nodes: for class c and node j, θ averages the j-th block of `step` channels ranked by
  `pre_W[:, c]`, weighted by `pre_W`; `D = Z θ`, `H = (D − min D) / (max D + 1e-8)` column-wise.
- Collapse: the whole model is affine in X, `coef = W_Z / σ + (θ / σ) · diag(1 / (max D + 1e-8)) · W_H`.
  The original divides by `max D` without the 1e-8 there; we keep the 1e-8 (as METHOD.md §2.5) so that
  `predict(X) − X·coef` is exactly constant per class. The two differ by ~1e-8 / max D relative, which is
  ~1e-4 at VOC scale, where α·n makes pre_W and hence max D tiny (see `scripts/bench.py bls`).

Departures, all on inputs where the original fails or is undefined:
- `m = 0` (some class has fewer than `step` positive pre-weights): no enhancement nodes (the original raises
  on the empty min/max).
- A class with no positive (or no negative) image has a zero centred target: its pre-weights, weights and
  cam weights are exactly 0 and its intercept is its constant label. Because `m` is a minimum over classes,
  such a class also turns the enhancement nodes off for every class, as in the original.

Solver: float64 throughout, all classes at once. n ≥ d: primal normal equations; one Gram of the centred
features (1/σ folded in afterwards, so Z is never materialised) and one d×d Cholesky, which the output ridge
reuses through the Schur complement of the `[Z, H]` Gram, since `Hᶜ = Z U` with `U = θ / (max D + 1e-8)`.
n < d: dual (kernel) form with n×n Cholesky factors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

_H_EPS = 1e-8  # the original's guard in the enhancement-node scaling


class BroadLearningSystem:
    """Closed-form BLS from GAP features to multi-hot labels; its collapsed weights are BroadCAM's.

    Args:
        alpha: ridge strength on the old-sklearn `normalize=True` scale (the original uses 50).
        step: channels per enhancement node (the original uses 256).

    After `fit`, all state is float64 on the features' device; `to(device)` moves it. `stages` (set by
    `fit_bls`, saved with the model) names the feature blocks in concatenation order, so BroadCAM can check
    that it concatenates the same layers in the same order.
    """

    def __init__(self, alpha: float = 50.0, step: int = 256):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if int(step) != step or step < 1:
            raise ValueError(f"step must be a positive integer, got {step}")
        self.alpha = float(alpha)
        self.step = int(step)
        self.stages: list[str] | None = None
        self._state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, features, labels) -> "BroadLearningSystem":
        """Fit on `features` [n, d] (GAP activations) and `labels` [n, C] in {0, 1}; torch or numpy."""
        x, y = _validated_inputs(features, labels)
        n, d = x.shape
        mean = x.mean(0)
        centred = x.sub_(mean)  # x is our own float64 copy
        # Z = centred · diag(1/σ) is never materialised in the primal form: 1/σ is folded into G, R and θ.
        gram = _symmetric_gram(centred) if n >= d else None
        squared_norms = gram.diagonal() if gram is not None else centred.square().sum(0)
        std = (squared_norms / n).sqrt()
        if not torch.isfinite(std).all():  # NaN/inf anywhere propagates into its column's statistics
            raise ValueError("features contain NaN or inf")
        # StandardScaler's constant-feature test (σ within the rounding of μ); σ → 1 there and Z's column → 0
        constant = std <= n * torch.finfo(torch.float64).eps * mean.abs()
        scale = torch.where(constant, torch.ones_like(std), std)
        inv_scale = torch.where(constant, torch.zeros_like(std), 1.0 / scale)
        y_centred = y - y.mean(0)

        if gram is not None:
            solver = _PrimalRidge(centred, gram, inv_scale, self.alpha)
        else:
            solver = _DualRidge(centred, inv_scale, self.alpha)
        pre_weight = solver.solve_z(y_centred) / scale[:, None]  # pre_W, raw-feature units [d, C]

        theta = enhancement_projection(pre_weight, self.step)  # [d, m·C]
        d_nodes = solver.project(theta)  # D = Z θ [n, m·C]
        h_offset = d_nodes.amin(0)
        h_scale = d_nodes.amax(0) + _H_EPS
        weight_z, weight_h = solver.solve_z_h(y_centred, theta / h_scale)

        h_mean = (d_nodes.mean(0) - h_offset) / h_scale
        intercept = y.mean(0) - h_mean @ weight_h  # Z has zero column means
        coef = weight_z / scale[:, None] + (theta / h_scale / scale[:, None]) @ weight_h
        self._state = dict(
            mean=mean, scale=scale, theta=theta, h_offset=h_offset, h_scale=h_scale,
            weight_z=weight_z, weight_h=weight_h, intercept=intercept, coef=coef,
        )
        return self

    # ---------------------------------------------------------------- inference
    @property
    def cam_weights(self) -> torch.Tensor:
        """BroadCAM's channel weights `[d, C]` float64 (the original's `coef_.T`)."""
        return self._fitted()["coef"]

    @property
    def intercept(self) -> torch.Tensor:
        """The BLS output bias `[C]` float64."""
        return self._fitted()["intercept"]

    @property
    def num_enhancement_nodes(self) -> int:
        """Total enhancement nodes m·C (0 when disabled)."""
        return self._fitted()["theta"].shape[1]

    def predict(self, features) -> torch.Tensor:
        """BLS outputs `[n, C]` float64 for `features` [n, d], through Z and H as the original's `predict`."""
        state = self._fitted()
        x = _as_float64(features, "features", state["coef"].device)
        if x.ndim != 2 or x.shape[1] != state["coef"].shape[0]:
            raise ValueError(f"features must be [n, {state['coef'].shape[0]}], got {list(x.shape)}")
        z = (x - state["mean"]) / state["scale"]
        h = (z @ state["theta"] - state["h_offset"]) / state["h_scale"]
        return z @ state["weight_z"] + h @ state["weight_h"] + state["intercept"]

    # --------------------------------------------------------------- persistence
    def to(self, device: torch.device | str) -> "BroadLearningSystem":
        self._state = {k: v.to(device) for k, v in self._fitted().items()}
        return self

    def save(self, path: str | Path) -> None:
        """Write plain CPU tensors and the stage names (`torch.save` of a dict; load with `weights_only=True`)."""
        payload: dict = {k: v.detach().cpu() for k, v in self._fitted().items()}
        payload["alpha"] = torch.tensor(self.alpha, dtype=torch.float64)
        payload["step"] = torch.tensor(self.step)
        payload["stages"] = None if self.stages is None else [str(name) for name in self.stages]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | Path, map_location: torch.device | str = "cpu") -> "BroadLearningSystem":
        payload = torch.load(path, map_location=map_location, weights_only=True)
        missing = {"alpha", "step", "coef", "theta", "weight_z"} - set(payload)
        if missing:
            raise KeyError(f"{path} is not a saved BroadLearningSystem: missing {sorted(missing)}")
        bls = cls(alpha=float(payload.pop("alpha")), step=int(payload.pop("step")))
        bls.stages = payload.pop("stages", None)
        bls._state = payload
        return bls

    def _fitted(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("BroadLearningSystem is not fitted: call fit(features, labels) first")
        return self._state


def enhancement_projection(pre_weight: torch.Tensor, step: int) -> torch.Tensor:
    """θ `[d, m·C]` of the class-guided enhancement nodes (column c·m + j = class c, node j).

    `m = floor(min_c #{pre_W[:, c] > 0} / step)`; node j of class c puts `pre_W[k, c] / step` on the j-th
    block of `step` channels in descending `pre_W[:, c]` order (all inside the positive ones), else 0.
    """
    d, num_classes = pre_weight.shape
    per_class = int((pre_weight > 0).sum(0).min().item()) // step
    theta = pre_weight.new_zeros(d, per_class * num_classes)
    if per_class == 0:
        return theta
    ranked = pre_weight.argsort(dim=0, descending=True)[: per_class * step]  # [m·step, C]
    node = torch.arange(per_class * step, device=pre_weight.device) // step
    columns = torch.arange(num_classes, device=pre_weight.device) * per_class + node[:, None]
    theta[ranked, columns] = pre_weight.gather(0, ranked) / step
    return theta


class _PrimalRidge:
    """Old-sklearn normalize=True ridges on Z = centred·diag(inv_scale) (n ≥ d): one d×d Cholesky, reused.

    `gram` (centredᵀ centred, [d, d]) is scaled into Zᵀ Z in place.
    """

    def __init__(self, centred: torch.Tensor, gram: torch.Tensor, inv_scale: torch.Tensor, alpha: float):
        self.centred, self.inv_scale, self.alpha = centred, inv_scale, alpha
        self.gram = gram.mul_(inv_scale[:, None]).mul_(inv_scale)
        self.penalty = _penalty(self.gram.diagonal().clone(), alpha)
        # factor G + P without a second d×d buffer, then take P back off the diagonal
        self.gram.diagonal().add_(self.penalty)
        self.chol = torch.linalg.cholesky(self.gram)
        self.gram.diagonal().sub_(self.penalty)

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        return self.centred @ (self.inv_scale[:, None] * theta)

    def solve_z(self, y_centred: torch.Tensor) -> torch.Tensor:
        rhs = (self.centred.T @ y_centred) * self.inv_scale[:, None]  # Zᵀ Yᶜ
        self.pre = _cholesky_solve(self.chol, rhs)  # [d, C], Z units
        return self.pre

    def solve_z_h(self, y_centred: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights of A = [Z, H] with Hᶜ = Z u ([d, h]), by the Schur complement of the Z block.

        With M = G + P: S = uᵀG u + Q − (G u)ᵀ M⁻¹ (G u) = (M⁻¹ G u)ᵀ P u + Q (no cancellation),
        right-hand side uᵀR − (G u)ᵀ M⁻¹ R = (P u)ᵀ pre, and W_Z = pre − M⁻¹ G u · W_H.
        """
        if u.shape[1] == 0:
            return self.pre, u.new_zeros(0, self.pre.shape[1])
        gu = self.gram @ u
        v = _cholesky_solve(self.chol, gu)
        pu = self.penalty[:, None] * u
        q = _penalty((u * gu).sum(0), self.alpha)
        schur = v.T @ pu
        schur = 0.5 * (schur + schur.T) + torch.diag(q)
        weight_h = _cholesky_solve(torch.linalg.cholesky(schur), pu.T @ self.pre)
        return self.pre - v @ weight_h, weight_h


class _DualRidge:
    """The same ridges in kernel form for n < d: W = P⁻¹ Aᵀ (A P⁻¹ Aᵀ + I)⁻¹ Yᶜ."""

    def __init__(self, centred: torch.Tensor, inv_scale: torch.Tensor, alpha: float):
        self.z, self.alpha = centred * inv_scale, alpha
        self.z_scaled = self.z / _penalty(self.z.square().sum(0), alpha)  # Z P⁻¹
        self.kernel = self.z_scaled @ self.z.T  # Z P⁻¹ Zᵀ [n, n]
        self.kernel.diagonal().add_(1.0)

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        return self.z @ theta

    def solve_z(self, y_centred: torch.Tensor) -> torch.Tensor:
        dual = _cholesky_solve(torch.linalg.cholesky(self.kernel), y_centred)
        return self.z_scaled.T @ dual

    def solve_z_h(self, y_centred: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.z @ u  # centred H, since Z is centred
        h_scaled = h / _penalty((h * h).sum(0), self.alpha)
        dual = _cholesky_solve(torch.linalg.cholesky(self.kernel + h_scaled @ h.T), y_centred)
        return self.z_scaled.T @ dual, h_scaled.T @ dual


def _cholesky_solve(chol: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """(L Lᵀ)⁻¹ rhs by two triangular solves (several times faster than torch.cholesky_solve on CPU)."""
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)


def _penalty(squared_norms: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·s² of old sklearn's normalize=True (a zero column keeps s = 1)."""
    return alpha * torch.where(squared_norms > 0, squared_norms, torch.ones_like(squared_norms))


def _symmetric_gram(z: torch.Tensor, blocks: int = 6) -> torch.Tensor:
    """Zᵀ Z [d, d] computing only the upper block triangle (~40 % fewer flops than one GEMM; torch has no syrk)."""
    d = z.shape[1]
    if d < 512:
        return z.T @ z
    edges = [round(i * d / blocks) for i in range(blocks + 1)]
    gram = z.new_empty(d, d)
    for start, stop in zip(edges[:-1], edges[1:]):
        gram[start:stop, start:] = z[:, start:stop].T @ z[:, start:]
        gram[stop:, start:stop] = gram[start:stop, stop:].T
    return gram


def _as_float64(values, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A float64 torch copy of a tensor or array (never a view of the caller's data)."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}")
    out = values.detach().to(device=device if device is not None else values.device, dtype=torch.float64)
    return out.clone() if out.data_ptr() == values.data_ptr() else out


def _validated_inputs(features, labels) -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_float64(features, "features")
    y = _as_float64(labels, "labels", x.device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"features must be [n, d] and labels [n, C] with the same n, got {list(x.shape)} and {list(y.shape)}"
        )
    if x.shape[0] < 2 or x.shape[1] < 1 or y.shape[1] < 1:
        raise ValueError(f"need n ≥ 2 samples, d ≥ 1 features, C ≥ 1 classes, got {list(x.shape)}, {list(y.shape)}")
    if not ((y == 0) | (y == 1)).all():
        bad = y[(y != 0) & (y != 1)].unique()[:5].tolist()
        raise ValueError(f"labels must be multi-hot 0/1, found values {bad}")
    return x, y
