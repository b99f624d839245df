"""Metrics of CAMs: seed mIoU (VOC/BCSS), PxAP and MaxBoxAccV2 (wsolevaluation), box utilities, the seed rule."""
from src.metrics.boxes import box_iou, boxes_from_scoremap
from src.metrics.max_box_acc import MaxBoxAccV2
from src.metrics.pxap import PxAP
from src.metrics.seed_miou import SeedMIoU
from src.metrics.seed_rule import best_class, seed_labels

__all__ = ["SeedMIoU", "PxAP", "MaxBoxAccV2", "boxes_from_scoremap", "box_iou", "best_class", "seed_labels"]
