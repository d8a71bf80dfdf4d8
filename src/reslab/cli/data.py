"""`reslab data info`: where the data is, counts per split and class, channel statistics."""
from __future__ import annotations

import json

from reslab.cli.common import HelpFormatter, add_data_dir, check_data_dir
from reslab.config import load_config
from reslab.data import load_dataset
from reslab.data.info import data_info, format_info


def configure(p) -> None:
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("info", help="where the data is, counts per split and class, channel statistics",
                        formatter_class=HelpFormatter)
    add_data_dir(q)
    q.add_argument("--config", default=None, help="config whose split to describe (default: built-in)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the split, e.g. --set data.val_size=0 or data.dataset=cifar100")
    q.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(a) -> int:
    cfg = load_config(a.config, a.overrides)
    data_dir = a.data_dir if a.data_dir is not None else cfg.data.dir
    check_data_dir(data_dir)
    info = data_info(load_dataset(cfg.data.dataset, data_dir), cfg.data, data_dir)
    print(json.dumps(info) if a.json else format_info(info, cfg.data))
    return 0
