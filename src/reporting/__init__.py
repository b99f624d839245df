"""Reporting: the results contract (`results.py`), the one overlay renderer (`overlay.py`), the job's CAM
figure, the sweep report and W&B. It reads results and renders; it never builds a CAM."""
from src.reporting.figures import save_cam_grid
from src.reporting.results import read_results, write_json_atomic

__all__ = ["read_results", "save_cam_grid", "write_json_atomic"]
