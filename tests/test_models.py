import pytest
import torch

from reslab import ReslabError
from reslab.models import count_macs, count_params, create_model, list_models
from reslab.models.paper import TABLE6_PARAMS
from reslab.models.resnet import BasicBlock, PadShortcut

# The paper's Table 6 parameter counts (0.27M ... 19.4M) as exact integers for the option-A nets.
PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(depth):
    res, plain = create_model(f"resnet{depth}"), create_model(f"plain{depth}")
    assert count_params(res) == PAPER_PARAMS[depth]
    assert count_params(plain) == PAPER_PARAMS[depth]  # option A adds no parameters


@pytest.mark.parametrize("depth", sorted(TABLE6_PARAMS))
def test_built_nets_round_to_the_counts_printed_in_table6(depth):
    printed = TABLE6_PARAMS[depth]  # "0.27M" ... "19.4M", as reslab prints them beside its own counts
    digits = len(printed.rstrip("M").split(".")[1])
    assert f"{round(count_params(create_model(f'resnet{depth}')) / 1e6, digits)}M" == printed


def test_registry_lists_paper_depths_and_resolves_any_6n_plus_2():
    names = list_models()
    for d in (20, 32, 44, 56, 110, 1202):
        assert f"resnet{d}" in names and f"plain{d}" in names
    assert count_params(create_model("resnet8")) == 75_290
    assert count_params(create_model("plain74")) == count_params(create_model("resnet74"))
    # a CIFAR net's parameters grow by the same amount per n (one block in each of the three stages): 6n+2 = 50
    # is n = 8, five n past ResNet-20
    per_n = (PAPER_PARAMS[32] - PAPER_PARAMS[20]) // 2
    assert count_params(create_model("cifar_resnet50")) == PAPER_PARAMS[20] + 5 * per_n == 755_802


# (resnet50 / resnet152 were refused here until the ImageNet-style family took those names:
# tests/test_imagenet_style.py)
@pytest.mark.parametrize("bad, needle", [("resnet21", r"6n\+2"), ("plain2", r"6n\+2"), ("vgg16", "unknown model")])
def test_bad_names_give_clear_errors(bad, needle):
    with pytest.raises(ReslabError, match=needle):
        create_model(bad)


def test_plain_and_residual_differ_only_in_the_shortcut():
    torch.manual_seed(0)
    res = create_model("resnet20")
    torch.manual_seed(0)
    plain = create_model("plain20")
    rs, ps = res.state_dict(), plain.state_dict()
    assert rs.keys() == ps.keys()
    assert all(torch.equal(rs[k], ps[k]) for k in rs)  # same init, same seed
    assert all(b.residual for b in res.modules() if isinstance(b, BasicBlock))
    assert not any(b.residual for b in plain.modules() if isinstance(b, BasicBlock))
    x = torch.randn(2, 3, 32, 32)
    res.eval(), plain.eval()
    assert not torch.allclose(res(x), plain(x))  # the shortcut does change the function


def test_option_b_and_c_add_projections_and_keep_main_path_init():
    a, b, c = (count_params(create_model("resnet20", shortcut=s)) for s in "ABC")
    assert a < b < c
    # B: two projections (16->32, 32->64), each 1x1 conv + BN
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    torch.manual_seed(1)
    res_b = create_model("resnet20", shortcut="B").state_dict()
    torch.manual_seed(1)
    plain_b = create_model("plain20", shortcut="B").state_dict()
    assert all(torch.equal(res_b[k], v) for k, v in plain_b.items())


def test_option_a_shortcut_subsamples_and_pads_symmetrically():
    sc = PadShortcut(16, 32, 2)
    x = torch.randn(1, 16, 8, 8)
    y = sc(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_forward_shapes_and_macs():
    m = create_model("resnet20")
    assert m(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert create_model("resnet20", num_classes=100)(torch.randn(1, 3, 32, 32)).shape == (1, 100)
    # ResNet-20 is ~41M multiply-adds per 32x32 image (the usual "41 MFLOPs" figure).
    assert 40e6 < count_macs(m) < 41e6


def test_he_init_and_bn_constants():
    m = create_model("resnet56")
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    w = m.layer3[0].conv1.weight  # fan_out = 64 * 9
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 0.01


def test_zero_init_residual_option():
    m = create_model("resnet20", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for b in m.modules() if isinstance(b, BasicBlock))


def test_bad_shortcut_option():
    with pytest.raises(ReslabError, match=r"model resnet20: shortcut='D' is not allowed; allowed: A, B, C$"):
        create_model("resnet20", shortcut="D")
