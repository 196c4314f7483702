"""``probloss compute``: one call of the loss object, printed.

The loss is called exactly as a Python user would call it,
``loss(y_true, y_pred, sample_weight=sw)``, so the command gives the same numbers and
the same errors as the library.
"""

from __future__ import annotations

import inspect

import numpy as np

from ._files import Limits, load_array, load_inputs
from ._losses import build_loss, parse_options
from ._output import EXIT_OK, CliError, fmt, fmt_array, print_json

NOTES = {
    "poisson": "Keras's Poisson loss leaves out the constant log(y!) of the negative log-likelihood, "
    "so its value can be negative",
    "log_poisson_loss": "log_poisson_loss leaves out the constant log(y!) of the negative log-likelihood "
    "(unless --set compute_full_loss=true), so its value can be negative",
    "gaussian_nll": "gaussian_nll leaves out the constant log(2 pi) / 2 of the negative log-likelihood "
    "(unless --set full=true), so its value can be negative",
}
"""A one-line note printed under the value of these losses."""


def compute(args) -> int:
    """Run ``probloss compute`` with the parsed ``args``."""
    options = parse_options(args.options)
    name, loss = build_loss(args.loss, from_logits=args.from_logits, reduction=args.reduction, options=options)
    y_true, y_pred, sw = load_inputs(args, weights=True)
    extra = _variance(args, name, loss)
    value = np.asarray(loss(y_true, y_pred, sample_weight=sw, **extra))
    note = NOTES.get(name)
    if name == "log_poisson_loss" and options.get("compute_full_loss") or name == "gaussian_nll" and options.get("full"):
        note = None
    if args.json:
        print_json(
            {
                "loss": name,
                "reduction": args.reduction,
                "from_logits": bool(args.from_logits),
                "options": options,
                "shape": list(value.shape),
                "value": value,
                "notes": [note] if note else [],
            }
        )
        return EXIT_OK
    if value.ndim == 0:
        print(f'{name} (reduction="{args.reduction}"): {fmt(value)}')
    else:
        print(f'{name} (reduction="{args.reduction}"), shape {tuple(value.shape)}:')
        print(fmt_array(value))
    if note:
        print(f"note: {note}")
    return EXIT_OK


def _variance(args, name: str, loss) -> dict:
    """``{"var": array}`` for a loss that takes a variance at call time (gaussian_nll), else ``{}``."""
    takes_var = "var" in inspect.signature(loss.__call__).parameters
    spec = getattr(args, "var", None)
    if spec is None:
        if takes_var:
            raise CliError(f"{name} needs the predicted variance: pass --var V (inline JSON, a file, or a number)")
        return {}
    if not takes_var:
        raise CliError(f"`--var` applies to gaussian_nll only; {name} takes no variance")
    var = load_array(spec, "--var", Limits(max_bytes=args.max_bytes, header=args.header))
    return {"var": var.astype(np.float64) if var.dtype.kind in "iu" else var}
