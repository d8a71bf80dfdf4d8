"""The ImageNet-style family (resnet18..152, plainN), resnet18_ms, the torchvision mapping and the study."""
import json
import shutil

import pytest
import torch

from reslab import ReslabError
from reslab.cli import main
from reslab.config import ConfigError, load_config
from reslab.importers.torchvision import from_torchvision, infer_architecture, load_torchvision, to_torchvision
from reslab.models import count_macs, count_params, create_model, family_members, list_models, model_kwargs
from reslab.models.imagenet import macs_at_224
from reslab.models.multiscale import MultiScaleBlock
from reslab.models.resnet import BasicBlock, Bottleneck
from reslab.report import write_report
from reslab.report.imagenet_style import verdicts
from reslab.study import run_study
from reslab.study.results import load_study
from reslab.study.imagenet_style import plan_imagenet_style

from conftest import randomise_bn

# torchvision's parameter counts (stem=imagenet, num_classes=1000, option-B shortcuts).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def _tv_kwargs():
    return dict(stem="imagenet", num_classes=1000, shortcut="B")


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(depth):
    assert count_params(create_model(f"resnet{depth}", **_tv_kwargs())) == TORCHVISION_PARAMS[depth]


def test_registry_lists_the_family_and_keeps_the_cifar_names():
    names = list_models()
    for d in (18, 34, 50, 101, 152):
        assert f"resnet{d}" in names and f"plain{d}" in names
    assert "resnet18_ms" in names and "plain18_ms" in names
    assert any(isinstance(b, Bottleneck) for b in create_model("resnet50").modules())
    cifar50 = create_model("cifar_resnet50")  # the CIFAR 6n+2 net keeps its prefixed name
    assert sum(isinstance(b, BasicBlock) for b in cifar50.modules()) == 24
    depths = (18, 34, 50, 101, 152)
    assert set(family_members("imagenet-style")) == ({f"{k}{d}" for k in ("resnet", "plain") for d in depths}
                                                     | {"resnet18_ms", "plain18_ms"})


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet18_ms"])
def test_plain_is_the_residual_net_minus_its_shortcuts(name):
    plain_name = name.replace("resnet", "plain")
    torch.manual_seed(3)
    res = create_model(name)
    torch.manual_seed(3)
    plain = create_model(plain_name)
    assert count_params(res) == count_params(plain)  # option A: shortcuts have no parameters
    rs, ps = res.state_dict(), plain.state_dict()
    assert rs.keys() == ps.keys() and all(torch.equal(rs[k], ps[k]) for k in rs)  # same weights, same seed
    assert not any(n.endswith("shortcut") for n, _ in plain.named_modules())
    # option B: the residual net = the plain net + its projections, main-path weights still identical
    torch.manual_seed(3)
    res_b = create_model(name, shortcut="B").state_dict()
    torch.manual_seed(3)
    plain_b = create_model(plain_name, shortcut="B").state_dict()
    extra = {k: v for k, v in res_b.items() if k not in plain_b}
    assert extra and all(".shortcut." in k for k in extra)
    assert all(torch.equal(res_b[k], v) for k, v in plain_b.items())


def test_forward_shapes_for_both_stems():
    torch.manual_seed(0)
    x32 = torch.randn(2, 3, 32, 32)
    for name in ("resnet18", "plain34", "resnet50", "resnet18_ms"):
        m = create_model(name, width=8).eval()  # width only changes the channels; small keeps this cheap
        assert m(x32).shape == (2, 10)
        feats = m.forward_features(x32)
        assert feats.shape[-2:] == (4, 4)  # CIFAR stem: 32 -> 32, 16, 8, 4
    m = create_model("resnet18", num_classes=100).eval()
    assert m(x32[:1]).shape == (1, 100)
    x224 = torch.randn(1, 3, 224, 224)
    for name in ("resnet18", "resnet50"):
        m = create_model(name, stem="imagenet", num_classes=1000).eval()
        assert m.forward_features(x224).shape[-2:] == (7, 7)
        assert m(x224).shape == (1, 1000)
    assert create_model("resnet18", stem="imagenet").eval()(x32[:1]).shape == (1, 10)  # 32 -> 1x1 at the end


