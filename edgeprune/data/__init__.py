"""Datasets (Fashion-MNIST, CIFAR-10/100, ImageFolder, digits) and the batch loader."""

from edgeprune.data._core import ArraySplit, Augment, BatchLoader, Dataset, DatasetInfo, Split
from edgeprune.data._sources import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = [
    "DATASETS",
    "ArraySplit",
    "Augment",
    "BatchLoader",
    "Dataset",
    "DatasetInfo",
    "Split",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
