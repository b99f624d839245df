"""The DataModule every dataset shares: a proportion of the training split, the full evaluation split.

A dataset's module subclasses `ProportionDataModule` and only says how to build a split
(`build_dataset`), its classes and its evaluation protocol. Samples are dicts:
`image` float [3, H, W] (ImageNet-normalised), `labels` float [C] 0/1, `index` long (position in the split),
`id` str, and for evaluation samples `mask` long [H, W] and `boxes` float [N, 4] (x0, y0, x1, y1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from src.data.collate import collate_samples
from src.data.loading import resolve_num_workers
from src.data.palettes import voc_palette
from src.data.proportion import check_proportion, proportion_subset
from src.store.atomic import write_text_atomic


class ProportionDataModule(pl.LightningDataModule):
    """Trains on `proportion` percent of the training split; evaluates on the whole `eval_split`.

    Class attributes a subclass sets: `name` (as in results.json), `class_names`; `seed_background` (True: seeds get a background
    plane swept over thresholds, masks use 0 = background and 1..C; False: argmax over the classes, masks
    use 0..C-1); `ignore_index` (mask value excluded from scoring); `metrics` (names the pipeline computes);
    `mask_dirs` (folders beside the image folder that hold masks of the same stem, for user images) and
    `palette()` (the seed masks' colours). Its datasets give each image's original size: `original_hw(i)`.

    The evaluation protocol's resolution (METHOD.md §6) is a dataset fact too, not `image_size`: `eval_size`
    None makes CAMs of each image at its stored size (VOC: the original H×W, as IRN; BCSS: the native patches),
    an int resizes every image to that square (OpenImages: wsolevaluation's 224); `eval_sizes_vary` says that
    the stored sizes differ, so such a split is evaluated and exported one image per batch. Training and the
    BLS features keep the training resolution (`build_dataset(..., features=True)`).
    """

    name: str = ""
    class_names: tuple[str, ...] = ()
    seed_background: bool = True
    ignore_index: int = 255
    metrics: tuple[str, ...] = ("seed_mIoU",)
    train_split: str = "train"
    mask_dirs: tuple[str, ...] = ()
    eval_size: int | None = None
    eval_sizes_vary: bool = False

    def palette(self) -> list[int]:
        """The 768-int palette of seed-mask PNGs (VOC's unless the dataset has its own)."""
        return voc_palette()

    def __init__(self, proportion: float = 100.0, seed: int = 0, eval_split: str = "val", batch_size: int = 32,
                 eval_batch_size: int | None = None, num_workers: int | None = None, pin_memory: bool | None = None):
        super().__init__()
        self.proportion = check_proportion(proportion)
        self.seed = int(seed)
        self.eval_split = eval_split
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = resolve_num_workers(num_workers)  # None: from the CPUs this process may use
        self.pin_memory = pin_memory  # None: when the trainer's device (else the machine's) is CUDA
        self._train_loader: DataLoader | None = None
        self.subset_indices: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def cam_batch_size(self) -> int:
        """Images per batch of the CAM passes (evaluation, export): 1 where the protocol's sizes vary."""
        return 1 if self.eval_sizes_vary else self.eval_batch_size

    def build_dataset(self, split: str, train: bool, features: bool = False) -> Dataset:
        """The dataset of `split`; `train=True` gives training transforms, `train=False` the evaluation
        protocol's (`eval_size`), `features=True` evaluation transforms at the training resolution (BLS features
        of the training subset). It must expose
        `labels` (np.ndarray [n, C] 0/1), `ids` (list of n str) and `original_hw(index)` ((H, W) of the image
        as stored, before any resize)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.subset_indices is not None:
            return
        self.train_full = self.build_dataset(self.train_split, train=True)
        self.subset_indices = proportion_subset(self.train_full.labels, self.proportion, self.seed)
        self.train_set = Subset(self.train_full, self.subset_indices.tolist())
        self.train_eval_set = Subset(self.build_dataset(self.train_split, train=False, features=True),
                                     self.subset_indices.tolist())
        self.eval_set = self.build_dataset(self.eval_split, train=False)

    @property
    def subset_ids(self) -> list[str]:
        """Ids of the training images in the proportion's subset."""
        return [self.train_full.ids[i] for i in self.subset_indices]

    def save_subset_ids(self, path: str | Path) -> Path:
        """Write the subset's image ids, one per line (atomically)."""
        return write_text_atomic(path, "\n".join(self.subset_ids) + "\n")

    def _pin(self) -> bool:
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        device = getattr(getattr(trainer, "strategy", None), "root_device", None) if trainer is not None else None
        return device.type == "cuda" if device is not None else torch.cuda.is_available()

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False, persistent: bool = False) -> DataLoader:
        """A DataLoader with the job's loader settings (workers, pinned memory, the samples' collate). Only the
        training loader keeps its workers between passes (`persistent`): every other loader makes one pass, and
        its workers exit when the pass ends, so two sets of workers are never alive at once (each is a fork of
        this process, and resident memory summed over them is what a SLURM memory limit may count)."""
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate_samples, persistent_workers=persistent and self.num_workers > 0,
                          pin_memory=self._pin(), drop_last=shuffle and len(dataset) > batch_size)

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self.loader(self.train_set, self.batch_size, shuffle=True, persistent=True)
        return self._train_loader

    def teardown(self, stage: str | None = None) -> None:
        """After `fit`: stop the training loader's persistent workers before the BLS extraction, the evaluation
        or the export start their own."""
        loader, self._train_loader = self._train_loader, None
        iterator = getattr(loader, "_iterator", None) if loader is not None else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # torch's own shutdown of a multi-process iterator
            loader._iterator = None

    def train_subset_eval_dataloader(self) -> DataLoader:
        """The proportion's training subset with evaluation transforms (for BLS features)."""
        return self.loader(self.train_eval_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """The whole evaluation split, in order, at the protocol's resolution (`cam_batch_size` per batch)."""
        return self.loader(self.eval_set, self.cam_batch_size)
