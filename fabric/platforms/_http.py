"""Small pieces the HTTP adapters (Instagram, TikTok) share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from fabric.platforms.base import ErrorClass, PlatformError

__all__ = ["PIECE", "file_pieces", "redact", "transport_error"]

PIECE = 1 << 20  # file read size while streaming an upload


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret replaced: exception texts can quote URLs with tokens."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def transport_error(exc: BaseException, *secrets: str | None) -> PlatformError:
    """A connection-level failure (reset, timeout, refused) as a transient PlatformError."""
    detail = redact(str(exc), *secrets) or "no answer"
    return PlatformError(
        ErrorClass.TRANSIENT, "connection_error", f"{type(exc).__name__}: {detail}"
    )


async def file_pieces(
    path: str, offset: int, length: int, sent: Callable[[int], Awaitable[None]] | None = None
) -> AsyncGenerator[bytes, None]:
    """Stream ``length`` bytes of ``path`` from ``offset``, reading in a worker thread (a
    128 MB chunk never sits in memory at once); ``sent`` hears about each piece."""
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(fh.seek, offset)
        left = length
        while left > 0:
            piece = await asyncio.to_thread(fh.read, min(PIECE, left))
            if not piece:
                raise OSError(f"{path} ended {left} bytes early")
            left -= len(piece)
            if left == 0:  # the HTTP client may never ask past the last piece
                await asyncio.to_thread(fh.close)
            yield piece
            if sent is not None:
                await sent(len(piece))
    finally:
        if not fh.closed:
            await asyncio.to_thread(fh.close)
