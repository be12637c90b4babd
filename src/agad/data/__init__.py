"""Datasets, the one-class protocol, image files and downloads for AGAD.

Example:
    >>> from agad.data import load_dataset, one_class_split
    >>> split = one_class_split(load_dataset("mnist-sample"), normal_class=0, gamma=0.05)
    >>> split.x_normal.shape
    (400, 1, 32, 32)
"""

from agad.data.bounds import MAX_IMAGE_SIZE, check_memory
from agad.data.datasets import DATASETS, Dataset, existing_path, load_dataset
# Note: this makes `agad.data.fetch` the function; the module (for its
# SOURCES table) is importlib.import_module("agad.data.fetch").
from agad.data.fetch import FETCHABLE, fetch
from agad.data.idx import load_idx_pair, read_idx
from agad.data.images import (
    DataWarning,
    check_compatible,
    default_image_size,
    expand_items,
    is_image_input,
    list_images,
    read_images,
    read_masks,
)
from agad.data.layouts import FolderData, load_folder, scan_folder
from agad.data.protocol import Split, one_class_split, validation_split
from agad.data.transforms import as_nchw_uint8, resize_uint8, to_float, to_uint8

__all__ = [
    "DATASETS",
    "FETCHABLE",
    "MAX_IMAGE_SIZE",
    "DataWarning",
    "Dataset",
    "FolderData",
    "Split",
    "as_nchw_uint8",
    "check_compatible",
    "check_memory",
    "default_image_size",
    "existing_path",
    "expand_items",
    "fetch",
    "is_image_input",
    "list_images",
    "load_dataset",
    "load_folder",
    "load_idx_pair",
    "one_class_split",
    "read_idx",
    "read_images",
    "read_masks",
    "resize_uint8",
    "scan_folder",
    "to_float",
    "to_uint8",
    "validation_split",
]
