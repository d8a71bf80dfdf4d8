"""The model card (README.md) of an exported folder: what the weights are, how they were trained, how well they do."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn
import yaml

from reslab import __version__, layout
from reslab.engine import runs
from reslab.engine.summary import read_summary
from reslab.models import count_macs, count_params
from reslab.weights import Pretrained



def run_of(weights: Pretrained) -> Path | None:
    """The run directory the weights were saved in, if they come from one."""
    ckpt = weights.origin.get("path")
    run = Path(ckpt).parent.parent if ckpt else None
    return run if run is not None and (run / layout.CONFIG_FILE).is_file() else None


def training_lines(run: Path) -> list[str]:
    cfg = yaml.safe_load((run / layout.CONFIG_FILE).read_text())
    s = read_summary(run)
    env = runs.read_json(run / layout.ENV_FILE) if (run / layout.ENV_FILE).exists() else {}
    d, t, o = cfg["data"], cfg["train"], cfg["optim"]
    lines = [f"- trained by reslab {env.get('reslab', '?')} (git {str(env.get('git_commit') or '?')[:10]}), torch "
             f"{env.get('torch', '?')}, on {env.get('device', '?')}; run `{run.name}`, status {s.status}",
             f"- protocol: {'?' if s.missing else s.iterations_done} of {s.iterations or '?'} iterations at batch "
             f"{t['batch_size']}, SGD lr {o['lr']} (x{o['gamma']} at {o['milestones']} {o['milestones_unit']}), "
             f"momentum {o['momentum']}, weight decay {o['weight_decay']}, seed {t['seed']}",
             f"- data: CIFAR-10, {d['val_size']} validation images held out (split seed {d['split_seed']}), "
             f"train subset {d['train_subset'] or 'none'}, test subset {d['test_subset'] or 'none (all 10,000)'}, "
             f"normalisation {d['normalization']}, augmentation {'pad-crop-flip' if d['augment'] else 'none'}"]
    if s.final:
        lines.append(f"- final test error **{s.final['test_error']:.2f}%** (training error "
                     f"{s.final['train_error']:.2f}%)")
    if s.best:
        lines.append(f"- best on validation: {s.best['val_error']:.2f}% at iteration {s.best['iteration']} "
                     f"(test error there {s.best['test_error']:.2f}%; selected on validation, never on test)")
    if s.wall_seconds:
        lines.append(f"- training time {s.wall_seconds / 60:.1f} min")
    return lines


def origin_lines(weights: Pretrained) -> list[str]:
    o = weights.origin
    if o.get("kind") == "published":
        return [f"- published by {o['project']} ({o['licence']}), file `{o['file']}`, sha256 `{o['sha256']}`",
                f"- published CIFAR-10 test error **{o['published_test_error']:.2f}%** (single 32x32 view); reslab's "
                f"eval of these weights on the official test set reproduces it"]
    run = run_of(weights)
    if run is not None:
        return training_lines(run)
    return [f"- from `{Path(o.get('path', '?')).name}`" + (f", source {o['source']}" if o.get("source") else "")]


def model_card(model: nn.Module, weights: Pretrained) -> str:
    norm = model.normalizer
    lines = [
        "---", "library_name: reslab", "tags: [image-classification, cifar10, resnet]", "datasets: [cifar10]", "---",
        f"# {weights.model} on CIFAR-10", "",
        f"{weights.model} as in He et al. 2016, *Deep Residual Learning for Image Recognition* (CIFAR-10 section), "
        f"built by reslab with {weights.kwargs}: {count_params(model):,} parameters, "
        f"{count_macs(model, (3, 32, 32)) / 1e6:.1f}M multiply-adds per 32x32 image.", "",
        "## Where the weights come from", *origin_lines(weights), "",
        "## Input", f"Normalised images: {norm.describe()}. `config.json` holds the normalisation; with "
        "`normalize_input=True` the loaded net takes float images in [0, 1].", "",
        "## Use", "```python", "from reslab.models import from_pretrained",
        "net = from_pretrained(\"THIS_FOLDER\", normalize_input=True)   # images in [0, 1], (N, 3, 32, 32)", "```",
        "The files are the Hugging Face Hub layout; `huggingface_hub.upload_folder(repo_id=..., folder_path=...)` "
        "uploads them as they are.", "",
        f"Exported by reslab {__version__}.", ""]
    return "\n".join(lines)
