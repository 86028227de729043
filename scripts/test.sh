#!/usr/bin/env bash
# The README's test command (via `make test`): services up, broker up, pytest, broker down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
exec scripts/with-broker.sh .venv/bin/python -m pytest "$@"
