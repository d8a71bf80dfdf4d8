"""reslab.analysis: Fig. 7 layer responses, gradient flow, their verdicts, CLI and report sections."""
import shutil

import pytest
import torch
import torch.nn.functional as F

from reslab.analysis.gradients import GradientPoint, GradientProfile, gradient_norms, measure_gradients
from reslab.analysis.findings import (gradient_verdict, response_depth_verdict, response_pair_verdict,
                                    response_verdicts)
from reslab.analysis.responses import ResponseProfile, capture_responses, layer_stds, response_layers
from reslab.cli import main
from reslab.weights.files import load_checkpoint, save_checkpoint
from reslab.models import create_model

TINY = ["data.val_size=50", "data.val_subset=null", "data.test_subset=40", "train.batch_size=25",
        "train.iterations=12", "train.eval_every=4", "optim.milestones=[0.5, 0.75]", "optim.milestones_unit=fraction",
        "optim.warmup=none", "data.train_subset=null", "log.progress=false"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These tests run tiny tensors on a shared 2-core machine: with two intra-op threads competing with other
    # processes they ran 5x slower (135 s against 24 s). One thread here; the setting is restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- a model with non-trivial BN, and the forward pass written out by hand ----------------------------------

def _net(name: str, seed: int = 0):
    torch.manual_seed(seed)
    m = create_model(name)
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():  # eval-mode BN that actually shifts and scales, so a wrong tensor cannot pass
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(c, generator=g) * 0.5)
    return m.eval()


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv(x, conv):
    return F.conv2d(x, conv.weight, stride=conv.stride, padding=conv.padding)


def _shortcut_a(x, cout):
    if x.shape[1] == cout:
        return x
    x = x[:, :, ::2, ::2]
    extra = cout - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


@torch.no_grad()
def manual_forward(model, x):
    """(logits, {layer: BN output}) with no inplace op anywhere: the reference the hooks must match."""
    resp = {}
    h = _bn(_conv(x, model.conv1), model.bn1)
    resp["conv1"] = h
    h = h.clamp_min(0)
    for si, stage in enumerate(model.stages()):
        for bi, blk in enumerate(stage):
            pre = f"layer{si + 1}.{bi}."
            a = _bn(_conv(h, blk.conv1), blk.bn1)
            resp[pre + "conv1"] = a
            b = _bn(_conv(a.clamp_min(0), blk.conv2), blk.bn2)
            resp[pre + "conv2"] = b
            if blk.residual:
                b = b + _shortcut_a(h, b.shape[1])
            h = b.clamp_min(0)
    logits = F.linear(h.mean((2, 3)), model.fc.weight, model.fc.bias)
    return logits, resp


@pytest.mark.parametrize("name", ["resnet8", "plain8", "resnet14"])
def test_hooks_capture_exactly_the_bn_outputs_of_a_manual_forward(name):
    model = _net(name)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    logits, want = manual_forward(model, x)
    with torch.no_grad():
        assert torch.allclose(model(x), logits, atol=1e-5)  # the manual forward is the model's forward
    got = capture_responses(model, x)
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    assert list(got) == list(want) and len(got) == depth - 1  # every 3x3 layer, stem included, in order
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k
        assert (want[k] < 0).any(), k  # pre-ReLU: negative values survive


def test_layer_stds_merge_batches_exactly():
    model = _net("plain8")
    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(5, 3, 32, 32, generator=g), torch.randn(7, 3, 32, 32, generator=g)]
    names, std, pooled = layer_stds(model, iter(xs))
    _, want = manual_forward(model, torch.cat(xs))
    assert names == list(want)
    for i, k in enumerate(names):
        t = want[k].double()
        per_channel = t.transpose(0, 1).reshape(t.shape[1], -1).std(1, correction=0).mean()
        assert std[i] == pytest.approx(float(per_channel), rel=1e-5)
        assert pooled[i] == pytest.approx(float(t.std(correction=0)), rel=1e-5)


