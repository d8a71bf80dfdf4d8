"""The data a run trains and evaluates on, on its device: split, normalisation fitted on the training split."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reslab.data import CifarData, Normalizer, load_dataset, splits_for
from reslab.engine.correct import split_digest


@dataclass
class Prepared:
    """Everything derived from data + config that training and evaluation share."""

    data: CifarData
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    normalizer: Normalizer
    probe_x: torch.Tensor      # the train probe (data.train_probe): training images evaluated without augmentation
    probe_y: torch.Tensor
    digests: dict[str, str]    # split -> sha256 of its image indices (engine/correct.py): test, val, train_probe

    @property
    def n_train(self) -> int:
        return self.train_x.shape[0]


def prepare_data(cfg, device: torch.device, data: CifarData | None = None,
                 normalizer: Normalizer | None = None) -> Prepared:
    """The run's splits as uint8 tensors on `device` (the whole data set lives there) and its normaliser: fitted
    on the training split, or `normalizer` as given (data.normalization=init: that of the initial weights)."""
    data = data or load_dataset(cfg.data.dataset, cfg.data.dir)
    s = splits_for(data.train_labels, data.test_labels, cfg.data)
    train_x = data.train_images[s.train]
    norm = normalizer or Normalizer.fit(train_x, cfg.data.normalization)
    name = cfg.data.dataset
    digests = {"test": split_digest(f"{name}/test", s.test), "val": split_digest(f"{name}/train", s.val),
               "train_probe": split_digest(f"{name}/train", s.probe)}
    return Prepared(data, train_x.to(device), data.train_labels[s.train].to(device),
                    data.train_images[s.val].to(device), data.train_labels[s.val].to(device),
                    data.test_images[s.test].to(device), data.test_labels[s.test].to(device), norm.to(device),
                    data.train_images[s.probe].to(device), data.train_labels[s.probe].to(device), digests)
