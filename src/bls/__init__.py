"""Broad Learning System for BroadCAM: the closed-form model, GAP feature extraction, the fitting callback."""

from src.bls.broad_learning_system import BroadLearningSystem
from src.bls.callback import BLSFitting, fit_bls
from src.bls.features import extract_gap_features

__all__ = ["BroadLearningSystem", "BLSFitting", "extract_gap_features", "fit_bls"]
