"""`.npy` files holding a pickled dict (IRN's and PuzzleCAM's seed files: `np.load(path, allow_pickle=True).item()`)
that numpy 1.x reads as well as numpy 2.x.

numpy 2 pickles its arrays and scalars by reference to `numpy._core.multiarray` (`_reconstruct`, `scalar`), a
module numpy ≤ 1.25 does not have: such a file fails there with "No module named 'numpy._core'", and the
downstream projects pin old numpy (wsolevaluation needs numpy < 1.24, IRN's chainercv builds against 1.x).
Here those references are written under numpy 1's name, `numpy.core.*`, which numpy 2 still resolves when it
unpickles. Everything else (dtypes, torch tensors, plain Python) pickles as usual.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from src.store.atomic import atomic_path

_NUMPY2_MODULE = "numpy._core"
_NUMPY1_MODULE = "numpy.core"


class _Numpy1NamesPickler(pickle._Pickler):  # the Python pickler: its save_global can be overridden
    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or ""
        if not (module == _NUMPY2_MODULE or module.startswith(_NUMPY2_MODULE + ".")):
            return super().save_global(obj, name)
        module = _NUMPY1_MODULE + module[len(_NUMPY2_MODULE):]
        name = name or obj.__qualname__
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))
        self.memoize(obj)


def portable_pickle(value, protocol: int = 4) -> bytes:
    """`pickle.dumps(value)` with numpy's own references under `numpy.core.*` (read by numpy 1.x and 2.x)."""
    buffer = io.BytesIO()
    _Numpy1NamesPickler(buffer, protocol=protocol).dump(value)
    return buffer.getvalue()


def save_dict_npy(path: str | Path, mapping: dict) -> None:
    """Write `mapping` as `np.save(path, mapping)` would (a 0-d object array, pickled), readable by
    `np.load(path, allow_pickle=True).item()` under numpy 1.x and 2.x; atomically (temp file, then rename)."""
    holder = np.empty((), dtype=object)
    holder[()] = mapping
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        npy_format.write_array_header_1_0(handle, npy_format.header_data_from_array_1_0(holder))
        handle.write(portable_pickle(holder))
