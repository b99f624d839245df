"""Broad Learning System for BroadCAM: the closed-form model, GAP feature extraction, the fitting callback."""

from src.bls.broad_learning_system import BroadLearningSystem

__all__ = ["BroadLearningSystem"]
