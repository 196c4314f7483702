"""``probloss list``: every loss with a one-line description."""

from __future__ import annotations

import probloss as pl

from ._losses import TF_NN, aliases, keras_losses
from ._output import EXIT_OK, print_json


def first_line(obj) -> str:
    """The first line of ``obj``'s docstring, without reStructuredText markup."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].replace("``", "").strip() if doc else ""


def rows() -> list[dict]:
    """One dict per loss: name, class name (or None), kind (keras or tf.nn), description."""
    out = [
        {"name": name, "class": cls.__name__ if cls else None, "kind": "keras", "description": first_line(getattr(pl, name))}
        for name, cls in keras_losses().items()
    ]
    out += [{"name": n, "class": None, "kind": "tf.nn", "description": first_line(getattr(pl, n))} for n in TF_NN]
    return out


def list_losses(args) -> int:
    """Run ``probloss list``."""
    losses = rows()
    info = [{"name": f"info.{n}", "description": first_line(getattr(pl.info, n))} for n in pl.info.__all__]
    names = aliases()
    if args.json:
        print_json({"losses": losses, "aliases": names, "info": info})
        return EXIT_OK
    print("Losses (use with `probloss compute NAME` or the class name):")
    width = max(len(r["name"]) for r in losses)
    for r in losses:
        cls = f"  [{r['class']}]" if r["class"] else ""
        print(f"  {r['name']:<{width}}  {r['description']}{cls}")
    print("Aliases: " + ", ".join(f"{k} = {v}" for k, v in sorted(names.items())))
    print("\nInformation theory (probloss.info, Python API):")
    width = max(len(r["name"]) for r in info)
    for r in info:
        print(f"  {r['name']:<{width}}  {r['description']}")
    return EXIT_OK
