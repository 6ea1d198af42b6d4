"""The ``nrm`` command line (DESIGN.md §3).  One module per command in this package.

Each command module defines ``add_parser(subparsers)`` (which sets ``func``).  Errors that are
:class:`~nrm_plugins.NRMError` (and other expected failures) print one line and exit non-zero;
``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .._version import __version__

#: command modules, in the order ``nrm --help`` lists them
COMMANDS = ["demo", "info", "convert", "process", "report", "plugins"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrm",
        description="1D nanorheology microscopy (1D-NRM): read vendor force ramps with lateral lock-in "
                    "channels, compute depth-resolved storage/loss moduli, pool them by potential.",
    )
    parser.add_argument("--version", action="version", version=f"nrm-plugins {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # command not built (yet) in this version
            raise
        module.add_parser(sub, common)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    debug = getattr(args, "debug", False)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("default")
            code = args.func(args)
        return int(code or 0)
    except KeyboardInterrupt:
        print("nrm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if debug:
            raise
        from ..errors import NRMError

        kind = "error" if isinstance(exc, (NRMError, OSError)) else f"internal error ({type(exc).__name__})"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if isinstance(exc, NRMError) else " (run with --debug for the traceback)"
        print(f"nrm: {kind}: {message}{hint}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
