"""``fabric account add PLATFORM NAME``: per-platform ways to connect an account."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

import orjson

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
    settings = _pairs(args.set)
    if args.platform == "local":
        await app.accounts.add("local", args.name, settings=settings)
        return
    if args.platform == "youtube":
        from fabric.platforms.youtube_oauth import connect_channel

        await connect_channel(app, args.name, args.client_secrets, headless=args.headless,
                              settings=settings)
        return
    token = args.token or os.environ.get("FABRIC_TOKEN")
    if not token:
        raise ValueError(f"{args.platform} accounts need --token (or FABRIC_TOKEN)")
    await app.accounts.add(args.platform, args.name, external_id=args.external_id,
                           access_token=token, refresh_token=args.refresh_token,
                           settings=settings)
