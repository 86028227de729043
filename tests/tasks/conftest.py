from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fabric.testing.media import make_video
from tests.tasks.harness import Harness


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", 1.0, "160x120")


@pytest.fixture
def key() -> str:
    return base64.urlsafe_b64encode(b"k" * 32).decode()


@pytest.fixture
def harness(tmp_path: Path, key: str) -> Callable[..., Harness]:
    def make(**kw: Any) -> Harness:
        return Harness(tmp_path, secret_key=key, **kw)

    return make


@pytest.fixture
async def running(harness: Callable[..., Harness]) -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h
