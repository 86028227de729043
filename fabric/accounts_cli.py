"""``fabric account add PLATFORM NAME``: per-platform ways to connect an account.

* ``youtube NAME --client-secrets FILE [--headless]``: the installed-app OAuth flow
  (``youtube_oauth.add_account``: loopback redirect, or print the URL and paste the
  redirected address back), then the channel is looked up and stored;
* ``instagram NAME --token TOKEN --external-id IG_USER_ID``: a long-lived user token;
* ``tiktok NAME --token TOKEN --refresh-token TOKEN --external-id OPEN_ID``, with the app's
  client key and secret from ``FABRIC_TIKTOK_CLIENT_KEY`` / ``FABRIC_TIKTOK_CLIENT_SECRET``
  (needed to refresh; never on the command line, where ``ps`` would show them);
* ``local NAME``.

Tokens can come from the environment instead of the command line (``FABRIC_TOKEN``,
``FABRIC_REFRESH_TOKEN``). Adding an account that exists needs ``--replace`` (when the
command line offers it): that is how an account that needs re-authentication is
reconnected, and the new token lifts its pause. Nothing printed here or raised from here
contains a token or a client secret: messages name the account and the missing option.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

import orjson

from fabric.store.accounts import AccountError

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["add_account"]


def _pairs(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, _, raw = item.partition("=")
        try:
            out[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[key] = raw
    return out


async def add_account(app: App, args: argparse.Namespace) -> None:
    """Connect one account as the arguments say (see the module doc)."""
    settings = _pairs(getattr(args, "set", None) or [])
    replace = bool(getattr(args, "replace", False))
    platform, name = args.platform, args.name
    if platform == "local":
        await app.accounts.add("local", name, settings=settings, replace=replace)
        return
    if platform == "youtube":
        from fabric.platforms.youtube_oauth import add_account as connect_youtube

        secrets_file = getattr(args, "client_secrets", None)
        if not secrets_file:
            raise AccountError(
                "missing_client_secrets",
                "youtube accounts need --client-secrets FILE (the OAuth client"
                " JSON from the Google Cloud console)",
            )
        root_url = app.settings.get("FABRIC_YOUTUBE_ROOT_URL") or "https://youtube.googleapis.com/"
        account = await connect_youtube(
            app.accounts,
            name,
            secrets_file,
            headless=bool(getattr(args, "headless", False)),
            root_url=root_url,
            replace=replace,
        )
        if settings:
            await app.accounts.update_settings("youtube", account.name, **settings)
        return
    if platform not in ("instagram", "tiktok"):
        raise AccountError("unknown_platform", f"no way to add {platform!r} accounts")
    token = getattr(args, "token", None) or os.environ.get("FABRIC_TOKEN")
    if not token:
        raise AccountError("missing_token", f"{platform} accounts need --token (or FABRIC_TOKEN)")
    refresh = getattr(args, "refresh_token", None) or os.environ.get("FABRIC_REFRESH_TOKEN")
    client_id = client_secret = None
    if platform == "tiktok":
        client_id = app.settings.get("FABRIC_TIKTOK_CLIENT_KEY") or None
        client_secret = app.settings.get("FABRIC_TIKTOK_CLIENT_SECRET") or None
        if not refresh or not client_id or not client_secret:
            raise AccountError(
                "missing_refresh_setup",
                "tiktok accounts need --refresh-token (or FABRIC_REFRESH_TOKEN) and the app's"
                " FABRIC_TIKTOK_CLIENT_KEY and FABRIC_TIKTOK_CLIENT_SECRET, or they cannot be"
                " refreshed",
            )
    await app.accounts.add(
        platform,
        name,
        external_id=getattr(args, "external_id", None),
        client_id=client_id,
        client_secret=client_secret,
        access_token=token,
        refresh_token=refresh,
        settings=settings,
        replace=replace,
    )
