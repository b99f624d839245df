"""Backbone registry and the classifier LightningModule."""
from src.models.backbones import BACKBONES, backbone_spec, build_backbone, check_layers
from src.models.classifier import Classifier

__all__ = ["BACKBONES", "Classifier", "backbone_spec", "build_backbone", "check_layers"]
