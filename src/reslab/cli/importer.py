"""`reslab import akamaster FILE --out CKPT`: other projects' pretrained weights as reslab checkpoints."""
from __future__ import annotations


from reslab.cli.common import HelpFormatter
from reslab.data.cifar import find_source, resolve_data_dir
from reslab.importers.akamaster import import_akamaster


def configure(p) -> None:
    isub = p.add_subparsers(dest="import_source", required=True, metavar="SOURCE")
    q = isub.add_parser("akamaster", help="akamaster/pytorch_resnet_cifar10 .th files (resnet20/32/44/56/110/1202)",
                        formatter_class=HelpFormatter)
    q.add_argument("file", help="the .th file")
    q.add_argument("--out", required=True, help="the reslab checkpoint to write (must not exist)")


def data_dir_hint() -> str:
    """The --data-dir to suggest: where reslab finds CIFAR-10 by default, if it is there."""
    root = resolve_data_dir(None)
    return f"--data-dir {root}" if find_source(root) else "--data-dir DIR"


def run(a) -> int:
    info = import_akamaster(a.file, a.out)
    print(f"imported {a.file} -> {info['out']}: {info['model']} ({info['parameters']:,} parameters, option A); "
          f"normalisation: ImageNet mean/std recorded (as published)")
    if info.get("published_test_error") is not None:
        print(f"published test error {info['published_test_error']:.2f}% (akamaster/pytorch_resnet_cifar10's README; "
              f"reslab's weights table); check with: reslab eval {info['out']} {data_dir_hint()}")
    elif info.get("published_accuracy") is not None:
        print(f"the file records best_prec1 {info['published_accuracy']:.2f}% (its best test accuracy during "
              f"training); check with: reslab eval {info['out']} {data_dir_hint()}")
    return 0
