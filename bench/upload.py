#!/usr/bin/env python3
"""Upload benchmark: YouTubePlatform (googleapiclient) against a plain aiohttp PUT loop.

    python bench/upload.py            # a table
    python bench/upload.py --json     # one JSON object

The same file (64 MiB of random bytes by default) goes to the same fake YouTube server
(``fabric.testing.fake_youtube``, started as a child process on 127.0.0.1 so client and
server do not share a GIL) in 8 MiB chunks, two ways:

* ``upload_mb_per_s``: ``YouTubePlatform.publish`` - token check, quota check and spend,
  ``videos.insert`` with a resumable ``MediaIoBaseUpload`` through the real
  googleapiclient/httplib2 in a worker thread, the intent saved to SQLite (synchronous=FULL)
  before every chunk;
* ``raw_mb_per_s``: the same protocol by hand with aiohttp: POST the session, PUT each chunk
  with ``Content-Range``, read the 308s and the final 200; nothing persisted.

``upload_ratio`` = upload / raw (goal >= 0.9). Runs alternate (raw, adapter, raw, ...) and
the median of ``--runs`` is reported. MB here is 10^6 bytes. Each upload is checked on the
fake (size and sha256 of what it stored).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.platforms.base import PublishJob  # noqa: E402
from fabric.platforms.youtube import YouTubeConfig, YouTubePlatform  # noqa: E402
from fabric.quota import QuotaTracker  # noqa: E402
from fabric.secrets import Cipher  # noqa: E402
from fabric.store.accounts import AccountStore  # noqa: E402
from fabric.store.db import SqliteDatabase  # noqa: E402
from fabric.store.intents import DbIntentStore  # noqa: E402

CLIENT_ID, CLIENT_SECRET, CHANNEL = "bench-client", "bench-secret", "UCbench00000000000000000"


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fabric.testing.fake_youtube",
            "--client",
            f"{CLIENT_ID}:{CLIENT_SECRET}",
            "--channel",
            f"{CHANNEL}:Bench",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens
    if not line.startswith("FAKE_YOUTUBE "):
        proc.kill()
        raise RuntimeError(f"fake YouTube did not start: {line!r}")
    return proc, line.split()[1]


async def tokens(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.post(
        f"{url}/_fake/tokens", json={"channel_id": CHANNEL, "client_id": CLIENT_ID}
    ) as r:
        r.raise_for_status()
        return dict(await r.json())


async def stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/_fake/stats") as r:
        return dict(await r.json())


async def raw_upload(http: aiohttp.ClientSession, url: str, path: Path, chunk: int) -> str:
    """The protocol by hand: initiate, PUT chunks, expect 308s then the video resource."""
    size = path.stat().st_size
    auth = {"Authorization": f"Bearer {(await tokens(http, url))['access_token']}"}
    async with http.post(
        f"{url}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status",
        json={
            "snippet": {"title": "raw", "categoryId": "22"},
            "status": {"privacyStatus": "private"},
        },
        headers={
            **auth,
            "X-Upload-Content-Length": str(size),
            "X-Upload-Content-Type": "video/mp4",
        },
    ) as r:
        assert r.status == 200, await r.text()
        session = r.headers["Location"]
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            data = fh.read(chunk)
            last = offset + len(data) - 1
            headers = {**auth, "Content-Range": f"bytes {offset}-{last}/{size}"}
            async with http.put(session, data=data, headers=headers) as r:
                if last + 1 < size:
                    assert r.status == 308, await r.text()
                else:
                    assert r.status == 200, await r.text()
                    return str((await r.json())["id"])
            offset = last + 1
    raise AssertionError("upload ended without a video")


async def adapter_upload(
    platform: YouTubePlatform, intents: DbIntentStore, path: Path, sha: str, n: int
) -> str:
    job = PublishJob(
        task_id=f"bench-{n}",
        platform="youtube",
        account="bench",
        video_path=str(path),
        video_sha256=sha,
        video_size=path.stat().st_size,
        title="bench",
    )

    async def progress(done: int, total: int) -> None:
        pass

    intent = await intents.load(f"bench-{n}:youtube:bench")
    result = await platform.publish(job, intent, intents, progress)
    return result.video_id


async def run(size_mb: int, chunk_mb: int, runs: int) -> dict[str, Any]:
    chunk = chunk_mb * 1024 * 1024
    proc, url = start_fake()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.mp4"
            data = os.urandom(size_mb * 1024 * 1024)
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            del data
            db = SqliteDatabase(str(Path(tmp) / "state.db"))
            await db.start()
            accounts = AccountStore(db, Cipher(os.urandom(32)))
            async with aiohttp.ClientSession() as http:
                pair = await tokens(http, url)
                await accounts.add(
                    "youtube",
                    "bench",
                    external_id=CHANNEL,
                    client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET,
                    access_token=pair["access_token"],
                    refresh_token=pair["refresh_token"],
                    expires_at=dt.datetime.fromtimestamp(pair["expires_at"], dt.UTC),
                )
                config = YouTubeConfig(
                    root_url=url + "/", token_uri=url + "/token", chunk_multiple=chunk // 262144
                )
                platform = YouTubePlatform(accounts, QuotaTracker(db), config)
                intents = DbIntentStore(db)
                raw_s: list[float] = []
                up_s: list[float] = []
                for n in range(runs):
                    t0 = time.perf_counter()
                    raw_id = await raw_upload(http, url, path, chunk)
                    raw_s.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    up_id = await adapter_upload(platform, intents, path, sha, n)
                    up_s.append(time.perf_counter() - t0)
                    videos = {v["id"]: v for v in (await stats(http, url))["videos"]}
                    for vid in (raw_id, up_id):
                        assert (
                            videos[vid]["sha256"] == sha
                            and videos[vid]["size"] == path.stat().st_size
                        )
                fake_stats = await stats(http, url)
            await db.close()
    finally:
        proc.terminate()
        proc.wait(10)
    megabytes = size_mb * 1024 * 1024 / 1e6
    upload = megabytes / statistics.median(up_s)
    raw = megabytes / statistics.median(raw_s)
    return {
        "upload_mb_per_s": round(upload, 1),
        "raw_mb_per_s": round(raw, 1),
        "upload_ratio": round(upload / raw, 3),
        "size_mib": size_mb,
        "chunk_mib": chunk_mb,
        "runs": runs,
        "upload_s": [round(s, 3) for s in up_s],
        "raw_s": [round(s, 3) for s in raw_s],
        "videos_on_fake": len(fake_stats["videos"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--size-mb", type=int, default=64, help="file size in MiB")
    ap.add_argument("--chunk-mb", type=int, default=8, help="chunk size in MiB")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    out = asyncio.run(run(args.size_mb, args.chunk_mb, args.runs))
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>18}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
