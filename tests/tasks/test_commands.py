"""Cancel, reschedule and retry on running consumers; durable timers across a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from consumers.scheduler import Scheduler
from fabric.tasks_api import command
from tests.tasks.harness import Harness


def later(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


async def test_cancel_a_scheduled_task_cancels_its_timer(
    harness: Callable[..., Harness], video: Path
) -> None:
    async with harness() as h:
        await h.account("main")
        task_id = await h.create(video, "main", scheduled_at=later(3600))
        await h.wait([task_id], ("scheduled",))
        outcome = await command(h.app, task_id, "task.cancel_requested", {"reason": "typo"})
        assert outcome.ok and "task.cancelled" in outcome.message
        await h.wait([task_id], ("cancelled",))
        timers = await h.app.db.fetchall("SELECT timer_id, status FROM timers")
        assert timers == [(f"{task_id}:due:1", "cancelled")]
        row = await h.row(task_id)
        assert row["status"] == "failed" and row["error"] == "cancelled: typo"
        # a second cancel is refused: the task is over
        again = await command(h.app, task_id, "task.cancel_requested", {})
        assert not again.ok and "task is cancelled" in again.message


async def test_reschedule_moves_the_due_time(harness: Callable[..., Harness], video: Path) -> None:
    async with harness() as h:
        await h.account("main")
        task_id = await h.create(video, "main", scheduled_at=later(3600))
        await h.wait([task_id], ("scheduled",))
        outcome = await command(
            h.app, task_id, "task.reschedule_requested", {"scheduled_at": later(0.5)}
        )
        assert outcome.ok, outcome.message
        assert await h.wait([task_id]) == {task_id: "completed"}
        timers = dict(await h.app.db.fetchall("SELECT timer_id, status FROM timers"))
        assert timers == {f"{task_id}:due:1": "cancelled", f"{task_id}:due:2": "fired"}
        naive = await command(
            h.app, task_id, "task.reschedule_requested", {"scheduled_at": "2031-01-01T10:00:00"}
        )
        assert not naive.ok


async def test_retry_runs_only_the_failed_platform(
    harness: Callable[..., Harness], video: Path
) -> None:
    async with harness() as h:
        await h.account("good")
        await h.account("bad", fail_permanent=True)
        task_id = await h.create(video, "good", "bad")
        assert await h.wait([task_id]) == {task_id: "failed"}
        uploads = {u["account_name"]: u for u in await h.uploads(task_id)}
        assert (uploads["good"]["status"], uploads["bad"]["status"]) == ("published", "failed")
        await h.app.accounts.update_settings("local", "bad", fail_permanent=False)
        outcome = await command(h.app, task_id, "task.retry_requested", {})
        assert outcome.ok, outcome.message
        await h.wait([task_id], ("completed",))
        uploads = {u["account_name"]: u for u in await h.uploads(task_id)}
        assert uploads["bad"]["status"] == "published" and uploads["bad"]["attempts"] == 2
        assert uploads["good"]["attempts"] == 1  # not published again
        assert len(h.published_folders("good")) == 1 and len(h.published_folders("bad")) == 1
        assert (await h.row(task_id))["retry_count"] == 1


async def test_timers_survive_a_restart_and_fire_once(
    harness: Callable[..., Harness], video: Path
) -> None:
    async with harness() as h:
        await h.account("main")
        task_id = await h.create(video, "main", scheduled_at=later(1.5))
        await h.wait([task_id], ("scheduled",))
        await h.stop()  # everything down before the timer is due
        h.start()
        assert await h.wait([task_id]) == {task_id: "completed"}
        events = await h.events(task_id)
        assert events.count("timer.fired") == 1 and events.count("publish.requested") == 0
        assert events.count("task.completed") == 1


async def test_two_schedulers_fire_a_due_timer_once(harness: Callable[..., Harness]) -> None:
    async with harness(consumers=("scheduler",)) as h:
        rt = h.app.runtime
        due = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
        # timers stored as pending (as if set earlier), then two clocks race to fire them
        await h.stop()
        for i in range(50):
            await h.app.db.execute(
                "INSERT INTO timers (timer_id, task_id, due_ms, purpose, target, payload,"
                " status) VALUES (?, ?, ?, 'due', 'null', '{}', 'pending')",
                (f"t{i}:due:1", f"t{i}", int(dt.datetime.fromisoformat(due).timestamp() * 1000)),
            )
        a, b = Scheduler(), Scheduler()
        fired = await asyncio.gather(a.fire_due(rt), b.fire_due(rt))
        assert sum(fired) >= 50 and a.fired + b.fired == 50
        rows = await h.app.db.fetchall("SELECT COUNT(*) FROM timers WHERE status='fired'")
        assert rows[0][0] == 50
        topic = rt.bus.topic("fabric.tasks")
        count = 0
        for p in await h.app.log.end_offsets(topic):
            count += sum(
                1 for r in await h.app.log.read(topic, p, 0, 1000) if b'"timer.fired"' in r.value
            )
        assert count == 50


async def test_progress_events_do_not_block_completion(
    harness: Callable[..., Harness], video: Path
) -> None:
    """publish.started/progress are published at once, outside the transaction."""
    async with harness() as h:
        await h.account("main")
        task_id = await h.create(video, "main")
        await h.wait([task_id])
        events = await h.events(task_id)
        assert events.index("publish.started") < events.index("publish.completed")
