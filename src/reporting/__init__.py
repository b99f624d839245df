"""Results files and figures of a job."""
from src.reporting.figures import save_cam_grid
from src.reporting.results import read_results, write_json_atomic

__all__ = ["read_results", "save_cam_grid", "write_json_atomic"]
