"""CIFAR-10 and CIFAR-100: reading, splits, normalisation, batched on-device augmentation."""
from reslab.data.cifar import (CLASSES, DATASETS, CifarData, DataError, dataset_spec, load_cifar10, load_dataset,
                               read_cifar10, read_dataset, resolve_data_dir)
from reslab.data.pipeline import (NORMALIZATIONS, PAD_FILLS, NormalizeInput, Normalizer, Splits, augment,
                                  make_splits, mix_seed, n_eval_images, n_probe_images, n_train_images,
                                  splits_for)

__all__ = ["CLASSES", "DATASETS", "CifarData", "DataError", "dataset_spec", "load_cifar10", "load_dataset",
           "read_cifar10", "read_dataset", "resolve_data_dir", "NORMALIZATIONS",
           "PAD_FILLS", "NormalizeInput", "Normalizer", "Splits", "augment", "make_splits", "mix_seed",
           "n_eval_images", "n_probe_images", "n_train_images", "splits_for"]
