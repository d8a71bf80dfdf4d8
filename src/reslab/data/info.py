"""`reslab data info`: where the data is, counts per split and class, and the training split's channel statistics."""
from __future__ import annotations

from reslab.data.cifar import CifarData, resolve_data_dir
from reslab.data.pipeline import Normalizer, splits_for


def data_info(data: CifarData, d, data_dir: str | None) -> dict:
    """The numbers `reslab data info` prints, for data config `d` (`cfg.data`)."""
    s = splits_for(data.train_labels, data.test_labels, d)
    splits = {"train": data.train_labels[s.train], "val": data.train_labels[s.val], "test": data.test_labels[s.test]}
    n = len(data.classes)
    ch = Normalizer.fit(data.train_images, "channel", rows=s.train)  # no copy of the training split
    return {"dataset": data.dataset, "classes": list(data.classes), "data_dir": str(resolve_data_dir(data_dir)),
            "source": str(data.source),
            "official_archive_md5": data.official,
            "splits": {k: {"images": int(v.numel()), "per_class": v.bincount(minlength=n).tolist()}
                       for k, v in splits.items()},
            "train_channel_mean": ch.mean.tolist(), "train_channel_std": ch.std.tolist()}


def format_info(info: dict, d) -> str:
    """The table `reslab data info` prints."""
    official = info["official_archive_md5"]
    checked = ("official archive, md5 verified" if official
               else "structurally checked copy (not the official byte stream)")
    lines = [f"data dir     {info['data_dir']}",
             f"source       {info['source']}  ({checked})",
             f"split        val_size={d.val_size} split_seed={d.split_seed} train_subset={d.train_subset} "
             f"test_subset={d.test_subset}",
             *class_count_lines(info)]
    mean, std = (", ".join(f"{x:.4f}" for x in info[k]) for k in ("train_channel_mean", "train_channel_std"))
    lines.append(f"\ntrain channel mean ({mean})  std ({std})  [R, G, B; pixels / 255]")
    return "\n".join(lines)


def class_count_lines(info: dict) -> list[str]:
    """Images per split and class: a column per class for 10 classes, the range over classes for more."""
    classes = info["classes"]
    if len(classes) <= 10:
        lines = [f"\n{'split':<8}{'images':>8}  " + " ".join(f"{c[:5]:>6}" for c in classes)]
        return lines + [f"{k:<8}{v['images']:>8}  " + " ".join(f"{n:>6}" for n in v["per_class"])
                        for k, v in info["splits"].items()]
    lines = [f"\n{'split':<8}{'images':>8}  per class ({len(classes)} classes)"]
    return lines + [f"{k:<8}{v['images']:>8}  {min(v['per_class'])} to {max(v['per_class'])}"
                    for k, v in info["splits"].items()]