def test_layer_stds_use_eval_mode_and_restore_the_mode():
    model = _net("resnet8").train()
    before = model.bn1.running_mean.clone()
    x = torch.randn(4, 3, 32, 32)
    _, std, _ = layer_stds(model, [x])
    assert model.training and torch.equal(model.bn1.running_mean, before)  # no BN update: eval mode was used
    model.eval()
    _, want = manual_forward(model, x)
    assert std[0] == pytest.approx(float(want["conv1"].transpose(0, 1).reshape(16, -1).std(1, correction=0).mean()),
                                   rel=1e-5)


def test_inplace_relu_pitfall_is_real_and_avoided():
    """A hook that keeps a reference to a BN output sees it rewritten by the shared inplace ReLU."""
    model = _net("plain8")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    naive = {}
    handles = [la.bn.register_forward_hook(lambda m, i, o, n=la.name: naive.__setitem__(n, o))
               for la in response_layers(model)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    _, want = manual_forward(model, x)
    got = capture_responses(model, x)
    for k in ("conv1", "layer1.0.conv1", "layer1.0.conv2"):  # stem, block bn1, plain block bn2
        assert (naive[k] >= 0).all() and not torch.allclose(naive[k], want[k])  # the pitfall: ReLU'd in place
        assert torch.allclose(got[k], want[k], atol=1e-5)                        # ours: the true response


def test_response_layers_skip_shortcut_projections():
    names = [la.name for la in response_layers(create_model("resnet8", shortcut="C"))]
    assert names == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
                     "layer3.0.conv1", "layer3.0.conv2"]


# ---- verdicts follow the numbers ----------------------------------------------------------------------------

def _prof(name, group, depth, std):
    return ResponseProfile(name, name, group, depth, "", None, "test", 10, [f"l{i}" for i in range(len(std))], std,
                           std)


def test_response_verdicts_flip_when_the_numbers_flip():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 1.5, 5.0]
    v = response_pair_verdict(_prof("plain8", "plain", 8, a), _prof("resnet8", "resnet", 8, b))
    assert "smaller than plain8 in 3 of 4 layers" in v.text and "as in the paper" in v.text and v.reproduced
    v = response_pair_verdict(_prof("plain8", "plain", 8, b), _prof("resnet8", "resnet", 8, a))
    assert "in 1 of 4 layers" in v.text and "not as in the paper" in v.text and v.reproduced is False

    v = response_depth_verdict(_prof("resnet8", "resnet", 8, [2.0]), _prof("resnet14", "resnet", 14, [1.0, 1.0]))
    assert "deeper resnet14 has smaller" in v.text and v.reproduced
    v = response_depth_verdict(_prof("resnet8", "resnet", 8, [1.0]), _prof("resnet14", "resnet", 14, [2.0, 2.0]))
    assert "larger" in v.text and v.reproduced is False

    texts = [v.text for v in response_verdicts([_prof("plain8", "plain", 8, a), _prof("resnet8", "resnet", 8, b),
                                                _prof("resnet14", "resnet", 14, [0.1] * 4)])]
    assert len(texts) == 2 and "3 of 4" in texts[0] and "deeper resnet14" in texts[1]


def test_gradient_verdict_flips_when_the_numbers_flip():
    def prof(norms):
        pt = GradientPoint(0, 0.0, "", [f"c{i}" for i in range(len(norms))], norms, [1.0] * len(norms), 2.3)
        return GradientProfile("plain56-s0", "plain56", "plain", 56, 8, [pt])

    shrinking = [1e-4] * 3 + [1e-2] * 4 + [1.0] * 3
    v = gradient_verdict(prof(shrinking))
    assert "0.0001x at initialisation" in v.text and "— vanishing (below 0.1x)" in v.text and v.reproduced is False
    assert "exploding" not in v.text
    v = gradient_verdict(prof(shrinking[::-1]))
    assert "1e+04x" in v.text
    assert "no vanishing gradient (never below 0.1x); growing toward the input at initialisation" in v.text
    assert v.reproduced
    v = gradient_verdict(prof([1.0] * 10))
    assert "1x at initialisation — no vanishing gradient (never below 0.1x)" in v.text and "exploding" not in v.text


