#!/usr/bin/env bash
# Run a command with FABRIC_KAFKA set: the given broker, or a Tansu started (and stopped) here.
set -euo pipefail
cd "$(dirname "$0")/.."
started=""
stop_broker() {
  if [ -n "$started" ]; then .venv/bin/python -m fabric.testing.broker stop --dir .broker; fi
}
trap stop_broker EXIT
if [ -z "${FABRIC_KAFKA:-}" ]; then
  FABRIC_KAFKA=$(.venv/bin/python -m fabric.testing.broker start --dir .broker)
  export FABRIC_KAFKA
  started=1
fi
"$@"
