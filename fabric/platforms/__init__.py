"""Publisher adapters by platform name (see ``base.py`` for the seam they share).

``Platforms`` builds each adapter on first use from the process settings (``FABRIC_*``), so
the same code talks to the real APIs (the defaults) or to the fakes in
``fabric.testing`` (tests and the demo set the URLs):

=========================  ==========================================================
setting                    what
=========================  ==========================================================
FABRIC_YOUTUBE_ROOT_URL    the API's root (discovery ``rootUrl``); default Google's
FABRIC_YOUTUBE_TOKEN_URI   the OAuth token endpoint; default Google's
FABRIC_YOUTUBE_UNITS_PER_DAY / FABRIC_YOUTUBE_UPLOADS_PER_DAY   the project's daily quota
FABRIC_GRAPH_URL           Instagram Graph API host; default https://graph.instagram.com
FABRIC_GRAPH_UPLOAD_URL    rewrites the host of Instagram's resumable upload ``uri``
FABRIC_TIKTOK_API_URL      TikTok's open API host; default https://open.tiktokapis.com
FABRIC_<PLATFORM>_<FIELD>  any field of ``YouTubeConfig``, ``InstagramConfig`` or
                           ``TikTokConfig`` (e.g. FABRIC_YOUTUBE_CHUNK_MULTIPLE=1,
                           FABRIC_INSTAGRAM_POLL_INITIAL_S=0.5; durations in seconds)
=========================  ==========================================================

All adapters of a process share one ``QuotaTracker`` (``Platforms.quota``) over the state
database, whose ``quota_usage`` table the migrations create when the database starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fabric.platforms.base import Platform
from fabric.quota import YOUTUBE, QuotaTracker
from fabric.store.accounts import AccountStore

__all__ = ["KNOWN", "Platforms", "config_from_settings"]

KNOWN = ("local", "youtube", "instagram", "tiktok")

Factory = Callable[["Platforms"], Platform]
C = TypeVar("C")

# the documented short names of the endpoint settings -> (platform, config field)
ALIASES: dict[str, tuple[str, str]] = {
    "FABRIC_YOUTUBE_ROOT_URL": ("youtube", "root_url"),
    "FABRIC_YOUTUBE_TOKEN_URI": ("youtube", "token_uri"),
    "FABRIC_GRAPH_URL": ("instagram", "graph_url"),
    "FABRIC_GRAPH_UPLOAD_URL": ("instagram", "upload_url"),
    "FABRIC_TIKTOK_API_URL": ("tiktok", "api_url"),
}
_TRUE = {"1", "true", "yes", "on"}


def _coerce(annotation: str, default: Any, raw: Any) -> Any:
    """A setting's text as the config field's type (settings come from the environment)."""
    if not isinstance(raw, str):
        return raw
    if dataclasses.is_dataclass(default):
        raise ValueError("structured settings are not read from the environment")
    text = raw.strip()
    if "None" in annotation and text.lower() in ("", "none", "null"):
        return None
    if "timedelta" in annotation:
        return dt.timedelta(seconds=float(text))
    if annotation.startswith("bool") or isinstance(default, bool):
        return text.lower() in _TRUE
    if annotation.startswith("int") or (isinstance(default, int) and "float" not in annotation):
        return int(text)
    if annotation.startswith("float") or isinstance(default, float):
        return float(text)
    return text


def config_from_settings(cls: type[C], platform: str, settings: Mapping[str, Any]) -> C:
    """Build an adapter config dataclass from ``FABRIC_<PLATFORM>_<FIELD>`` settings and the
    endpoint aliases; fields not set keep their defaults (the real endpoints)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, (owner, name) in ALIASES.items():
        if owner == platform and settings.get(key) not in (None, ""):
            values[name] = settings[key]
    prefix = f"FABRIC_{platform.upper()}_"
    for key, raw in settings.items():
        if key.startswith(prefix):
            name = key[len(prefix) :].lower()
            if name in fields:
                values[name] = raw
    out: dict[str, Any] = {}
    for name, raw in values.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        try:
            out[name] = _coerce(annotation, default, raw)
        except ValueError:
            raise ValueError(
                f"setting {prefix}{name.upper()}={raw!r} is not a valid {annotation}"
            ) from None
    return cls(**out)


class Platforms:
    """Adapter instances, created on first use and shared by the publisher's handlers."""

    def __init__(
        self,
        accounts: AccountStore,
        settings: dict[str, Any],
        factories: dict[str, Factory] | None = None,
    ) -> None:
        self.accounts = accounts
        self.settings = settings
        self._factories: dict[str, Factory] = {**BUILTIN, **(factories or {})}
        self._built: dict[str, Platform] = {}
        self._quota: QuotaTracker | None = None

    def names(self) -> list[str]:
        return list(KNOWN)

    @property
    def quota(self) -> QuotaTracker:
        """The daily quota of every platform and account, shared by all adapters."""
        if self._quota is None:
            get = self.settings.get
            limits = {
                bucket: int(value)
                for bucket, value in (
                    ("units", get("FABRIC_YOUTUBE_UNITS_PER_DAY")),
                    ("uploads", get("FABRIC_YOUTUBE_UPLOADS_PER_DAY")),
                )
                if value not in (None, "")
            }
            self._quota = QuotaTracker(
                self.accounts.db, {"youtube": YOUTUBE.with_changes(limits=limits)}
            )
        return self._quota

    def register(self, name: str, factory: Factory) -> None:
        """Use ``factory`` for ``name`` (tests point adapters at their fake servers this way)."""
        self._factories[name] = factory
        self._built.pop(name, None)

    def get(self, name: str) -> Platform:
        if name not in self._built:
            factory = self._factories.get(name)
            if factory is None:
                raise KeyError(f"platform {name!r} has no adapter configured")
            self._built[name] = factory(self)
        return self._built[name]

    async def close(self) -> None:
        for adapter in self._built.values():
            await adapter.close()
        self._built.clear()


def _local(platforms: Platforms) -> Platform:
    from fabric.platforms.local import LocalPlatform

    return LocalPlatform(Path(platforms.settings["local_dir"]), platforms.accounts)


def _youtube(platforms: Platforms) -> Platform:
    from fabric.platforms.youtube import YouTubeConfig, YouTubePlatform

    config = config_from_settings(YouTubeConfig, "youtube", platforms.settings)
    return YouTubePlatform(platforms.accounts, platforms.quota, config)


def _instagram(platforms: Platforms) -> Platform:
    from fabric.platforms.instagram import InstagramConfig, InstagramPlatform

    config = config_from_settings(InstagramConfig, "instagram", platforms.settings)
    return InstagramPlatform(platforms.accounts, config)


def _tiktok(platforms: Platforms) -> Platform:
    from fabric.platforms.tiktok import TikTokConfig, TikTokPlatform

    config = config_from_settings(TikTokConfig, "tiktok", platforms.settings)
    return TikTokPlatform(platforms.accounts, config)


BUILTIN: dict[str, Factory] = {
    "local": _local,
    "youtube": _youtube,
    "instagram": _instagram,
    "tiktok": _tiktok,
}