# ---- on trained runs -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory, fake_dir):
    """A tiny degradation study (plain8, resnet8; 12 iterations, snapshots at 0, 1, 6, 12) with its report.
    Trained once: the gradient, CLI and report tests all read it."""
    from reslab.report import write_report
    from reslab.study import plan_degradation, run_study

    out = tmp_path_factory.mktemp("study") / "s"
    spec = plan_degradation("quick", (8,), seeds=1, overrides=TINY, data_dir=str(fake_dir))
    assert run_study(spec, out, quiet=True, log=lambda m: None)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def two_runs(study):
    return [study / "runs" / "resnet8-s0", study / "runs" / "plain8-s0"]


def test_gradients_at_init_and_every_snapshot_deterministic(two_runs, tmp_path):
    a = measure_gradients(two_runs, batch_size=16)
    assert [p.group for p in a] == ["resnet", "plain"]
    assert [pt.iteration for pt in a[0].points] == [0, 1, 6, 12]  # snapshots at 0, 10%, 50%, 100% of 12
    assert all(len(pt.grad_norm) == 7 and all(g > 0 for g in pt.grad_norm) for p in a for pt in p.points)
    b = measure_gradients(two_runs[:1], batch_size=16)
    assert [pt.grad_norm for pt in a[0].points] == [pt.grad_norm for pt in b[0].points]  # one fixed batch

    # A run without its iteration-0 snapshot gets the initialisation rebuilt from its seed: the same numbers.
    copy = tmp_path / "resnet8"
    shutil.copytree(two_runs[0], copy)
    (copy / "checkpoints" / "snapshot-00000000.pt").unlink()
    c = measure_gradients([copy], batch_size=16)[0]
    assert c.points[0].source == "rebuilt from seed"
    assert c.points[0].grad_norm == pytest.approx(a[0].points[0].grad_norm, rel=1e-5)


def test_gradient_norms_are_train_mode_and_leave_no_grads():
    model = _net("plain8")
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    names, g, w, loss = gradient_norms(model, x, y)
    assert not model.training and all(p.grad is None for p in model.parameters())  # mode restored, no grads left
    ref = F.cross_entropy(model.train()(x), y)  # train mode: batch statistics in BN
    ref.backward()
    assert g[0] == pytest.approx(float(model.conv1.weight.grad.norm()), rel=1e-5)
    assert loss == pytest.approx(float(ref.detach()))
    assert names[0] == "conv1" and len(names) == 7 and w[0] == pytest.approx(float(model.conv1.weight.norm().detach()))


def test_cli_writes_figures_and_never_overwrites(two_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "responses", *map(str, two_runs), "--out", str(out), "--max-images", "30"]) == 0
    text, err = capsys.readouterr()
    assert err == "measuring the layer responses of 2 model(s) on the test split, at most 30 images ...\n"
    assert "responses are smaller than plain8 in" in text and " of 7 layers" in text
    first = (out / "responses.csv").read_bytes()
    assert (out / "responses.png").stat().st_size > 1000 and first.count(b"\n") == 1 + 2 * 7
    assert main(["analyze", "responses", str(two_runs[0]), "--out", str(out), "--split", "val"]) == 0
    assert (out / "responses.csv").read_bytes() == first  # kept; the second run went to responses-2.*
    assert (out / "responses-2.png").is_file() and (out / "responses-2.csv").is_file()

    capsys.readouterr()
    assert main(["analyze", "gradients", *map(str, two_runs), "--out", str(out), "--batch-size", "16"]) == 0
    assert (out / "gradients.png").stat().st_size > 1000
    text, err = capsys.readouterr()
    assert err == "measuring gradient norms of 2 run(s) at 8 points of training, on 16 training images each ...\n"
    assert "plain8-s0: gradient norm of the first 3 conv layers over the last 3: " in text
    assert (out / "gradients.csv").read_text().count("\n") == 1 + 2 * 4 * 7  # 2 runs x 4 snapshots x 7 convs


