"""Datasets, the proportion sampler and the shared DataModule."""
from src.data.bcss import BCSSDataModule
from src.data.content import data_content_digest
from src.data.datamodule import ProportionDataModule
from src.data.folder import FolderDataModule
from src.data.image_io import DatasetError
from src.data.openimages import OpenImagesDataModule, load_wsol_mask
from src.data.proportion import check_proportion, proportion_subset
from src.data.synthetic import SyntheticDataModule
from src.data.voc import VOCSegmentationDataModule

__all__ = ["BCSSDataModule", "DatasetError", "FolderDataModule", "OpenImagesDataModule", "ProportionDataModule",
           "SyntheticDataModule", "VOCSegmentationDataModule", "data_content_digest", "check_proportion", "load_wsol_mask", "proportion_subset"]
