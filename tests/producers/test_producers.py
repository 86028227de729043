"""Where tasks come from: rows in `tasks` (DB poller), MQTT messages, HTTP requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from producers import http, mqtt
from producers.db_poller import poll_once
from tests.conftest import eventually, unique
from tests.tasks.harness import Harness

INSERT = (
    "INSERT INTO tasks (account_name, platform, video_path, title, description, keywords,"
    " scheduled_time, status, created_at) VALUES (?, 'local', ?, ?, '', 'a,b', ?, 'pending', ?)"
)


async def poller_rows_become_tasks_once(h: Harness, video: Path) -> None:
    await h.account("main")
    for i in range(20):
        await h.app.db.execute(
            INSERT, ("main", str(video), f"row {i}", None, f"2026-01-01 00:00:{i:02d}.000")
        )
    await h.app.db.execute(
        INSERT, ("nobody", str(video), "bad row", None, "2026-01-01 00:01:00.000")
    )
    claimed = await asyncio.gather(poll_once(h.app), poll_once(h.app))  # two pollers race
    claimed = [*claimed, await poll_once(h.app)]
    assert sum(claimed) == 21 and claimed[-1] == 0
    ids = [r[0] for r in await h.app.db.fetchall("SELECT id FROM tasks")]
    final = await h.wait(ids)
    assert sorted(final.values()) == ["completed"] * 20 + ["rejected"]
    for task_id in ids:
        assert (await h.events(task_id)).count("task.created") == 1
    rows = await h.app.db.fetchall("SELECT keywords, error_code FROM tasks WHERE title='bad row'")
    assert rows == [("a,b", "unknown_account")]
    assert len(h.published_folders("main")) == 20


async def test_db_poller_sqlite(harness: Callable[..., Harness], video: Path) -> None:
    async with harness() as h:
        await poller_rows_become_tasks_once(h, video)


@pytest.mark.mariadb
async def test_db_poller_mariadb(
    harness: Callable[..., Harness], video: Path, mysql_database: Callable[[], str]
) -> None:
    async with harness(db_url=mysql_database()) as h:
        await poller_rows_become_tasks_once(h, video)


async def test_naive_db_times_are_read_in_the_configured_zone(
    harness: Callable[..., Harness], video: Path
) -> None:
    async with harness(env={"FABRIC_DB_TIMEZONE": "Europe/Berlin"}) as h:
        await h.account("main")
        await h.stop()
        await h.app.db.execute(INSERT, ("main", str(video), "later", "2099-07-01 12:00:00", None))
        await poll_once(h.app)
        h.start()
        task_id = (await h.app.db.fetchall("SELECT id FROM tasks"))[0][0]
        await h.wait([task_id], ("scheduled",))
        row = await h.row(task_id)
        assert str(row["scheduled_time"]).startswith("2099-07-01 10:00:00")  # CEST = UTC+2


@pytest.mark.mosquitto
async def test_mqtt_messages_become_tasks_or_rejections(
    harness: Callable[..., Harness], video: Path, mosquitto: tuple[str, int]
) -> None:
    host, port = mosquitto
    topic = f"fabric-test/{unique('tasks')}"
    async with harness() as h:
        await h.account("main")
        ready, stop = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(mqtt.run(h.app, host, port, topic, ready=ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 10)
        good = {
            "task_id": unique("mqtt"),
            "targets": [{"platform": "local", "account": "main"}],
            "video": {"path": str(video)},
            "title": "from mqtt",
        }
        async with aiomqtt.Client(host, port) as client:
            await client.publish(topic, orjson.dumps(good), qos=1)
            await client.publish(topic, orjson.dumps(good), qos=1)  # a QoS 1 redelivery
            await client.publish(topic, b"{not json", qos=1)
            await client.publish(topic, orjson.dumps({"title": 5}), qos=1)

        async def three_rows() -> bool:  # the task and the two rejections
            rows = await h.app.db.fetchall("SELECT COUNT(*) FROM tasks")
            return rows[0][0] >= 3

        await eventually(three_rows, 30, "mqtt tasks in the read model")
        stop.set()
        await runner
        await h.wait([good["task_id"]])
        rows = await h.app.db.fetchall("SELECT state, error_code FROM tasks ORDER BY state")
        assert sorted(rows) == [
            ("completed", None),
            ("rejected", "invalid_json"),
            ("rejected", "invalid_task"),
        ]
        assert (await h.events(good["task_id"])).count("task.created") == 2  # second is ignored
        assert len(h.published_folders("main")) == 1


async def test_http_answers_at_once_and_publishes_only_valid_tasks(
    harness: Callable[..., Harness], video: Path
) -> None:
    async with harness() as h:
        await h.account("main")
        async with TestClient(TestServer(http.make_app(h.app))) as client:
            ok = await client.post(
                "/tasks",
                json={
                    "targets": [{"platform": "local", "account": "main"}],
                    "video": {"path": str(video)},
                    "title": "from http",
                },
            )
            assert ok.status == 201
            task_id = (await ok.json())["task_id"]
            bad = await client.post(
                "/tasks",
                json={
                    "targets": [{"platform": "local", "account": "ghost"}],
                    "video": {"path": str(video)},
                    "title": "x",
                },
            )
            assert bad.status == 422
            assert (await bad.json())["code"] == "unknown_account"
            junk = await client.post("/tasks", data=b"][")
            assert junk.status == 400
            await h.wait([task_id])
            shown = await (await client.get(f"/tasks/{task_id}")).json()
            assert (
                shown["task"]["state"] == "completed"
                and shown["uploads"][0]["status"] == "published"
            )
            status = await (await client.get("/status")).json()
            assert status["tasks_by_state"] == {"completed": 1}
            assert (await client.get("/tasks/nope")).status == 404
        rows = await h.app.db.fetchall("SELECT COUNT(*) FROM tasks")
        assert rows[0][0] == 1  # the refused ones were never published
