"""Times in events: aware UTC datetimes in code, RFC 3339 'YYYY-MM-DDTHH:MM:SS.mmmZ' on the wire."""

from __future__ import annotations

import datetime as dt

__all__ = ["parse", "sql", "wire"]


def wire(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(value: str) -> dt.datetime:
    """Parse an ISO 8601 time with an offset; a naive time is an error (never guessed)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed


def sql(value: str | None) -> str | None:
    """Wire time -> the read model's 'YYYY-MM-DD HH:MM:SS.mmm' (UTC, both SQL dialects)."""
    if value is None:
        return None
    return parse(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
