"""The evaluation stage: the protocol's functions (`protocol.py`), the CAM test loop (`module.py`, `CamEvaluation`)
and the seed export (`export.py`); the job (`src.jobs`) builds them from `conf/eval/` and `conf/export/`."""
from src.evaluation.module import CamEvaluation
from src.evaluation.export import SeedExport, export_seeds

__all__ = ["CamEvaluation", "SeedExport", "export_seeds"]
