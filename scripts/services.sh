#!/usr/bin/env bash
# Make sure the local services the tests use are running (MariaDB, Mosquitto). Best effort:
# a service that cannot be started makes its tests skip, or fail under FABRIC_REQUIRE_SERVICES=1.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 3306 && command -v mariadbd >/dev/null; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 2>/dev/null || true
  for _ in $(seq 50); do up 3306 && break; sleep 0.2; done
fi
if ! up 1883 && command -v mosquitto >/dev/null; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf 2>/dev/null || true
  for _ in $(seq 25); do up 1883 && break; sleep 0.2; done
fi
exit 0
