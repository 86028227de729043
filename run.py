#!/usr/bin/env python3
"""Run Content Fabric in one process on the embedded defaults.

    python run.py            # every consumer, until Ctrl-C / SIGTERM
    python run.py --demo     # the demo (what `make demo` runs)
    python run.py probe ...  # only the named consumers

One consumer type per process instead: ``python -m fabric consume NAME``.
"""

from __future__ import annotations

import sys

from fabric.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--demo" in argv:
        argv.remove("--demo")
        sys.exit(main(["demo", *argv]))
    sys.exit(main(["consume", *(argv or ["--all"])]))