def test_macs_at_224_equals_a_forward_pass_count():
    for name, sc in (("resnet18", "A"), ("resnet50", "B"), ("resnet18_ms", "C"), ("plain34", "A")):
        m = create_model(name, shortcut=sc)
        fast = macs_at_224(m, count_macs(m, (3, 32, 32)))
        counted = count_macs(create_model(name, stem="imagenet", shortcut=sc).to("meta"), (3, 224, 224))
        assert fast == counted, name
    # torchvision's documented GFLOPS (multiply-adds; option B, 1000 classes): 1.81 / 4.09
    for name, ref in (("resnet18", 1.81), ("resnet50", 4.09)):
        m = create_model(name, num_classes=1000, shortcut="B")
        assert round(macs_at_224(m, count_macs(m)) / 1e9, 2) == ref
    # (the paper's Table 1 says 3.8 for ResNet-50: its v1 bottleneck strides the first 1x1, not the 3x3)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_resnet18_ms_stays_within_the_resnet34_budget(stem):
    size = (3, 32, 32) if stem == "cifar" else (3, 224, 224)
    ms, r34, r18 = (create_model(n, stem=stem).to("meta") for n in ("resnet18_ms", "resnet34", "resnet18"))
    assert count_params(r18) < count_params(ms) <= count_params(r34)
    assert count_macs(r18, size) < count_macs(ms, size) <= count_macs(r34, size)
    blocks = [b for b in ms.modules() if isinstance(b, MultiScaleBlock)]
    assert len(blocks) == 8 and [b.branches[1][0].dilation for b in blocks] == [(2, 2)] * 8


def test_zero_init_residual_zeroes_the_last_bn_of_every_block():
    for name, kind in (("resnet18", BasicBlock), ("resnet50", Bottleneck), ("resnet18_ms", MultiScaleBlock)):
        m = create_model(name, width=8, zero_init_residual=True)
        bns = [b.last_bn().weight for b in m.modules() if isinstance(b, kind)]
        assert bns and all(torch.count_nonzero(w) == 0 for w in bns)
        m = create_model(name, width=8)
        assert all(torch.all(b.last_bn().weight == 1) for b in m.modules() if isinstance(b, kind))


@pytest.mark.parametrize("kw, needle", [({"stem": "big"}, "stem='big' is not allowed; allowed: cifar, imagenet"),
                                        ({"shortcut": "D"}, "shortcut='D' is not allowed"),
                                        ({"width": 0}, "width=0 is not allowed")])
def test_bad_arguments_give_one_line_errors(kw, needle):
    for name in ("resnet34", "plain18_ms"):
        with pytest.raises(ReslabError, match=needle) as e:
            create_model(name, **kw)
        assert "\n" not in str(e.value)


def test_config_stem_and_width_reach_the_model_only_when_set():
    assert model_kwargs(load_config(None, {"model.name": "resnet20"})) == {"shortcut": "A"}  # older configs unchanged
    cfg = load_config(None, {"model.name": "resnet18", "model.stem": "imagenet", "model.width": 16})
    assert model_kwargs(cfg) == {"shortcut": "A", "stem": "imagenet", "width": 16}
    with pytest.raises(ConfigError, match=r"model.stem='big' is not allowed; allowed: cifar, imagenet"):
        load_config(None, {"model.name": "resnet18", "model.stem": "big"})
    with pytest.raises(ConfigError, match=r"model.width=0 is not allowed"):
        load_config(None, {"model.name": "resnet18", "model.width": 0})
    with pytest.raises(ConfigError, match=r"model.width=16 is not allowed; only the ImageNet-style nets.*not resnet20"):
        load_config(None, {"model.name": "resnet20", "model.width": 16})
    for profile in ("imagenet_style", "imagenet_style_quick"):
        load_config(profile)  # the shipped profiles validate


# ---------------------------------------------------------------- torchvision

