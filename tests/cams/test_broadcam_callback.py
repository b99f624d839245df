"""`BroadCAMCallback` (issue 22 item 6): a foreign LightningModule trained with it gets the BLS and the maps of the
job's BroadCAM (the fitting step built from conf/cam/broadcam.yaml) on the same network and data; plain
(images, class index) loaders work; under DDP rank 0 fits and every rank gets the same BLS."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import hydra
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from src.bls import BroadLearningSystem
from src.cams import BroadCAMCallback, CamSpec
from src.data.folder import FolderDataModule
from src.evaluation.protocol import gt_targets
from tests.conftest import REPO
from tests.data.folder_example import EXAMPLE_SIZE, write_example
from tests.helpers import compose_config

STAGES = ["block1", "block2"]


class TinyNet(nn.Module):
    """Not one of the framework's backbones: two conv blocks, GAP, a linear head."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(images)).mean(dim=(2, 3)))


class ForeignModule(pl.LightningModule):
    """A user's own LightningModule: its own network attribute name, loss and optimiser."""

    def __init__(self, num_classes: int, attribute: str = "net"):
        super().__init__()
        self.attribute = attribute
        setattr(self, attribute, TinyNet(num_classes))

    def training_step(self, batch, batch_idx):
        images, labels = (batch["image"], batch["labels"]) if isinstance(batch, dict) else batch
        logits = getattr(self, self.attribute)(images)
        if labels.ndim == 1:
            return nn.functional.cross_entropy(logits, labels)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def trainer(tmp_path, callback) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                      callbacks=[callback])


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "example"
    write_example(root)
    return root


def test_foreign_module_gets_the_jobs_bls_and_maps(example, tmp_path):
    dm = FolderDataModule(str(example), image_size=EXAMPLE_SIZE, proportion=50, num_workers=0, batch_size=4)
    torch.manual_seed(0)
    module = ForeignModule(dm.num_classes)
    callback = BroadCAMCallback(stages=STAGES)
    before = [p.detach().clone() for p in module.net.parameters()]
    trainer(tmp_path, callback).fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.net.parameters()))  # it did train
    assert callback.path == tmp_path / "bls.pt" and callback.path.is_file()
    assert callback.info["n"] == len(dm.subset_indices) and callback.info["stages"] == STAGES

    cfg = compose_config(["cam=broadcam", f"cam.stages=[{','.join(STAGES)}]"])
    job_bls, _ = hydra.utils.instantiate(cfg.cam.fitting)(module.net, dm, "cpu")  # the job's own fitting step
    torch.testing.assert_close(callback.bls.cam_weights, job_bls.cam_weights, rtol=0, atol=0)
    saved = BroadLearningSystem.load(callback.path)
    torch.testing.assert_close(saved.cam_weights, job_bls.cam_weights, rtol=0, atol=0)

    batch = next(iter(dm.test_dataloader()))
    targets, _ = gt_targets(batch["labels"])
    with CamSpec("broadcam", STAGES, {"bls": job_bls}).create(module.net) as job_cam:
        expected = job_cam(batch["image"], targets)
    maps = callback.cam(batch["image"], targets)
    assert maps.shape == (len(targets), targets.shape[1], EXAMPLE_SIZE, EXAMPLE_SIZE) and maps.amax() > 0
    assert torch.equal(maps, expected)
    callback.cam.remove()


def test_plain_loader_of_class_indices_and_another_attribute(tmp_path):
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(12, 3, 16, 16, generator=generator), torch.arange(12) % 3
    loader = DataLoader(TensorDataset(images, labels), batch_size=4, shuffle=True)
    torch.manual_seed(0)
    module = ForeignModule(3, attribute="backbone")
    callback = BroadCAMCallback(stages=STAGES, network="backbone", num_classes=3, dirpath=False, step=4)
    trainer(tmp_path, callback).fit(module, train_dataloaders=loader)
    assert callback.path is None and not (tmp_path / "bls.pt").exists()
    one_hot = nn.functional.one_hot(labels, 3).float()
    in_order = [{"image": images[i:i + 4], "labels": one_hot[i:i + 4], "index": torch.arange(i, i + 4)}
                for i in range(0, 12, 4)]  # the training set unshuffled, as the callback re-reads it
    expected, _ = callback.fitting.fit_loader(module.backbone, in_order, "cpu")
    torch.testing.assert_close(callback.bls.cam_weights, expected.cam_weights, rtol=0, atol=0)
    assert callback.create_cam(module.backbone)(images[:2], labels[:2]).shape == (2, 16, 16)


def test_class_indices_without_num_classes_is_a_clear_error(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(4, 3, 16, 16), torch.arange(4) % 2), batch_size=2)
    callback = BroadCAMCallback(stages=STAGES, dirpath=False)
    with pytest.raises(ValueError, match="labels are class indices .*give num_classes="):
        trainer(tmp_path, callback).fit(ForeignModule(2), train_dataloaders=loader)


DDP_SCRIPT = """
import json, sys
import pytorch_lightning as pl, torch
from torch.utils.data import DataLoader, TensorDataset
sys.path.insert(0, {repo!r})
from src.cams import BroadCAMCallback
from tests.cams.test_broadcam_callback import ForeignModule, STAGES
pl.seed_everything(0)
images, labels = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(2)), torch.arange(16) % 4
callback = BroadCAMCallback(stages=STAGES, num_classes=4, step=4, dirpath={out!r})
trainer = pl.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_steps=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[callback])
trainer.fit(ForeignModule(4), train_dataloaders=DataLoader(TensorDataset(images, labels), batch_size=4))
with open({out!r} + f"/rank{{trainer.global_rank}}.json", "w") as handle:
    json.dump({{"n": callback.info["n"], "weights": callback.bls.cam_weights.tolist(),
               "maps": callback.cam(images[:2], labels[:2]).tolist()}}, handle)
"""


@pytest.mark.slow
def test_under_ddp_rank_zero_fits_on_all_images_and_every_rank_has_the_bls(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(repo=str(REPO), out=str(tmp_path))))
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["n"] == ranks[1]["n"] == 16  # the whole training set, not rank 0's half
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["maps"] == ranks[1]["maps"]
    assert (tmp_path / "bls.pt").is_file()
