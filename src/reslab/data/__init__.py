"""CIFAR-10: reading, splits, normalisation, batched on-device augmentation."""
from reslab.data.cifar import CLASSES, Cifar10, DataError, load_cifar10, read_cifar10, resolve_data_dir
from reslab.data.pipeline import (NORMALIZATIONS, PAD_FILLS, NormalizeInput, Normalizer, Splits, augment,
                                  make_splits, mix_seed, n_train_images, splits_for)

__all__ = ["CLASSES", "Cifar10", "DataError", "load_cifar10", "read_cifar10", "resolve_data_dir", "NORMALIZATIONS",
           "PAD_FILLS", "NormalizeInput", "Normalizer", "Splits", "augment", "make_splits", "mix_seed",
           "n_train_images", "splits_for"]
