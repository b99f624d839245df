"""Datasets, the proportion sampler and the shared DataModule."""
from src.data.datamodule import ProportionDataModule
from src.data.proportion import check_proportion, proportion_subset
from src.data.synthetic import SyntheticDataModule

__all__ = ["ProportionDataModule", "SyntheticDataModule", "check_proportion", "proportion_subset"]
