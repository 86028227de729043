"""TelegramSender against the fake Bot API (which parses HTML as strictly as Telegram)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from fabric.notify import NotifyError, TelegramSender, render, split_html
from fabric.notify.telegram import MAX_CHARS
from fabric.testing.fake_telegram import FakeTelegram, check_html

BOT_TOKEN = "7123456789:AAH-secret-bot-token-abcdefghijklmnop"
CHAT = -1001234567890


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(BOT_TOKEN) as fake:
        yield fake


def sender(fake: FakeTelegram, sleep: Sleeper, **kw: object) -> TelegramSender:
    return TelegramSender(BOT_TOKEN, api_url=fake.base_url, sleep=sleep, **kw)  # type: ignore[arg-type]


PUBLISHED = {
    "task_id": "t-42",
    "title": "Cats & <Dogs> > birds",
    "uploads": [
        {
            "platform": "youtube",
            "account": "main",
            "video_id": "abc",
            "url": "https://youtu.be/abc",
        },
        {
            "platform": "instagram",
            "account": "brand",
            "video_id": "1789",
            "url": "https://www.instagram.com/reel/C0de/?igsh=a&b=<c>",
        },
    ],
}


async def test_retry_after_is_honoured_and_the_message_arrives_once(telegram: FakeTelegram) -> None:
    telegram.fail_next(429, retry_after=7)
    sleep = Sleeper()
    tg = sender(telegram, sleep)
    ids = await tg.notify(CHAT, render("task_published", PUBLISHED))
    await tg.close()
    assert sleep.waits == [7.0]
    assert telegram.requests == 2
    assert len(telegram.messages) == 1
    assert ids == [telegram.messages[0]["message_id"]]
    assert telegram.messages[0]["chat"]["id"] == CHAT
    assert telegram.messages[0]["parse_mode"] == "HTML"


async def test_server_errors_back_off_then_deliver(telegram: FakeTelegram) -> None:
    telegram.fail_next(500)
    telegram.fail_next(502)
    sleep = Sleeper()
    tg = sender(telegram, sleep, backoff_s=1.5)
    await tg.send_text(CHAT, "hello")
    await tg.close()
    assert sleep.waits == [1.5, 3.0]
    assert [m["text"] for m in telegram.messages] == ["hello"]


async def test_attempts_are_bounded_and_the_error_is_retryable(telegram: FakeTelegram) -> None:
    for _ in range(5):
        telegram.fail_next(503)
    sleep = Sleeper()
    tg = sender(telegram, sleep, max_attempts=3)
    with pytest.raises(NotifyError) as err:
        await tg.send_text(CHAT, "hello")
    await tg.close()
    assert err.value.retryable is True and err.value.code == "telegram_503"
    assert telegram.requests == 3 and telegram.messages == []
    assert len(sleep.waits) == 2


async def test_a_long_retry_after_is_left_to_the_caller(telegram: FakeTelegram) -> None:
    telegram.fail_next(429, retry_after=3600)
    sleep = Sleeper()
    tg = sender(telegram, sleep, max_retry_after_s=60)
    with pytest.raises(NotifyError) as err:
        await tg.send_text(CHAT, "hello")
    await tg.close()
    assert (err.value.retryable, err.value.retry_after, err.value.status) == (True, 3600, 429)
    assert sleep.waits == [] and telegram.messages == []


async def test_html_is_escaped_and_links_survive(telegram: FakeTelegram) -> None:
    tg = sender(telegram, Sleeper())
    await tg.notify(CHAT, render("task_published", PUBLISHED))
    await tg.close()
    (message,) = telegram.messages
    assert "Cats &amp; &lt;Dogs&gt; &gt; birds" in message["html"]
    assert "Cats & <Dogs> > birds" in message["text"]  # what the reader sees
    assert (
        '<a href="https://www.instagram.com/reel/C0de/?igsh=a&amp;b=&lt;c&gt;">' in message["html"]
    )
    assert "https://youtu.be/abc" in message["text"]


async def test_unparseable_html_is_resent_as_plain_text(telegram: FakeTelegram) -> None:
    tg = sender(telegram, Sleeper())
    await tg.send(CHAT, "<b>unclosed & broken")
    await tg.close()
    (message,) = telegram.messages
    assert message["parse_mode"] is None
    assert message["text"] == "unclosed & broken"


async def test_long_text_is_split_into_valid_messages(telegram: FakeTelegram) -> None:
    line = "<b>bold</b> " + "x" * 80 + " &amp; <i>more</i>"
    text = "\n".join(f"{i}: {line}" for i in range(120))  # about 12,600 characters
    tg = sender(telegram, Sleeper())
    ids = await tg.send(CHAT, text)
    await tg.close()
    assert len(ids) == len(telegram.messages) == 4
    assert all(len(m["html"]) <= MAX_CHARS for m in telegram.messages)
    assert "\n".join(m["text"] for m in telegram.messages) == check_html(text)[1]


def test_split_closes_and_reopens_tags() -> None:
    text = "<b>" + "a" * 50 + "</b>"
    parts = split_html(text, limit=20)
    assert all(len(p) <= 20 for p in parts)
    assert all(check_html(p)[0] is None for p in parts)
    assert "".join(check_html(p)[1] for p in parts) == "a" * 50
    assert parts[1].startswith("<b>")
    cut = split_html("line\n" * 100, limit=50, max_parts=2)
    assert len(cut) == 2 and cut[-1].endswith("… (truncated)")
    assert all(len(p) <= 50 for p in cut)


async def test_permanent_errors_are_not_retried_and_hide_the_token(
    telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sleep = Sleeper()
    wrong = TelegramSender(BOT_TOKEN + "x", api_url=telegram.base_url, sleep=sleep)
    with pytest.raises(NotifyError) as unauthorized:
        await wrong.send_text(CHAT, "hello")
    await wrong.close()
    assert (unauthorized.value.retryable, unauthorized.value.code) == (False, "telegram_401")
    assert sleep.waits == []

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = TelegramSender(
        BOT_TOKEN, api_url=f"http://127.0.0.1:{port}", sleep=sleep, max_attempts=2
    )
    with pytest.raises(NotifyError) as refused:
        await down.send_text(CHAT, "hello")
    await down.close()
    assert (refused.value.retryable, refused.value.code) == (True, "connection_error")
    for error in (unauthorized.value, refused.value):
        for text in (str(error), repr(error), str(error.as_data()), caplog.text, repr(down)):
            assert BOT_TOKEN not in text
