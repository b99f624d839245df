"""Name → CAM method registry, so configs and other packages pick a method by its key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from torch import nn

if TYPE_CHECKING:
    from .engine import CamEngine

CAM_METHODS: dict[str, type[CamEngine]] = {}

_Method = TypeVar("_Method", bound="type[CamEngine]")


def register_cam(name: str) -> Callable[[_Method], _Method]:
    """Class decorator: make a `CamEngine` subclass available as `create_cam(name, ...)`."""

    def register(cls: _Method) -> _Method:
        if name in CAM_METHODS and CAM_METHODS[name] is not cls:
            raise KeyError(f"CAM method {name!r} is already registered by {CAM_METHODS[name].__qualname__}")
        CAM_METHODS[name] = cls
        return cls

    return register


def create_cam(name: str, model: nn.Module, target_layers: str | Sequence[str], **options) -> CamEngine:
    """Build the CAM method `name` on `model`, hooked on `target_layers` (names from `model.named_modules()`).

    `options` go to the method's constructor: the engine's `batch_size`, `fusion`, `scales`, `flip`,
    `normalize`, plus whatever the method itself takes (e.g. `fc=` for CAM, `bls=` for BroadCAM).
    """
    if name not in CAM_METHODS:
        raise KeyError(f"unknown CAM method {name!r}; available: {sorted(CAM_METHODS)}")
    return CAM_METHODS[name](model, target_layers, **options)


@dataclass
class CamSpec:
    """A configured CAM method, not yet hooked on a network: what evaluation, export and the demo share.

    `name` is a registry key, `target_layers` the `named_modules()` names it hooks, `options` the
    `create_cam` kwargs (engine options plus what the method fitted, e.g. `bls=`).
    """

    name: str
    target_layers: list[str]
    options: dict = field(default_factory=dict)

    def create(self, model: nn.Module, **overrides) -> CamEngine:
        """`create_cam(name, model, target_layers, **options, **overrides)`; hooks stay until `remove()`."""
        return create_cam(self.name, model, list(self.target_layers), **{**self.options, **overrides})
