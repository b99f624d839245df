"""Seed files that numpy 1.x reads too: no pickled reference to numpy 2's `numpy._core` (numpy ≤ 1.25 has no such
module; IRN's and wsolevaluation's environments pin numpy 1), and the same values back under this numpy."""
from __future__ import annotations

import io
import pickletools
import warnings

import numpy as np
import torch

from src.evaluation.portable_npy import portable_pickle, save_dict_npy


def pickled_globals(data: bytes) -> set[str]:
    """Every `module name` the pickle refers to (GLOBAL and protocol 4's STACK_GLOBAL, whose two strings come
    just before it)."""
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
        if opcode.name == "GLOBAL":
            found.add(arg)
        elif opcode.name == "STACK_GLOBAL":
            found.add(" ".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def seed_dict() -> dict:
    return {"keys": np.array([0, 4, 7]), "cam": torch.rand(3, 5, 6), "high_res": np.random.rand(3, 18, 22).astype(np.float32),
            "threshold": np.float32(0.25)}


def test_numpy_references_use_numpy_1_names():
    holder = np.empty((), dtype=object)
    holder[()] = seed_dict()
    plain = io.BytesIO()
    np.save(plain, seed_dict(), allow_pickle=True)
    names = pickled_globals(portable_pickle(holder))
    assert any(name.startswith("numpy.core.multiarray ") for name in names), names
    assert not any(name.startswith("numpy._core") for name in names), names
    assert b"numpy._core" in plain.getvalue() or np.__version__.startswith("1.")  # what the plain writer does


def test_save_dict_npy_reads_back_equal_without_warnings(tmp_path):
    values = seed_dict()
    path = tmp_path / "2007_000032.npy"
    save_dict_npy(path, values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = np.load(path, allow_pickle=True).item()
    assert back.keys() == values.keys()
    assert torch.equal(back["cam"], values["cam"])
    for key in ("keys", "high_res"):
        assert back[key].dtype == values[key].dtype and np.array_equal(back[key], values[key])
    assert back["threshold"] == values["threshold"] and back["threshold"].dtype == np.float32
    assert list(tmp_path.iterdir()) == [path]  # no temp file left
