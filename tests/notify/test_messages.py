"""The four notification kinds, rendered from plain event data."""

from __future__ import annotations

import pytest

from fabric.notify import render, scrub
from fabric.testing.fake_telegram import check_html

PUBLISHED = {
    "task_id": "t-1",
    "title": "Morning run",
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
            "video_id": "17",
            "url": "https://www.instagram.com/reel/X/",
        },
        {
            "platform": "tiktok",
            "account": "me",
            "video_id": "v_pub",
            "url": "",
            "notice": "unaudited app: posts are private (SELF_ONLY)",
        },
    ],
}

FAILED = {
    "task_id": "t-2",
    "title": "Evening run",
    "code": "privacy_level_not_allowed",
    "message": "tiktok:me: TikTok does not allow privacy level PUBLIC_TO_EVERYONE",
    "targets": [
        {
            "platform": "youtube",
            "account": "main",
            "status": "published",
            "video_id": "abc",
            "url": "https://youtu.be/abc",
        },
        {
            "platform": "tiktok",
            "account": "me",
            "status": "failed",
            "error": {
                "class": "permanent",
                "code": "privacy_level_not_allowed",
                "message": "TikTok does not allow privacy level PUBLIC_TO_EVERYONE",
            },
        },
    ],
}


def test_task_published_lists_every_platform_url() -> None:
    note = render("task_published", PUBLISHED)
    assert note.subject == "Published: Morning run"
    assert "- YouTube (main): https://youtu.be/abc" in note.text
    assert "- Instagram (brand): https://www.instagram.com/reel/X/" in note.text
    assert "- TikTok (me): id v_pub" in note.text
    assert "SELF_ONLY" in note.text
    assert note.links == ("https://youtu.be/abc", "https://www.instagram.com/reel/X/")
    assert check_html(note.html)[0] is None


def test_task_failed_has_reason_and_breakdown() -> None:
    note = render("task_failed", FAILED)
    assert note.subject == "Failed: Evening run"
    assert "PUBLIC_TO_EVERYONE" in note.text.splitlines()[0]
    assert "- YouTube (main): published https://youtu.be/abc" in note.text
    assert (
        "- TikTok (me): failed (permanent/privacy_level_not_allowed: TikTok does not" in note.text
    )
    assert check_html(note.html)[0] is None


def test_account_reauth_and_quota_deferral() -> None:
    reauth = render(
        "account_reauth",
        {
            "platform": "instagram",
            "account": "brand",
            "error": {"code": "graph_190", "message": "token expired"},
        },
    )
    assert reauth.subject == "Reconnect Instagram account brand"
    assert "graph_190: token expired" in reauth.text
    deferred = render(
        "quota_deferred",
        {
            "task_id": "t-3",
            "target": {"platform": "youtube", "account": "main"},
            "until": "2026-12-02T08:00:00.000Z",
            "error": {"class": "quota", "code": "quotaExceeded", "message": "quota exceeded"},
        },
    )
    assert deferred.subject == "Deferred until 2026-12-02 08:00 UTC: YouTube quota"
    assert "waits until 2026-12-02 08:00 UTC" in deferred.text
    for note in (reauth, deferred):
        assert check_html(note.html)[0] is None


def test_no_secret_reaches_a_message() -> None:
    leaky = {
        "platform": "tiktok",
        "account": "me",
        "reason": "GET https://x/refresh?access_token=act.SECRET123&grant=1 failed;"
        " header Bearer act.SECRET123456789abcdef; bot 7123456789:AAHsecretsecretsecret",
        "access_token": "act.SECRET123",  # extra keys are never rendered
    }
    note = render("account_reauth", leaky)
    for text in (note.text, note.html, note.subject, note.email_html()):
        assert "SECRET123" not in text
        assert "AAHsecret" not in text
    assert "access_token=***" in note.text
    assert scrub("https://youtu.be/abc") == "https://youtu.be/abc"


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        render("nope", {})
