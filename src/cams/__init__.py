"""CAM methods behind one engine: `create_cam(name, model, target_layers, **options)(images, targets)`.

Every module of this package is imported here, so a method file registers itself with `@register_cam` just
by existing (e.g. `broadcam.py`).
"""

import importlib
import pkgutil

from .engine import FUSIONS, CamEngine, CamView, normalize_maps
from .registry import CAM_METHODS, CamSpec, create_cam, register_cam

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .broadcam_callback import BroadCAMCallback  # noqa: E402  (fits BroadCAM's BLS in your own Lightning pipeline)

__all__ = ["BroadCAMCallback", "CAM_METHODS", "FUSIONS", "CamEngine", "CamSpec", "CamView", "create_cam", "normalize_maps", "register_cam"]
