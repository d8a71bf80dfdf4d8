import argparse
import json
import subprocess
import sys
import urllib.request

import pytest
import yaml
import torch

from reslab.cli import COMMANDS, build_parser, main
from reslab.cli.models import matching_models
from reslab.importers.akamaster import import_akamaster
from reslab.models import create_model

from conftest import AKAMASTER, REAL_ARCHIVE, requires_real_data


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_python_dash_m_matches_console_script():
    a = subprocess.run([sys.executable, "-m", "reslab", "--help"], capture_output=True, text=True)
    assert a.returncode == 0 and "train" in a.stdout and "eval" in a.stdout
    for cmd in (["train", "--help"], ["eval", "--help"], ["data", "info", "--help"], ["import", "akamaster", "--help"]):
        r = subprocess.run([sys.executable, "-m", "reslab", *cmd], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: reslab" in r.stdout and "(default: None)" not in r.stdout, cmd
        assert cmd[0] != "train" or "(default: runs)" in r.stdout  # defaults that exist are listed


def test_models_lists_paper_counts(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "resnet56" in out and "853,018" in out and "19,421,274" in out and "0.85M" in out
    code, out, _ = run_cli(capsys, "models", "--json", "--filter", "plain2")
    rows = json.loads(out)
    assert rows == [{"name": "plain20", "parameters": 269_722, "macs_32": 40_551_040}]


def test_models_filter_matches_name_or_family(capsys):
    names = matching_models("CIFAR")  # the family, any case (building and counting 16 nets would take a minute)
    assert {"resnet20", "plain1202", "cifar_resnet50", "cifar_plain152"} <= set(names)
    assert "resnet50" not in names and "resnet18" not in names  # ImageNet-style nets are not CIFAR ones
    assert matching_models("_MS") == ["plain18_ms", "resnet18_ms"]
    code, out, _ = run_cli(capsys, "models", "--json", "--filter", "resnet8")  # a pattern name, shown by name
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["resnet8"]


def test_models_filter_matching_nothing_says_what_exists(capsys):
    code, out, err = run_cli(capsys, "models", "--filter", "vgg")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "'vgg' matches no model" in err and "families: cifar, imagenet-style" in err and "cifar_resnet50" in err


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "resnet21"], "6n+2"),
    (["train", "--set", "optim.lrr=0.1"], "did you mean optim.lr"),
    (["train", "--set", "optim.lr=-1"], "optim.lr"),
    (["train", "--data-dir", "/nonexistent/dir"], "--data-dir /nonexistent/dir does not exist"),
    (["train", "--device", "cuda:0"] if not torch.cuda.is_available() else ["train", "--device", "tpu"], "cuda"),
    (["eval", "/nonexistent/run"], "neither an existing run directory or checkpoint file"),
    (["train", "--resume", "/tmp", "--epochs", "3"], "drop --epochs"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, fake_dir, args, needle):
    if args[:2] == ["train", "--device"]:
        args = args + ["--data-dir", str(fake_dir), "--runs-dir", str(tmp_path / "runs")]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_train_then_eval_json_and_table(capsys, tmp_path, fake_dir):
    code, out, err = run_cli(capsys, "train", "--model", "resnet8", "--data-dir", str(fake_dir), "--runs-dir",
                             str(tmp_path / "runs"), "--epochs", "2", "--set", "train.batch_size=25", "--set",
                             "data.val_size=50")
    assert code == 0, err
    assert "epoch   2" in out and "finished" in out
    (run,) = (tmp_path / "runs").iterdir()  # the tests' XDG cache is in tmp_path too
    code, out, err = run_cli(capsys, "eval", str(run), "--json", "--data-dir", str(fake_dir))
    d = json.loads(out)  # the announcement goes to stderr, after the checks: one line
    assert err.startswith(f"evaluating {run}") and err.endswith(" on the 60 test images ...\n") and err.count("\n") == 1
    code, out, err = run_cli(capsys, "eval", str(run), "--data-dir", str(tmp_path / "nodata"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "nodata" in err and "evaluating" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert d["test_error"] == pytest.approx(summary["final"]["test_error"])
    assert set(d["per_class"]) == {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                   "ship", "truck"}
    assert sum(map(sum, d["confusion"])) == 60
    code, out, _ = run_cli(capsys, "eval", str(run), "--split", "val", "--weights", "best", "--data-dir",
                           str(fake_dir))
    assert code == 0 and "val error" in out and "airplane" in out
    assert (run / "eval" / "confusion-test-last.csv").read_text().startswith("true\\predicted,airplane")


def test_data_info(capsys, fake_dir):
    code, out, _ = run_cli(capsys, "data", "info", "--data-dir", str(fake_dir), "--set", "data.val_size=50")
    assert code == 0 and "train" in out and "channel mean" in out
    code, out, _ = run_cli(capsys, "data", "info", "--data-dir", str(fake_dir), "--set", "data.val_size=50", "--json")
    d = json.loads(out)
    assert d["splits"]["train"]["images"] == 250 and d["splits"]["val"]["per_class"] == [5] * 10


def _akamaster_style(model):
    """A state dict laid out as akamaster saves it: module. prefix, `linear`, no BN counters."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        sd["module." + k.replace("fc.", "linear.")] = v.clone()
    return {"state_dict": sd, "best_prec1": 91.0}


def test_akamaster_conversion_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    src_model = create_model("resnet32").eval()
    for m in src_model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(_akamaster_style(src_model), tmp_path / "r32.th")
    info = import_akamaster(tmp_path / "r32.th", tmp_path / "r32.pt")
    assert info["model"] == "resnet32" and info["parameters"] == 464_154
    from reslab.models import model_from_checkpoint
    from reslab.weights.files import load_checkpoint
    ck = load_checkpoint(tmp_path / "r32.pt")
    assert ck["normalization"]["mean"].tolist() == pytest.approx([0.485, 0.456, 0.406])
    m = model_from_checkpoint(ck).eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(m(x), src_model(x))
    with pytest.raises(Exception, match="already exists"):
        import_akamaster(tmp_path / "r32.th", tmp_path / "r32.pt")


def test_eval_refuses_foreign_checkpoint(capsys, tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "x.th")
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "x.th"))
    assert code == 2 and "reslab import akamaster" in err


PUBLISHED = {"resnet20-12fca82f.th": 8.27, "resnet32-d509ac18.th": 7.37, "resnet44-014dd654.th": 6.90,
             "resnet56-4bfd9763.th": 6.61}


@pytest.mark.realdata
@requires_real_data
@pytest.mark.skipif(not AKAMASTER.is_dir(), reason="akamaster weights not present")
@pytest.mark.parametrize("fname", sorted(PUBLISHED))
def test_akamaster_weights_reproduce_published_test_error(tmp_path, fname, real_cifar):
    from reslab.engine.eval_run import evaluate_checkpoint
    import_akamaster(AKAMASTER / fname, tmp_path / "m.pt")
    result, _, _ = evaluate_checkpoint(tmp_path / "m.pt", data=real_cifar, device="cpu")
    assert round(result.error, 2) == PUBLISHED[fname]


@pytest.fixture(scope="module")
def real_cifar():
    from reslab.data import load_cifar10
    return load_cifar10(REAL_ARCHIVE.parent)


# ---- a newcomer's first commands (issue 15) ---------------------------------------------------------------------

def test_help_does_not_import_torch():
    code = ("import sys\nfrom reslab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("no torch"), out.stdout + out.stderr


def test_a_closed_pipe_is_not_an_error():
    out = subprocess.run(f"{sys.executable} -m reslab models --json --filter resnet2 | head -c 5", shell=True,
                         capture_output=True, text=True, timeout=300)
    assert out.stdout == '[{"na' and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_a_misspelt_option_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--modle", "resnet8"])
    assert e.value.code == 2
    assert "unrecognized arguments: --modle resnet8 (did you mean --model?)" in capsys.readouterr().err


def every_help(parser):
    """(prog, --help text) of `parser` and of every subcommand below it."""
    yield parser.prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_help(sub)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_only_informative_defaults(command):
    helps = dict(every_help(build_parser([command])))  # the command configured, the others bare
    for prog, text in helps.items():
        for empty in ("(default: None)", "(default: False)", "(default: True)", "(default: [])", "(default: )"):
            assert empty not in text, f"{prog} --help says {empty}"
    # real defaults are still shown, once
    shown = {"train": ("reslab train", "(default: runs)"), "bench": ("reslab bench train", "(default: 128)"),
             "eval": ("reslab eval", "(default: test)"), "analyze": ("reslab analyze gradients", "(default: 128)")}
    if command in shown:
        prog, needle = shown[command]
        assert helps[prog].count(needle) == 1, helps[prog]


def test_data_info_without_data_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    assert main(["data", "info"]) == 2
    assert "downloading" in capsys.readouterr().err and not (tmp_path / "cache").exists()


def test_quiet_keeps_where_the_run_is_and_how_it_ended(fake_dir, tmp_path, capsys):
    assert main(["train", "--model", "resnet8", "--data-dir", str(fake_dir), "--runs-dir", str(tmp_path), "--quiet",
                 "--set", "data.val_size=50", "--set", "train.batch_size=25", "--set", "train.iterations=2",
                 "--set", "optim.milestones=[]", "--set", "log.tensorboard=false"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"run {tmp_path}") and lines[1].startswith("finished ")
    assert "final test error" in lines[1]


def test_progress_without_a_terminal_is_plain_lines(monkeypatch, capsys):
    from reslab.engine import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    bar = progress.epoch_progress(0, 10, 0, 100)
    assert isinstance(bar, progress.PlainProgress)  # pytest's captured stderr is not a terminal
    for _ in range(3):
        bar.update()
        bar.show(progress.status(2.3, 87.5, 0.1, 612.0, 4000.0))
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 3
    assert err.splitlines()[-1] == "epoch 1 step 3/10 | loss 2.300 err 88% lr 0.1 612/s run ETA 1:06:40"
    assert len(progress.status(2.3, 87.5, 0.1, 612.0, 4000.0)) < 50  # leaves an 80-column bar room


def test_set_iterations_wins_over_a_config_file_in_epochs(capsys, tmp_path, fake_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  iterations: null\n  epochs: 2\n  batch_size: 25\n  eval_every: 3\ndata:\n  val_size: 50\n"
                   "log:\n  progress: false\n")
    code, out, err = run_cli(capsys, "train", "--config", str(cfg), "--model", "resnet8", "--data-dir", str(fake_dir),
                             "--runs-dir", str(tmp_path / "runs"), "--set", "train.iterations=3", "--quiet")
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "summary.json").read_text())["iterations_done"] == 3  # not 2 epochs of 10
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (train["iterations"], train["epochs"]) == (3, None)
