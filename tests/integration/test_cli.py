"""``fabric account add`` for every platform, as a user runs it (a child process): YouTube
through the headless OAuth flow against the fake Google, Instagram and TikTok with tokens
from the environment. Nothing printed contains a token or the client secret."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fabric.app import App
from fabric.config import Settings
from tests.conftest import ROOT
from tests.integration.conftest import YT_BETA, YT_CLIENT_ID, YT_CLIENT_SECRET, World


def _follow_consent(url: str) -> str:
    """Play the user in a browser: the fake consents and redirects; return where to."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        return str(exc.headers["Location"])
    raise AssertionError("the auth endpoint did not redirect")


async def _fabric(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fabric",
        *args,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_account_add_for_each_platform_without_printing_secrets(
    world: World, tmp_path: Path, key: str
) -> None:
    world.youtube.consent_channel = YT_BETA
    secrets_file = tmp_path / "client_secret.json"
    secrets_file.write_text(json.dumps(world.youtube.client_config(YT_CLIENT_ID, YT_CLIENT_SECRET)))
    env = {
        **world.env(),
        "FABRIC_HOME": str(tmp_path / "home"),
        "FABRIC_SECRET_KEY": key,
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
        "FABRIC_LOG_LEVEL": "DEBUG",
    }
    outputs: list[str] = []

    # youtube, headless: the URL is printed, the redirected address pasted back
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fabric",
        "account",
        "add",
        "youtube",
        "chan",
        "--client-secrets",
        str(secrets_file),
        "--headless",
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    seen = b""
    while world.youtube.auth_uri.encode() not in seen:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, seen.decode()
        seen += line
    url = seen.decode().split(world.youtube.auth_uri, 1)[1].split()[0]
    redirected = await asyncio.to_thread(_follow_consent, world.youtube.auth_uri + url)
    proc.stdin.write(redirected.encode() + b"\n")
    await proc.stdin.drain()
    rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    outputs.append(seen.decode() + rest.decode())
    assert proc.returncode == 0, outputs[-1]
    assert "added youtube account chan" in outputs[-1]

    token, refresh = "IGQVJ-cli-instagram-token-0123456789", "unused"
    code, out = await _fabric(
        {**env, "FABRIC_TOKEN": token},
        "account",
        "add",
        "instagram",
        "brand",
        "--external-id",
        "17841400000000042",
    )
    outputs.append(out)
    assert code == 0 and "added instagram account brand" in out
    access, refresh = "act.cli-tiktok-access-0123456789", "rft.cli-tiktok-refresh-0123456789"
    code, out = await _fabric(
        {**env, "FABRIC_TOKEN": access, "FABRIC_REFRESH_TOKEN": refresh},
        "account",
        "add",
        "tiktok",
        "me",
        "--external-id",
        "open-1",
    )
    outputs.append(out)
    assert code == 0 and "added tiktok account me" in out
    code, out = await _fabric(env, "account", "add", "tiktok", "no-refresh", "--token", "x" * 20)
    outputs.append(out)
    assert code == 2 and "--refresh-token" in out  # cannot be refreshed: refused, clearly
    code, out = await _fabric(env, "account", "list")
    outputs.append(out)
    assert code == 0 and all(n in out for n in ("chan", "brand", "me"))
    assert YT_BETA in out  # the channel found through channels.list

    settings = Settings.from_env(
        env={k: v for k, v in env.items() if k.startswith("FABRIC_")}, home=tmp_path / "home"
    )
    async with App(settings) as app:
        yt = await app.accounts.credentials("youtube", "chan")
        tt = await app.accounts.credentials("tiktok", "me")
        assert yt.refresh_token and yt.client_secret == YT_CLIENT_SECRET
        assert (tt.client_id, tt.client_secret) == (
            world.tiktok.client_key,
            world.tiktok.client_secret,
        )
        assert (tt.access_token, tt.refresh_token) == (access, refresh)
    secrets = [
        *world.youtube.issued_tokens(),
        YT_CLIENT_SECRET,
        token,
        access,
        refresh,
        world.tiktok.client_secret,
    ]
    printed = "\n".join(outputs)
    assert not [s[:10] for s in secrets if s in printed]
