#!/usr/bin/env python3
"""Run Content Fabric in one process on the embedded defaults.

    python run.py                 # the default consumers, until Ctrl-C / SIGTERM
    python run.py --demo          # the demo (what `make demo` runs)
    python run.py probe ...       # only the named consumers

Global options (--home DIR, --log-level LEVEL) may come anywhere. One consumer type per
process instead: ``python -m fabric consume NAME``.
"""

from __future__ import annotations

import sys

from fabric.cli import main


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Global options first (argparse wants them before the sub-command), the rest after."""
    head, rest = [], []
    items = iter(argv)
    for item in items:
        if item in ("--home", "--log-level"):
            head += [item, next(items, "")]
        else:
            rest.append(item)
    return head, rest


if __name__ == "__main__":
    head, rest = split(sys.argv[1:])
    if "--demo" in rest:
        rest.remove("--demo")
        sys.exit(main([*head, "demo", *rest]))
    sys.exit(main([*head, "consume", *(rest or ["--all"])]))
