import shutil
from pathlib import Path

import pytest
import torch

from reslab.config import load_config
from reslab.models import bn_act
from reslab.data.synthetic import write_fake_cifar
from reslab.report import write_report
from reslab.study import plan_degradation, run_study

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_ARCHIVE = SHARED / "data" / "cifar-10-python.tar.gz"
AKAMASTER = SHARED / "peer" / "akamaster"
# The fused BatchNorm kernel's build folder, as it is before the tests move the cache home: every test and every
# process a test starts loads the one build instead of compiling the kernel again (a minute each).
EXTENSIONS_DIR = str(bn_act.build_root())


@pytest.fixture(scope="session")
def fake_dir(tmp_path_factory) -> Path:
    """A tiny CIFAR-format archive: 5 x 60 training images, 60 test images."""
    d = tmp_path_factory.mktemp("fakecifar")
    write_fake_cifar(d, per_batch=60, test=60, seed=0)
    return d


@pytest.fixture
def tiny_cfg(fake_dir):
    """A config that trains resnet8 on the tiny data in a second or two."""

    def make(**over):
        base = {"model.name": "resnet8", "data.dir": str(fake_dir), "data.val_size": 50, "train.batch_size": 25,
                "train.iterations": 20, "train.eval_every": 5, "log.progress": False,
                "optim.lr": 0.05}
        base.update(over)
        return load_config(None, base)

    return make


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch, tmp_path):
    # Tests never read the user's cache or env, and never download.
    monkeypatch.delenv("RESLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", EXTENSIONS_DIR)


# A degradation study that trains in seconds: plain/resnet 8 and 14, one seed, 12 iterations on the tiny data; no
# weight snapshots, so its report measures Fig. 7 responses but skips the (slower) gradient flow.
TINY_STUDY = ["data.val_size=50", "data.val_subset=null", "data.test_subset=40", "train.batch_size=25",
              "train.iterations=12", "train.eval_every=4", "optim.milestones=[0.5, 0.75]",
              "optim.milestones_unit=fraction", "optim.warmup=none", "data.train_subset=null", "log.progress=false",
              "train.snapshots=[]"]


@pytest.fixture(scope="session")
def tiny_degradation_study(tmp_path_factory, fake_dir) -> Path:
    """A trained TINY_STUDY (no report written): copy it before changing anything in it."""
    out = tmp_path_factory.mktemp("tinystudy") / "s"
    spec = plan_degradation("quick", (8, 14), seeds=1, overrides=TINY_STUDY, data_dir=str(fake_dir))
    assert run_study(spec, out, quiet=True, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_degradation_report(tiny_degradation_study, tmp_path_factory) -> dict:
    """The report of a copy of tiny_degradation_study: write_report's answer (md, html, verdicts, ...) and the
    copy's path ("study"). Read it, do not change it."""
    study = tmp_path_factory.mktemp("tinyreport") / "s"
    shutil.copytree(tiny_degradation_study, study)
    return {**write_report(study), "study": study}


def real_data_available() -> bool:
    return REAL_ARCHIVE.is_file()


requires_real_data = pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"{REAL_ARCHIVE} not present")


def randomise_bn(model, seed: int = 0, spread: float = 0.1):
    """BN with non-trivial statistics and affine parameters (fresh BN — mean 0, var 1, gamma 1 — hides folding
    and mapping bugs)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * spread)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * spread)
    return model