def test_cli_bad_input_exits_2_with_one_line(two_runs, tmp_path, capsys):
    ckpt = load_checkpoint(two_runs[0] / "checkpoints" / "snapshot-00000012.pt")
    imported = tmp_path / "imported.pt"
    save_checkpoint({**ckpt, "config": None}, imported)  # what an import looks like: no training config
    (tmp_path / "afile").write_text("x")
    bad = [
        (["responses", str(tmp_path / "missing")], "is neither an existing run directory"),
        (["responses", "resnet20@nowhere"], "nowhere"),  # a published name with an unknown source
        (["responses", str(two_runs[0]), "--max-images", "0"], "--max-images 0"),
        (["responses", str(imported), "--split", "val"], "use --split test"),
        (["responses", str(two_runs[0]), "--data-dir", str(tmp_path / "nodata")], "--data-dir"),
        (["responses", str(two_runs[0]), "--out", str(tmp_path / "afile")], "is a file"),
        (["gradients", str(imported)], "gradients need a run directory"),
        (["gradients", str(two_runs[0]), "--batch-size", "100000"], "--batch-size 100000"),
    ]
    for args, needle in bad:
        assert main(["analyze", *args]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, (args, err)


def test_imported_style_checkpoint_works_on_test(two_runs, tmp_path, capsys):
    ckpt = load_checkpoint(two_runs[1] / "checkpoints" / "snapshot-00000012.pt")
    imported = tmp_path / "plain8.pt"
    save_checkpoint({**ckpt, "config": None}, imported)
    data_dir = ckpt["config"]["data"]["dir"]
    assert main(["analyze", "responses", str(imported), "--data-dir", data_dir, "--out", str(tmp_path)]) == 0
    assert "plain8 " in capsys.readouterr().out


# ---- the study report gains both sections ----------------------------------------------------------------------

def test_study_report_gains_both_figures_and_survives_without_snapshots(study, tmp_path):
    from reslab.report.sections import analysis_section
    from reslab.study.results import load_study
    from reslab.report.document import Figure, Para

    rep = study / "report"
    for f in ("responses.png", "gradients.png", "responses.csv", "gradients.csv"):
        assert (rep / f).is_file(), f
    md = (rep / "report.md").read_text()
    assert "## Layer responses (the paper's Figure 7)" in md and "(responses.png)" in md
    assert "responses are smaller than plain8 in" in md and " of 7 layers" in md
    assert "## Gradient flow along training" in md and "(gradients.png)" in md
    assert "plain8-s0: gradient norm of the first 3 conv layers over the last 3: " in md and "resnet8-s0: " in md
    assert md.index("## Layer responses") < md.index("## Files")  # the sections sit before the file list
    assert (rep / "report.html").read_text().count("data:image/png;base64,") == 6

    # The same study with its snapshots gone: responses still measured, gradients skipped with a reason.
    copy = tmp_path / "s"
    shutil.copytree(study, copy)
    for p in (copy / "runs").glob("*/checkpoints/snapshot-*"):
        p.unlink()
    blocks, fig7 = analysis_section(load_study(copy), tmp_path / "rep")
    assert sum(isinstance(b, Figure) for b in blocks) == 1 and (tmp_path / "rep" / "responses.png").is_file()
    assert any(isinstance(b, Para) and "kept no weight snapshots" in b.text for b in blocks)
    assert [v.claim for v in fig7] == ["Fig. 7: resnet8 responses smaller than plain8's"]  # for the summary
    assert not (tmp_path / "rep" / "gradients.png").exists()
