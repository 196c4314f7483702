"""The entry point: parse, run one subcommand, and turn every failure into an exit status."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import probloss as pl

from ._compute import compute
from ._demo import run_demo
from ._explain import run_explain
from ._listing import list_losses
from ._output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, cli_message, fail, silence_stdout, warn
from ._parser import build_parser

HANDLERS = {"compute": compute, "explain": run_explain, "list": list_losses, "demo": run_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``probloss`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser(HANDLERS)
    try:
        args = parser.parse_args(argv)
    except CliError as exc:
        return fail(exc)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the command shows every warning, as one line
        status, error = _run(args)
    for w in caught:
        warn(w.message)
    if error is not None:
        fail(error, status)
    return status


def _run(args) -> tuple[int, str | None]:
    """``(exit status, error message or None)`` of the subcommand."""
    try:
        return args.handler(args), None
    except CliError as exc:
        return EXIT_USAGE, str(exc)
    except pl.ProblossError as exc:
        return EXIT_USAGE, cli_message(exc)
    except RecursionError:
        return EXIT_USAGE, "the input is nested too deeply"
    except MemoryError:
        return EXIT_USAGE, "not enough memory for this input; lower --max-bytes to refuse such inputs early"
    except BrokenPipeError:  # e.g. `probloss list | head -1`
        silence_stdout()
        return EXIT_OK, None
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130, "interrupted"
    except Exception as exc:  # noqa: BLE001 - a bug must still not print a traceback at the user
        return EXIT_FAILED, f"internal error ({type(exc).__name__}: {cli_message(exc)}); please report it"
