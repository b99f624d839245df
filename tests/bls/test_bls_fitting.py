"""GAP feature extraction and the BLSFitting step on a tiny net and a fake datamodule."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from src.bls import BLS_FILE, BLSFitting, BroadLearningSystem, extract_gap_features, fit_bls

NUM_CLASSES = 3


class RandomImages(Dataset):
    """Samples `{"image": [3, 24, 24], "labels": [C] 0/1, "index": long}` as the project's datasets give."""

    def __init__(self, size: int):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(size, 3, 24, 24, generator=gen)
        self.labels = (torch.rand(size, NUM_CLASSES, generator=gen) < 0.4).float()
        self.labels[:NUM_CLASSES] = torch.eye(NUM_CLASSES)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "labels": self.labels[i], "index": torch.tensor(i)}


class TinyNet(nn.Module):
    """Two stages (6 and 10 channels) → GAP → fc, like a torchvision ResNet with named stages."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(6, 10, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(10, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


class TinyClassifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def training_step(self, batch, batch_idx):
        return nn.functional.binary_cross_entropy_with_logits(self.net(batch["image"]), batch["labels"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class FakeDataModule(pl.LightningDataModule):
    def __init__(self, subset: list[int]):
        super().__init__()
        self.dataset, self.subset = RandomImages(40), subset

    def train_dataloader(self):
        return DataLoader(Subset(self.dataset, self.subset), batch_size=8, shuffle=True)

    def train_subset_eval_dataloader(self):
        return DataLoader(Subset(self.dataset, self.subset), batch_size=7)


def hand_gap_features(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        first = net.stage1(images)
        return torch.cat([first.mean(dim=(2, 3)), net.stage2(first).mean(dim=(2, 3))], dim=1)


def test_extract_gap_features_concatenates_stages_in_order_and_restores_mode():
    torch.manual_seed(0)
    net, data = TinyNet().train(), RandomImages(10)
    features, labels, indices = extract_gap_features(net, DataLoader(data, batch_size=4), ["stage1", "stage2"], "cpu")
    assert net.training
    assert features.dtype == torch.float32 and features.shape == (10, 16)
    torch.testing.assert_close(features, hand_gap_features(net.eval(), data.images))
    assert torch.equal(labels, data.labels) and torch.equal(indices, torch.arange(10))
    swapped, _, _ = extract_gap_features(net, DataLoader(data, batch_size=4), ["stage2", "stage1"], "cpu")
    torch.testing.assert_close(swapped, torch.cat([features[:, 6:], features[:, :6]], dim=1))


def test_extract_gap_features_rejects_unknown_or_repeated_stages():
    loader = DataLoader(RandomImages(4), batch_size=2)
    with pytest.raises(KeyError, match="layer4"):
        extract_gap_features(TinyNet(), loader, ["layer4"], "cpu")
    with pytest.raises(ValueError, match="repeat"):
        extract_gap_features(TinyNet(), loader, ["stage1", "stage1"], "cpu")
    with pytest.raises(ValueError, match="no batches"):
        extract_gap_features(TinyNet(), [], ["stage1"], "cpu")


def test_fitting_step_fits_on_exactly_the_subset_and_returns_the_bls(tmp_path):
    torch.manual_seed(0)
    subset = [3, 7, 1, 0, 2, 11, 13, 17, 19, 23, 29, 31, 30, 28, 26, 24, 22, 20, 5, 9, 35, 38]
    model, datamodule = TinyClassifier(), FakeDataModule(subset)
    trainer = pl.Trainer(max_steps=2, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    bls, info = BLSFitting(stages=["stage1", "stage2"], alpha=50.0, step=2)(model.net, datamodule, "cpu", tmp_path)

    assert info["n"] == len(subset) and info["d"] == 16 and info["C"] == NUM_CLASSES
    assert info["fit_s"] >= 0 and info["stages"] == ["stage1", "stage2"]
    assert info["indices"].tolist() == subset
    assert not hasattr(model, "bls") and not hasattr(model, "bls_info")  # returned, never attached
    features = hand_gap_features(model.net.eval(), datamodule.dataset.images[subset])
    expected = BroadLearningSystem(alpha=50.0, step=2).fit(features, datamodule.dataset.labels[subset])
    assert expected.num_enhancement_nodes > 0
    torch.testing.assert_close(bls.cam_weights, expected.cam_weights, rtol=1e-5, atol=1e-8)
    saved = BroadLearningSystem.load(tmp_path / BLS_FILE)
    assert torch.equal(saved.cam_weights, bls.cam_weights) and saved.stages == ["stage1", "stage2"]


def test_fit_bls_returns_the_model_and_its_provenance():
    net, data = TinyNet(), RandomImages(12)
    bls, info = fit_bls(net, DataLoader(data, batch_size=5), ["stage2"], alpha=10.0, step=256, device="cpu")
    assert (info["n"], info["d"], info["C"]) == (12, 10, NUM_CLASSES) and bls.cam_weights.shape == (10, NUM_CLASSES)
    assert torch.equal(info["indices"], torch.arange(12)) and bls.stages == ["stage2"]


def test_features_are_extracted_with_tf32_off_and_the_callers_setting_restored():
    # cuDNN's default TF32 made a CUDA fit differ from the CPU fit by 1e-2 (issue 19): off during the forward only.
    net, data, seen = TinyNet(), RandomImages(4), []
    net.stage1.register_forward_hook(lambda *_: seen.append((torch.backends.cudnn.allow_tf32,
                                                             torch.backends.cuda.matmul.allow_tf32)))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        extract_gap_features(net, DataLoader(data, batch_size=4), ["stage1", "stage2"], "cpu")
        assert seen == [(False, False)]
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
