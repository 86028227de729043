"""Connecting a YouTube channel: the installed-app OAuth flow, then the account store.

``fabric account add youtube NAME --client-secrets FILE`` runs ``connect_browser`` (a
loopback redirect to a one-shot server on 127.0.0.1 and a random port, the flow Google
supports for desktop apps now that the out-of-band flow is gone) or, with ``--headless``,
``connect_headless``: print the authorization URL, let the user open it on any machine,
and take back the address the browser was redirected to (the page itself fails to load,
the code is in the URL). Both ask for ``access_type=offline`` and ``prompt=consent``:
without the forced consent Google sends a refresh token only the first time an app is
approved, and an account without one cannot be refreshed.

Then ``channels.list(mine=true)`` names the channel, and everything goes into the account
store (client secret and tokens AES-GCM encrypted). requests-oauthlib logs the token
response at DEBUG and the loopback server logs the redirect (with the code) at INFO; those
loggers are held above that while tokens are exchanged here, so no log carries a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from google_auth_oauthlib.flow import InstalledAppFlow
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from fabric.platforms.youtube import SCOPES, YouTubeConfig, _discovery_text, _Http, _Token
from fabric.store.accounts import Account, AccountError, AccountStore

__all__ = [
    "OAuthTokens",
    "add_account",
    "connect_browser",
    "connect_headless",
    "fetch_channel",
    "store_channel",
]

log = logging.getLogger("fabric.platforms.youtube_oauth")

HEADLESS_REDIRECT = "http://127.0.0.1:8080/"
PASTE_PROMPT = (
    "Open this address in a browser, sign in with the channel's Google account and allow "
    "access:\n\n    {url}\n\nThe browser then fails to load a page on 127.0.0.1; copy the "
    "whole address from its address bar and paste it here: "
)
# requests-oauthlib/oauthlib log token responses at DEBUG; google-auth-oauthlib's loopback
# server logs the redirect request line, authorization code included, at INFO
_TOKEN_LOGGERS = {
    "requests_oauthlib": logging.INFO,
    "oauthlib": logging.INFO,
    "google_auth_oauthlib.flow": logging.WARNING,
}


@dataclasses.dataclass(frozen=True)
class OAuthTokens:
    """What a completed consent yields. The repr hides the secrets."""

    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    access_token: str = dataclasses.field(repr=False)
    refresh_token: str | None = dataclasses.field(repr=False)
    expires_at: dt.datetime | None
    scopes: tuple[str, ...]


@contextlib.contextmanager
def _quiet_token_loggers() -> Iterator[None]:
    """Hold the loggers that would print tokens or codes above the levels that do."""
    saved = {}
    for name, floor in _TOKEN_LOGGERS.items():
        logger = logging.getLogger(name)
        saved[name] = logger.level
        if logger.getEffectiveLevel() < floor:
            logger.setLevel(floor)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _flow(client_secrets: str | Path) -> InstalledAppFlow:
    try:
        return InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=list(SCOPES))
    except (OSError, ValueError, KeyError) as exc:
        raise AccountError(
            "bad_client_secrets",
            f"cannot read the OAuth client secrets file {client_secrets}: {exc}",
        ) from None


def _tokens(flow: InstalledAppFlow) -> OAuthTokens:
    creds = flow.credentials
    config = flow.client_config
    expiry = creds.expiry.replace(tzinfo=dt.UTC) if creds.expiry else None
    return OAuthTokens(
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        access_token=creds.token,
        refresh_token=creds.refresh_token,
        expires_at=expiry,
        scopes=tuple(creds.granted_scopes or creds.scopes or ()),
    )


def _loopback_https(url: str) -> str:
    """oauthlib refuses http:// authorization responses; the loopback redirect is http by
    design, so (as google-auth-oauthlib's own local server does) present it as https."""
    parts = urlparse(url.strip())
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return urlunparse(parts._replace(scheme="https"))
    return url.strip()


async def _ask(url: str) -> str:
    """The default headless prompt: print the URL, read the pasted address from stdin."""
    print(PASTE_PROMPT.format(url=url), end="", flush=True)
    return await asyncio.to_thread(sys.stdin.readline)


def _oauth_failure(exc: Exception) -> AccountError:
    # oauthlib's messages name the error (access_denied, mismatching state...), not tokens
    return AccountError("oauth_failed", f"the authorization did not complete: {exc}")


async def connect_headless(
    client_secrets: str | Path,
    *,
    prompt: Callable[[str], Awaitable[str]] | None = None,
    redirect_uri: str = HEADLESS_REDIRECT,
) -> OAuthTokens:
    """Consent on another machine: ``prompt(auth_url)`` shows the URL and returns the
    address the browser was redirected to (default: print, then read stdin)."""
    flow = _flow(client_secrets)
    flow.redirect_uri = redirect_uri
    auth_url, _state = flow.authorization_url(access_type="offline", prompt="consent")
    pasted = await (prompt or _ask)(auth_url)
    if not pasted.strip():
        raise AccountError("oauth_failed", "no redirect address was pasted")

    def exchange() -> None:
        with _quiet_token_loggers():
            flow.fetch_token(authorization_response=_loopback_https(pasted))

    try:
        await asyncio.to_thread(exchange)
    except Exception as exc:  # oauthlib/requests raise many types; none carries a token
        raise _oauth_failure(exc) from None
    return _tokens(flow)


async def connect_browser(
    client_secrets: str | Path,
    *,
    open_browser: bool = True,
    browser: str | None = None,
    port: int = 0,
    timeout_s: float | None = 300,
) -> OAuthTokens:
    """Consent in a browser on this machine: google-auth-oauthlib's loopback server on
    127.0.0.1 (``port`` 0: a random free port) receives the redirect. ``browser`` names a
    ``webbrowser`` controller (tests register one that plays the user)."""
    flow = _flow(client_secrets)

    def run() -> None:
        with _quiet_token_loggers():
            flow.run_local_server(
                host="127.0.0.1",
                port=port,
                open_browser=open_browser,
                browser=browser,
                timeout_seconds=timeout_s,
                access_type="offline",
                prompt="consent",
            )

    try:
        await asyncio.to_thread(run)
    except Exception as exc:
        raise _oauth_failure(exc) from None
    return _tokens(flow)


async def fetch_channel(
    access_token: str, *, root_url: str = YouTubeConfig.root_url, timeout_s: float = 60.0
) -> dict[str, Any]:
    """``channels.list(part=id,snippet, mine=true)`` with a fresh token: id and title."""

    def call() -> dict[str, Any]:
        doc = json.loads(_discovery_text())
        doc["rootUrl"] = root_url
        http = _Http(_Token(access_token, None), timeout_s)
        try:
            service = build_from_document(doc, http=http)
            result: dict[str, Any] = (
                service.channels().list(part="id,snippet", mine=True).execute(num_retries=0)
            )
            return result
        finally:
            http.close()

    try:
        found = await asyncio.to_thread(call)
    except HttpError as exc:
        raise AccountError(
            "channel_lookup_failed", f"channels.list failed with HTTP {exc.resp.status}"
        ) from None
    items = found.get("items") or []
    if not items:
        raise AccountError("no_channel", "this Google account has no YouTube channel")
    return {"id": items[0]["id"], "title": (items[0].get("snippet") or {}).get("title", "")}


async def store_channel(
    store: AccountStore,
    name: str,
    tokens: OAuthTokens,
    *,
    root_url: str = YouTubeConfig.root_url,
    replace: bool = False,
) -> Account:
    """Look the channel up and store the account (secrets encrypted by the store)."""
    if not tokens.refresh_token:
        raise AccountError(
            "no_refresh_token",
            "Google returned no refresh token; remove the app's access at "
            "https://myaccount.google.com/permissions and add the account again",
        )
    channel = await fetch_channel(tokens.access_token, root_url=root_url)
    account = await store.add(
        "youtube",
        name,
        external_id=channel["id"],
        client_id=tokens.client_id,
        client_secret=tokens.client_secret,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        settings={"channel_title": channel["title"], "scopes": list(tokens.scopes)},
        replace=replace,
    )
    log.info("youtube account added", extra={"account": name, "channel_id": channel["id"]})
    return account


async def add_account(
    store: AccountStore,
    name: str,
    client_secrets: str | Path,
    *,
    headless: bool = False,
    prompt: Callable[[str], Awaitable[str]] | None = None,
    open_browser: bool = True,
    browser: str | None = None,
    port: int = 0,
    redirect_uri: str = HEADLESS_REDIRECT,
    root_url: str = YouTubeConfig.root_url,
    replace: bool = False,
) -> Account:
    """``fabric account add youtube NAME --client-secrets FILE [--headless]``."""
    if not replace and await store.get("youtube", name) is not None:
        raise AccountError("account_exists", f"youtube account {name!r} exists")
    if headless:
        tokens = await connect_headless(client_secrets, prompt=prompt, redirect_uri=redirect_uri)
    else:
        tokens = await connect_browser(
            client_secrets, open_browser=open_browser, browser=browser, port=port
        )
    return await store_channel(store, name, tokens, root_url=root_url, replace=replace)
