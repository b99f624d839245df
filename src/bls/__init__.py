"""Broad Learning System for BroadCAM: the closed-form model, GAP feature extraction, the fitting step."""

from src.bls.broad_learning_system import BroadLearningSystem
from src.bls.features import extract_gap_features
from src.bls.fitting import BLS_FILE, BLSFitting, fit_bls

__all__ = ["BLS_FILE", "BroadLearningSystem", "BLSFitting", "extract_gap_features", "fit_bls"]