@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_key_mapping_round_trip(depth, tmp_path):
    """No torchvision needed: our net -> torchvision names -> back -> load: identical outputs."""
    torch.manual_seed(depth)
    ours = create_model(f"resnet{depth}", **_tv_kwargs())
    randomise_bn(ours)
    ours.eval()
    tv_state = to_torchvision(ours.state_dict())
    assert any(".downsample.0.weight" in k for k in tv_state) and not any("shortcut" in k for k in tv_state)
    assert [k for k in tv_state if "downsample" not in k] == [k for k in ours.state_dict() if "shortcut" not in k]
    assert from_torchvision({"module." + k: v for k, v in tv_state.items()}).keys() == ours.state_dict().keys()
    assert infer_architecture(tv_state) == (f"resnet{depth}", 1000)
    torch.save(tv_state, tmp_path / "tv.pth")
    loaded = load_torchvision(tmp_path / "tv.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_torchvision_loader_rejects_what_does_not_fit():
    state = to_torchvision(create_model("resnet18", **_tv_kwargs()).state_dict())
    with pytest.raises(ReslabError, match="not a torchvision ResNet"):
        load_torchvision({"foo": torch.zeros(1)})
    del state["layer4.1.conv2.weight"]
    with pytest.raises(ReslabError, match="do not fit resnet18: 1 missing"):
        load_torchvision(state)
    with pytest.raises(ReslabError, match="not a ResNet-18/34/50/101/152"):
        infer_architecture({k: v for k, v in state.items() if not k.startswith("layer4.1.")})


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_give_identical_outputs(depth):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(depth)
    ref = getattr(tv.models, f"resnet{depth}")(weights=None)
    randomise_bn(ref)
    ref.eval()
    ours = load_torchvision(ref.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- the study

TINY = ["model.width=4", "data.val_size=50", "data.val_subset=null", "data.test_subset=40", "data.train_subset=null",
        "train.batch_size=25", "train.epochs=null", "train.iterations=12", "train.eval_every=4",
        "optim.warmup=none", "log.progress=false"]


@pytest.fixture(scope="module")
def fake_dir_module(tmp_path_factory):
    from reslab.data.synthetic import write_fake_cifar
    d = tmp_path_factory.mktemp("fake")
    write_fake_cifar(d, per_batch=60, test=60)
    return d


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, fake_dir_module):
    out = tmp_path_factory.mktemp("ims") / "s"
    spec = plan_imagenet_style("quick", overrides=TINY, data_dir=str(fake_dir_module))
    assert run_study(spec, out, quiet=True, log=lambda m: None)
    write_report(out)
    return out


def test_study_trains_the_five_models_and_writes_the_report(tiny_study):
    names = sorted(p.name for p in (tiny_study / "runs").iterdir())
    assert names == ["plain18-s0", "plain34-s0", "resnet18-s0", "resnet18_ms-s0", "resnet34-s0"]
    for n in names:
        s = json.loads((tiny_study / "runs" / n / "summary.json").read_text())
        assert s["status"] == "finished"
    assert json.loads((tiny_study / "study.json").read_text())["kind"] == "imagenet-style"
    rep = tiny_study / "report"
    for f in ("report.md", "report.html", "loss_pairs.png", "val_error.png", "ms.png", "lr.png", "confusion.png"):
        assert (rep / f).is_file() and (rep / f).stat().st_size > 1000, f
    md = (rep / "report.md").read_text()
    for needle in ("## Verdicts", "Degradation (plain34 vs plain18)", "Deeper ResNets do better (resnet34 vs resnet18)",
                   "Multi-scale (resnet18_ms vs resnet34)", "Residual cure at depth 34", "## Protocol",
                   "widths 4/8/16/32", "reduced from the standard", "## Results", "MACs @32", "## Ranking",
                   "## Per-class test accuracy", "airplane", "ImageNet, not comparable", "27.94", "28.54", "27.88",
                   "25.03", "loss_pairs.png", "ms.png", "cannot tell these models apart",
                   "## Layer responses (the paper's Figure 7)", "## Gradient flow along training"):
        assert needle in md, needle
    assert "Figure 6" not in md  # not the degradation report
    html = (rep / "report.html").read_text()
    # the five figures above and the analysis' Fig. 7 responses
    assert html.count("data:image/png;base64,") == 6 and "ImageNet, not comparable" in html


def test_protocol_is_identical_across_the_five_runs(tiny_study):
    import yaml
    cfgs = []
    for run in (tiny_study / "runs").iterdir():
        c = yaml.safe_load((run / "config.yaml").read_text())
        c["model"].pop("name")
        cfgs.append(c)
    assert all(c == cfgs[0] for c in cfgs) and cfgs[0]["model"]["width"] == 4


def _flip(study_dir, dst, edits):
    shutil.copytree(study_dir, dst)
    for name, (train_err, test_err) in edits.items():
        p = dst / "runs" / f"{name}-s0" / "summary.json"
        s = json.loads(p.read_text())
        s["final"]["train_error"], s["final"]["test_error"] = train_err, test_err
        p.write_text(json.dumps(s))
    for f in dst.glob("runs/*/correct.json"):  # edited numbers: the unpaired yardstick judges them
        f.unlink()
    return dst


def test_verdicts_follow_the_numbers(tiny_study, tmp_path):
    # tiny study: test error on 40 images, training error on 100 -> differences of ~35 points are separable
    good = _flip(tiny_study, tmp_path / "good", {"plain18": (20.0, 30.0), "plain34": (60.0, 70.0),
                                                "resnet18": (30.0, 60.0), "resnet34": (10.0, 20.0),
                                                "resnet18_ms": (5.0, 2.0)})
    texts = [v.text for v in verdicts(load_study(good))]
    assert texts[0].startswith("Degradation: plain34 ends with higher training error than "
                               "plain18 (60.0% vs 20.0%") and texts[0].endswith("— reproduced.")
    assert texts[1].startswith("Deeper ResNets do better: resnet34 ends with lower test error than resnet18 "
                               "(20.0% vs 60.0%") and texts[1].endswith("— reproduced.")
    assert texts[2].startswith("Multi-scale (resnet18_ms vs resnet34): resnet18_ms beats resnet34 on test error "
                               "(2.0% vs 20.0%)") and texts[2].endswith("— reproduced.")
    assert "Residual cure at depth 34: resnet34 ends below plain34" in texts[3]
    bad = _flip(tiny_study, tmp_path / "bad", {"plain18": (60.0, 70.0), "plain34": (20.0, 30.0),
                                              "resnet18": (10.0, 20.0), "resnet34": (30.0, 60.0),
                                              "resnet18_ms": (40.0, 98.0)})
    texts = [v.text for v in verdicts(load_study(bad))]
    assert "plain34 ends with lower (or equal) training error" in texts[0] and texts[0].endswith("not reproduced.")
    assert "resnet34 does not beat resnet18" in texts[1] and texts[1].endswith("not reproduced.")
    assert "resnet18_ms does not beat resnet34" in texts[2] and texts[2].endswith("not reproduced.")
    close = _flip(tiny_study, tmp_path / "close", {"plain18": (50.0, 50.0), "plain34": (52.0, 52.0),
                                                  "resnet18": (50.0, 50.0), "resnet34": (49.0, 49.0),
                                                  "resnet18_ms": (48.0, 48.0)})
    vs = verdicts(load_study(close))
    assert all(v.reproduced is None and "not separable at this budget" in v.text for v in vs[:3])
    write_report(bad)  # the written report carries the flipped verdicts
    assert "resnet18_ms does not beat resnet34" in (bad / "report" / "report.md").read_text()


def test_the_claims_are_the_degradation_reports_and_the_colours_meet_3_to_1(tiny_study, tmp_path):
    from reslab.analysis.verdicts import decide
    from reslab.plotting import contrast_ratio
    from reslab.report import claims
    from reslab.report.imagenet_style import COLORS

    assert all(contrast_ratio(c) >= 3 for c in COLORS.values()), COLORS
    study = load_study(tiny_study)
    by = {m.model: m for m in study.models()}
    shared = decide([claims.degradation(study, by["plain18"], by["plain34"]),
                     claims.depth_helps_resnets(study, by["resnet18"], by["resnet34"]),
                     claims.residual_cure(study, by["plain34"], by["resnet34"], 34)])
    vs = verdicts(study)
    assert [vs[0], vs[1], vs[3]] == shared


def test_plan_and_cli(tmp_path, fake_dir_module, capsys):
    spec = plan_imagenet_style("full")
    assert [r.overrides["model.name"] for r in spec.runs] == ["plain18", "resnet18", "plain34", "resnet34",
                                                              "resnet18_ms"]
    assert spec.base_config["train"]["batch_size"] == 256 and spec.base_config["train"]["epochs"] == 150
    assert spec.base_config["optim"]["weight_decay"] == 0.0005 and spec.base_config["optim"]["lr"] == 0.1
    assert len(plan_imagenet_style("quick", seeds=2).runs) == 10
    with pytest.raises(ReslabError, match="--profile 'fast' is not allowed; allowed: full, quick"):
        plan_imagenet_style("fast")
    args = ["study", "imagenet-style", "--profile", "quick", "--data-dir", str(fake_dir_module), "--out",
            str(tmp_path / "st"), "--quiet"]
    for o in TINY + ["train.iterations=4"]:
        args += ["--set", o]
    assert main(args) == 0
    assert "ImageNet-style nets on CIFAR-10" in (tmp_path / "st" / "report" / "report.md").read_text()
    assert main(["study", "imagenet-style", "--profile", "fast"]) == 2
    assert "allowed: full, quick" in capsys.readouterr().err


def test_models_command_lists_the_224_column(capsys):
    assert main(["models", "--filter", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "MACs @224x224" in out and "resnet18_ms" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("resnet18 "))
    assert "11,000,138" in line and "1.79G" in line and "1.8G" in line
    assert main(["models", "--filter", "resnet20", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert "macs_224" not in row and row["parameters"] == 269_722  # CIFAR rows unchanged
    assert main(["models", "--filter", "resnet152", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["macs_224"] == 11_151_937_536  # 10 classes, ImageNet stem; the paper (1000 classes) says 11.3G
