"""The ``probloss`` command (also ``python -m probloss``).

Subcommands::

    probloss compute LOSS --y-true A --y-pred B [--from-logits] [--reduction R]
                          [--sample-weight W] [--set KEY=VALUE ...]
    probloss explain --y-true A --y-pred B      which loss fits these labels and predictions, and why
    probloss list                               every loss with a one-line description
    probloss demo                               the worked examples of the guide, checked

Arrays (``A``, ``B``, ``W``) are inline JSON (``'[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]'``, or
an object of named arrays) or a file: ``.npy`` (never unpickled), ``.npz``
(``FILE.npz:NAME`` picks one array), ``.csv`` (one sample per row; a single column is
read as a vector; ``--header auto|yes|no`` says whether the first line is a header) or
``.json`` (``FILE.json:NAME`` picks one list of a JSON object).  Integers are read as
int64 and other numbers as float64; integer predictions and weights become float64.
``--max-bytes`` (default 1 GiB) bounds the size of every array, checked before it is read.

Every subcommand has ``--help`` and ``--json`` (machine-readable output on stdout; non-finite
numbers are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``).  Exit status: 0 on
success, 1 when a check fails (a ``demo`` mismatch) or on an internal error, 2 on bad usage
or bad input of any kind, with a one-line ``probloss: error: ...`` on stderr and no traceback.

``compute`` calls the loss object once, ``loss(y_true, y_pred, sample_weight=w)``, so it
gives the same numbers and the same errors as the Python API.  The package uses only
probloss's public API; nothing here imports a deep-learning framework.

Examples
--------
>>> from probloss.cli import main
>>> main(["compute", "sparse_categorical_crossentropy",
...       "--y-true", "[1, 2]", "--y-pred", "[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]"])
sparse_categorical_crossentropy (reduction="sum_over_batch_size"): 1.17694
0
"""

from ._main import main

__all__ = ["main"]
