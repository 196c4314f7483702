"""``probloss compute``: one call of the loss object, printed.

The loss is called exactly as a Python user would call it,
``loss(y_true, y_pred, sample_weight=sw)``, so the command gives the same numbers and
the same errors as the library.
"""

from __future__ import annotations

import numpy as np

from ._files import load_inputs
from ._losses import build_loss, parse_options
from ._output import EXIT_OK, fmt, fmt_array, print_json

NOTES = {
    "poisson": "Keras's Poisson loss leaves out the constant log(y!) of the negative log-likelihood, "
    "so its value can be negative",
    "log_poisson_loss": "log_poisson_loss leaves out the constant log(y!) of the negative log-likelihood "
    "(unless --set compute_full_loss=true), so its value can be negative",
}
"""A one-line note printed under the value of these losses."""


def compute(args) -> int:
    """Run ``probloss compute`` with the parsed ``args``."""
    options = parse_options(args.options)
    name, loss = build_loss(args.loss, from_logits=args.from_logits, reduction=args.reduction, options=options)
    y_true, y_pred, sw = load_inputs(args, weights=True)
    value = np.asarray(loss(y_true, y_pred, sample_weight=sw))
    note = NOTES.get(name)
    if name == "log_poisson_loss" and options.get("compute_full_loss"):
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
