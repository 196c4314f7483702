"""The command line's grammar: subcommands, options and their help.

Examples
--------
>>> parse_size("2G"), parse_size("512M"), parse_size("1000")
(2147483648, 536870912, 1000)
"""

from __future__ import annotations

import argparse
import re

import probloss

from ._files import DEFAULT_MAX_BYTES, TEXT_FRACTION
from ._output import CliError

REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none")

ARRAYS_HELP = f"""\
arrays (A, B, W) are inline JSON, e.g. '[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]', or a file:
  FILE.npy         a NumPy array (never unpickled)
  FILE.npz:NAME    the array NAME of an .npz archive (NAME may be left out when the archive
                   holds one array, or an array named after the option: y_true, y_pred)
  FILE.json        a (nested) list of numbers; FILE.json:NAME picks the list NAME of a JSON
                   object, with the same rule as .npz when NAME is left out (inline JSON may
                   be such an object too)
  FILE.csv         one sample per row, comma-separated; a single column is a vector; lines
                   starting with # are skipped. --header decides what the first line is:
                   auto (default) treats a line of names as a header, a line of numbers as
                   data, and refuses a line of names and numbers mixed, or the line
                   0,1,...,k-1 that pandas writes as column names (say --header yes or no);
                   yes always skips the first line; no always reads it as data.
No array may take more than --max-bytes bytes (default {DEFAULT_MAX_BYTES >> 30} GiB), checked before
it is read; text input (JSON, CSV) may be at most 1/{TEXT_FRACTION} of that, as parsing text
takes many times the memory of the numbers.
exit status: 0 success, 1 failed check or internal error, 2 bad usage or bad input"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises :class:`CliError` (one line, exit 2) instead of exiting."""

    def error(self, message):
        raise CliError(f"{message} (see `{self.prog} --help`)")


def parse_size(text: str) -> int:
    """A byte count with an optional binary suffix: ``1000``, ``64K``, ``512M``, ``2G``, ``1T``."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", text, flags=re.IGNORECASE)
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive byte count such as 1000, 512M or 2G; got {text!r}")
    power = " kmgt".index(m.group(2).lower()) if m.group(2) else 0
    return int(m.group(1)) << (10 * power)


def build_parser(handlers: dict) -> argparse.ArgumentParser:
    """The ``probloss`` parser; ``handlers`` maps each subcommand to its function."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="probloss",
        description="Probabilistic losses from the command line: compute a loss, find out which one fits "
        "your labels and predictions, list them, or check the worked examples of the guide.",
        epilog=ARRAYS_HELP,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"probloss {probloss.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    json_parent = Parser(add_help=False)
    json_parent.add_argument("--json", action="store_true", help="write machine-readable JSON to stdout")
    data_parent = Parser(add_help=False)
    data_parent.add_argument("--y-true", required=True, metavar="A", help="labels: inline JSON or a file (see below)")
    data_parent.add_argument("--y-pred", required=True, metavar="B", help="predictions: inline JSON or a file")
    data_parent.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        default="auto",
        help="is the first line of a .csv file a header? (default: auto, see below)",
    )
    data_parent.add_argument(
        "--max-bytes",
        type=parse_size,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"largest array to load, in bytes; suffixes K, M, G, T (default: {DEFAULT_MAX_BYTES >> 30}G)",
    )

    p = sub.add_parser(
        "compute",
        parents=[data_parent, json_parent],
        help="compute a loss",
        description="Compute LOSS(y_true, y_pred) with Keras 3's semantics and print the value(s).",
        epilog="example: probloss compute sparse_categorical_crossentropy --y-true '[1, 2]' "
        "--y-pred '[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]'\n\n" + ARRAYS_HELP,
        formatter_class=formatter,
    )
    p.add_argument("loss", metavar="LOSS", help="a loss name, class name or alias (see `probloss list`)")
    p.add_argument("--from-logits", action="store_true", help="y_pred holds logits, not probabilities")
    p.add_argument(
        "--reduction",
        default="sum_over_batch_size",
        choices=REDUCTIONS,
        help="how per-sample losses are combined (default: sum_over_batch_size, the mean); none prints them all",
    )
    p.add_argument("--sample-weight", metavar="W", help="sample weights: inline JSON or a file")
    p.add_argument(
        "--var",
        metavar="V",
        help="gaussian_nll only: the predicted variances, inline JSON or a file, shaped like y_pred, one per "
        "sample (y_pred's shape without its last axis), or a single number",
    )
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another option of the loss, VALUE as JSON (e.g. --set gamma=2 --set label_smoothing=0.1)",
    )
    p.set_defaults(handler=handlers["compute"])

    p = sub.add_parser(
        "explain",
        parents=[data_parent, json_parent],
        help="which loss fits these labels and predictions, and why",
        description="Inspect the labels and the predictions, recommend a loss with its options, give the "
        "equivalent call in Keras, PyTorch, TensorFlow and Optax, the memory sparse labels save, and the "
        "loss's value.",
        epilog=ARRAYS_HELP,
        formatter_class=formatter,
    )
    p.add_argument("--from-logits", action="store_true", help="treat y_pred as logits even if its values lie in [0, 1]")
    p.set_defaults(handler=handlers["explain"])

    p = sub.add_parser("list", parents=[json_parent], help="every loss with a one-line description", description="List the losses.")
    p.set_defaults(handler=handlers["list"])

    p = sub.add_parser(
        "demo",
        parents=[json_parent],
        help="the worked examples of the guide, computed and checked",
        description="Compute the worked examples of the guide (common textbook examples of these losses) with "
        "probloss and print them next to their expected values. Exits with status 1 on any mismatch.",
    )
    p.set_defaults(handler=handlers["demo"])
    return parser
