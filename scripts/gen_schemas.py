#!/usr/bin/env python3
"""Write the task-lifecycle event schemas (schemas/*.json). Shared shapes (target, error,
video) are inlined into each file's $defs so every schema stands alone.

Run after editing: python scripts/gen_schemas.py  (the files are the contract; this script
only keeps them consistent)."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "schemas"
D = "https://json-schema.org/draft/2020-12/schema"

TARGET = {
    "type": "object",
    "description": "where to publish: a platform and one of its accounts",
    "properties": {
        "platform": {"type": "string", "enum": ["local", "youtube", "instagram", "tiktok"]},
        "account": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "required": ["platform", "account"],
    "additionalProperties": False,
}
ERROR = {
    "type": "object",
    "description": "a classified failure: auth, quota, rate_limit, transient or permanent",
    "properties": {
        "class": {
            "type": "string",
            "enum": ["auth", "quota", "rate_limit", "transient", "permanent"],
        },
        "code": {"type": "string", "minLength": 1},
        "message": {"type": "string"},
        "retry_after_s": {"type": "number", "minimum": 0},
        "reset_at": {"type": "string"},
        "http_status": {"type": "integer"},
    },
    "required": ["class", "code", "message"],
    "additionalProperties": False,
}
VIDEO = {
    "type": "object",
    "description": "a media file by reference: never the bytes",
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "size": {"type": "integer", "minimum": 0},
        "duration_s": {"type": "number", "minimum": 0},
        "width": {"type": "integer", "minimum": 0},
        "height": {"type": "integer", "minimum": 0},
    },
    "required": ["path", "sha256", "size"],
    "additionalProperties": False,
}
TIME = {"type": "string", "format": "date-time"}
EX_TARGET = {"platform": "youtube", "account": "main"}
EX_VIDEO = {"path": "/videos/clip.mp4", "sha256": "0" * 64, "size": 1048576, "duration_s": 12.5}
EX_ERROR = {"class": "transient", "code": "backendError", "message": "Backend Error"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def schema(
    name: str,
    topic: str,
    description: str,
    props: dict,
    required: list[str],
    examples: list[dict],
    key: str = "subject",
    partition: str | None = None,
    defs: tuple[str, ...] = (),
) -> dict:
    out: dict = {
        "$schema": D,
        "$id": f"https://contentfabric.dev/schemas/{name}.json",
        "title": name,
        "description": description,
        "x-topic": topic,
        "x-key": key,
    }
    if partition:
        out["x-partition"] = partition
    out["x-schema-version"] = 1
    out.update(
        {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    )
    if defs:
        table = {"target": TARGET, "error": ERROR, "video": VIDEO}
        out["$defs"] = {d: table[d] for d in defs}
    out["examples"] = examples
    return out


TASK_SPEC = {
    "task_id": {"type": "string", "minLength": 1, "maxLength": 64},
    "targets": {"type": "array", "items": ref("target"), "minItems": 1, "maxItems": 20},
    "video": {
        "type": "object",
        "properties": {"path": {"type": "string", "minLength": 1}},
        "required": ["path"],
        "additionalProperties": False,
    },
    "title": {"type": "string", "maxLength": 5000},
    "description": {"type": "string", "maxLength": 20000},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 500}, "maxItems": 500},
    "privacy": {"type": "string", "enum": ["private", "unlisted", "public"]},
    "scheduled_at": {
        "type": ["string", "null"],
        "maxLength": 64,
        "description": "ISO 8601 with a UTC offset; naive times are rejected by the orchestrator with a clear reason",
    },
    "voice": {
        "type": ["object", "null"],
        "properties": {
            "engine": {"type": "string", "enum": ["world", "rvc", "sovits", "tts"]},
            "pitch": {"type": "number", "minimum": -24, "maximum": 24},
            "formant": {"type": "number", "minimum": -12, "maximum": 12},
            "model": {"type": ["string", "null"]},
            "f0_method": {"type": "string"},
            "separate": {"type": "boolean"},
            "continue_without_separation": {"type": "boolean"},
            "vocal_gain": {"type": "number", "minimum": 0, "maximum": 4},
            "background_gain": {"type": "number", "minimum": 0, "maximum": 4},
        },
        "additionalProperties": False,
    },
    "comment": {"type": ["string", "null"], "maxLength": 10000},
    "like": {"type": "boolean"},
    "notify": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "channel": {"type": "string", "enum": ["telegram", "email"]},
                "to": {"type": "string", "minLength": 1},
            },
            "required": ["channel", "to"],
            "additionalProperties": False,
        },
    },
    "max_retries": {"type": "integer", "minimum": 0, "maximum": 50},
    "thumbnail": {"type": ["string", "null"]},
    "playlist_id": {"type": ["string", "null"]},
    "options": {"type": "object"},
    "source_row": {
        "type": "object",
        "description": "the tasks row an outside system inserted (DB poller)",
    },
}
EX_SPEC = {
    "task_id": "0191f3c2-7d3e-7a4b-9c1d-2e3f4a5b6c7d",
    "targets": [EX_TARGET],
    "video": {"path": "/videos/clip.mp4"},
    "title": "My clip",
    "description": "",
    "tags": ["demo"],
    "privacy": "private",
    "scheduled_at": "2026-12-01T18:00:00+01:00",
    "voice": None,
    "comment": "First!",
    "like": True,
    "notify": [],
}

S = []
T = "fabric.tasks"
S.append(
    schema(
        "task.created",
        T,
        "A producer (CLI, HTTP, MQTT, DB poller) submits a task. The orchestrator validates it on ingress.",
        TASK_SPEC,
        ["task_id", "targets", "video", "title"],
        [EX_SPEC],
        defs=("target",),
    )
)
S.append(
    schema(
        "task.accepted",
        T,
        "The task passed ingress validation; the video is identified by sha256 and size.",
        {"video": ref("video"), "due_at": TIME, "max_retries": {"type": "integer", "minimum": 0}},
        ["video", "due_at", "max_retries"],
        [{"video": EX_VIDEO, "due_at": "2026-12-01T17:00:00.000Z", "max_retries": 3}],
        defs=("video",),
    )
)
S.append(
    schema(
        "task.rejected",
        T,
        "The task failed ingress validation (or a producer could not parse it). Nothing else happens to it.",
        {
            "code": {"type": "string", "minLength": 1},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "task": {"type": "object"},
        },
        ["code", "message"],
        [
            {
                "code": "unknown_account",
                "message": "no youtube account named 'nope'",
                "field": "targets[0].account",
            }
        ],
    )
)
S.append(
    schema(
        "task.scheduled",
        T,
        "The task waits for its due time (a durable timer), or, without timer_id, was due"
        " when it was accepted: it starts at once, with no timer.",
        {"due_at": TIME, "timer_id": {"type": "string"}},
        ["due_at"],
        [
            {"due_at": "2026-12-01T17:00:00.000Z", "timer_id": "t1:due:1"},
            {"due_at": "2026-11-29T10:00:00.000Z"},
        ],
    )
)
S.append(
    schema(
        "task.rescheduled",
        T,
        "A scheduled task got a new due time.",
        {"due_at": TIME, "timer_id": {"type": "string"}, "previous_due_at": TIME},
        ["due_at", "timer_id"],
        [
            {
                "due_at": "2026-12-02T17:00:00.000Z",
                "timer_id": "t1:due:2",
                "previous_due_at": "2026-12-01T17:00:00.000Z",
            }
        ],
    )
)
S.append(
    schema(
        "task.started",
        T,
        "Targets enter a stage: processing (step voice: the voice pipeline; step media: per-platform preparation) or publishing.",
        {
            "stage": {"type": "string", "enum": ["processing", "publishing"]},
            "step": {"type": "string", "enum": ["voice", "media"]},
            "targets": {"type": "array", "items": ref("target")},
        },
        ["stage"],
        [
            {"stage": "publishing", "targets": [EX_TARGET]},
            {"stage": "processing", "step": "media", "targets": [EX_TARGET]},
        ],
        defs=("target",),
    )
)
S.append(
    schema(
        "task.retry_scheduled",
        T,
        "A retryable publish failure: the target is retried after a backoff (durable timer).",
        {
            "target": ref("target"),
            "retry_count": {"type": "integer", "minimum": 1},
            "due_at": TIME,
            "timer_id": {"type": "string"},
            "error": ref("error"),
        },
        ["target", "retry_count", "due_at", "timer_id", "error"],
        [
            {
                "target": EX_TARGET,
                "retry_count": 1,
                "due_at": "2026-12-01T17:00:30.000Z",
                "timer_id": "t1:retry:1",
                "error": EX_ERROR,
            }
        ],
        defs=("target", "error"),
    )
)
S.append(
    schema(
        "task.deferred",
        T,
        "A target is out of quota: it waits until the platform's reset time (durable timer), nothing is burnt meanwhile.",
        {
            "target": ref("target"),
            "until": TIME,
            "timer_id": {"type": "string"},
            "error": ref("error"),
        },
        ["target", "until", "timer_id", "error"],
        [
            {
                "target": EX_TARGET,
                "until": "2026-12-02T08:00:00.000Z",
                "timer_id": "t1:deferred:1",
                "error": {"class": "quota", "code": "quotaExceeded", "message": "quota exceeded"},
            }
        ],
        defs=("target", "error"),
    )
)
UP = {
    "type": "object",
    "properties": {
        "platform": {"type": "string"},
        "account": {"type": "string"},
        "video_id": {"type": "string"},
        "url": {"type": "string"},
    },
    "required": ["platform", "account", "video_id", "url"],
    "additionalProperties": False,
}
S.append(
    schema(
        "task.completed",
        T,
        "Every target published (interactions done or given up).",
        {"uploads": {"type": "array", "items": UP}},
        ["uploads"],
        [
            {
                "uploads": [
                    {
                        "platform": "youtube",
                        "account": "main",
                        "video_id": "abc123",
                        "url": "https://youtu.be/abc123",
                    }
                ]
            }
        ],
    )
)
BREAK = {
    "type": "object",
    "properties": {
        "platform": {"type": "string"},
        "account": {"type": "string"},
        "status": {"type": "string"},
        "video_id": {"type": ["string", "null"]},
        "url": {"type": ["string", "null"]},
        "error": {"type": ["object", "null"]},
    },
    "required": ["platform", "account", "status"],
    "additionalProperties": False,
}
S.append(
    schema(
        "task.failed",
        T,
        "The task ended without publishing everywhere; a per-target breakdown says what happened where.",
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "targets": {"type": "array", "items": BREAK},
        },
        ["code", "message", "targets"],
        [
            {
                "code": "invalidTitle",
                "message": "youtube:main: The request metadata specifies an invalid video title.",
                "targets": [
                    {
                        "platform": "youtube",
                        "account": "main",
                        "status": "failed",
                        "error": EX_ERROR,
                    }
                ],
            }
        ],
    )
)
S.append(
    schema(
        "task.cancel_requested",
        T,
        "An operator asks to cancel a task (allowed until publishing starts).",
        {"reason": {"type": "string"}},
        [],
        [{"reason": "wrong video"}],
    )
)
S.append(
    schema(
        "task.cancelled",
        T,
        "The task was cancelled; its timers are cancelled too.",
        {"reason": {"type": "string"}},
        [],
        [{"reason": "wrong video"}],
    )
)
S.append(
    schema(
        "task.reschedule_requested",
        T,
        "An operator asks for a new due time for a scheduled task.",
        {"scheduled_at": {"type": "string"}},
        ["scheduled_at"],
        [{"scheduled_at": "2026-12-02T18:00:00+01:00"}],
    )
)
S.append(
    schema(
        "task.retry_requested",
        T,
        "An operator asks to retry a failed task: only its failed targets run again.",
        {},
        [],
        [{}],
    )
)
S.append(
    schema(
        "task.retried",
        T,
        "A failed task runs again for the targets that failed.",
        {"targets": {"type": "array", "items": ref("target"), "minItems": 1}},
        ["targets"],
        [{"targets": [EX_TARGET]}],
        defs=("target",),
    )
)
S.append(
    schema(
        "task.command_rejected",
        T,
        "A command (cancel, reschedule, retry) does not apply to the task's state: refused, nothing changed.",
        {"command": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
        ["command", "code", "message"],
        [
            {
                "command": "task.cancel_requested",
                "code": "illegal_transition",
                "message": "task is completed",
            }
        ],
    )
)

P = "fabric.publish"
PUB_REQ = {
    "target": ref("target"),
    "account_key": {"type": "string"},
    "attempt": {"type": "integer", "minimum": 1},
    "video": ref("video"),
    "title": {"type": "string"},
    "description": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "privacy": {"type": "string"},
    "thumbnail": {"type": ["string", "null"]},
    "playlist_id": {"type": ["string", "null"]},
    "options": {"type": "object"},
}
S.append(
    schema(
        "publish.requested",
        P,
        "Upload the task's video to one target. Keyed by account: one account's uploads, quota and token are handled by one consumer at a time.",
        PUB_REQ,
        ["target", "account_key", "attempt", "video", "title"],
        [
            {
                "target": EX_TARGET,
                "account_key": "youtube:main",
                "attempt": 1,
                "video": EX_VIDEO,
                "title": "My clip",
                "description": "",
                "tags": [],
                "privacy": "private",
                "options": {},
            }
        ],
        key="data.account_key",
        defs=("target", "video"),
    )
)
S.append(
    schema(
        "interaction.requested",
        P,
        "Post a comment or a like on a published video.",
        {
            "target": ref("target"),
            "account_key": {"type": "string"},
            "interaction_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["comment", "like"]},
            "video_id": {"type": "string"},
            "content": {"type": "string"},
        },
        ["target", "account_key", "interaction_id", "kind", "video_id"],
        [
            {
                "target": EX_TARGET,
                "account_key": "youtube:main",
                "interaction_id": "i1",
                "kind": "comment",
                "video_id": "abc123",
                "content": "First!",
            }
        ],
        key="data.account_key",
        defs=("target",),
    )
)
S.append(
    schema(
        "publish.started",
        T,
        "The publisher began (or resumed) an upload.",
        {
            "target": ref("target"),
            "attempt": {"type": "integer", "minimum": 1},
            "resuming": {"type": "boolean"},
        },
        ["target", "attempt"],
        [{"target": EX_TARGET, "attempt": 1, "resuming": False}],
        defs=("target",),
    )
)
S.append(
    schema(
        "publish.progress",
        T,
        "Upload progress (informational, not transactional).",
        {
            "target": ref("target"),
            "attempt": {"type": "integer"},
            "bytes_done": {"type": "integer", "minimum": 0},
            "bytes_total": {"type": "integer", "minimum": 0},
        },
        ["target", "bytes_done", "bytes_total"],
        [{"target": EX_TARGET, "attempt": 1, "bytes_done": 262144, "bytes_total": 1048576}],
        defs=("target",),
    )
)
S.append(
    schema(
        "publish.completed",
        T,
        "The video is published on the target.",
        {
            "target": ref("target"),
            "attempt": {"type": "integer", "minimum": 1},
            "video_id": {"type": "string", "minLength": 1},
            "url": {"type": "string"},
            "upload_id": {"type": ["string", "null"]},
            "resumed": {"type": "boolean"},
            "recovered": {"type": "boolean"},
            "bytes_sent": {"type": "integer", "minimum": 0},
            "details": {"type": "object"},
        },
        ["target", "attempt", "video_id", "url"],
        [
            {
                "target": EX_TARGET,
                "attempt": 1,
                "video_id": "abc123",
                "url": "https://youtu.be/abc123",
                "upload_id": None,
                "resumed": False,
                "recovered": False,
                "bytes_sent": 1048576,
            }
        ],
        defs=("target",),
    )
)
S.append(
    schema(
        "publish.failed",
        T,
        "An upload attempt failed. The orchestrator retries retryable errors with backoff, up to the task's limit.",
        {
            "target": ref("target"),
            "attempt": {"type": "integer", "minimum": 1},
            "error": ref("error"),
            "retryable": {"type": "boolean"},
        },
        ["target", "attempt", "error", "retryable"],
        [{"target": EX_TARGET, "attempt": 1, "error": EX_ERROR, "retryable": True}],
        defs=("target", "error"),
    )
)
S.append(
    schema(
        "publish.deferred",
        T,
        "The target's quota is used up: wait until the reset instead of failing.",
        {
            "target": ref("target"),
            "attempt": {"type": "integer", "minimum": 1},
            "until": TIME,
            "error": ref("error"),
        },
        ["target", "attempt", "until", "error"],
        [
            {
                "target": EX_TARGET,
                "attempt": 1,
                "until": "2026-12-02T08:00:00.000Z",
                "error": {"class": "quota", "code": "quotaExceeded", "message": "quota exceeded"},
            }
        ],
        defs=("target", "error"),
    )
)
S.append(
    schema(
        "interaction.posted",
        T,
        "A comment or like was posted (or found already posted).",
        {
            "target": ref("target"),
            "interaction_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["comment", "like"]},
            "video_id": {"type": "string"},
            "external_id": {"type": ["string", "null"]},
            "content": {"type": "string"},
            "recovered": {"type": "boolean"},
        },
        ["target", "interaction_id", "kind", "video_id"],
        [
            {
                "target": EX_TARGET,
                "interaction_id": "i1",
                "kind": "comment",
                "video_id": "abc123",
                "external_id": "c1",
                "content": "First!",
            }
        ],
        defs=("target",),
    )
)
S.append(
    schema(
        "interaction.failed",
        T,
        "A comment or like could not be posted (the video stays published).",
        {
            "target": ref("target"),
            "interaction_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["comment", "like"]},
            "video_id": {"type": "string"},
            "error": ref("error"),
            "content": {"type": "string"},
        },
        ["target", "interaction_id", "kind", "video_id", "error"],
        [
            {
                "target": EX_TARGET,
                "interaction_id": "i1",
                "kind": "like",
                "video_id": "abc123",
                "error": EX_ERROR,
            }
        ],
        defs=("target", "error"),
    )
)

TM = "fabric.timers"
S.append(
    schema(
        "timer.set",
        TM,
        "A durable timer: the scheduler fires it once, at or after due_at, even across restarts.",
        {
            "timer_id": {"type": "string", "minLength": 1},
            "due_at": TIME,
            "purpose": {"type": "string", "enum": ["due", "retry", "deferred", "metadata"]},
            "target": {"type": ["object", "null"]},
            "payload": {"type": "object"},
        },
        ["timer_id", "due_at", "purpose"],
        [
            {
                "timer_id": "t1:due:1",
                "due_at": "2026-12-01T17:00:00.000Z",
                "purpose": "due",
                "target": None,
            }
        ],
    )
)
S.append(
    schema(
        "timer.cancelled",
        TM,
        "A timer that must not fire any more (its task was cancelled or rescheduled).",
        {"timer_id": {"type": "string", "minLength": 1}},
        ["timer_id"],
        [{"timer_id": "t1:due:1"}],
    )
)
S.append(
    schema(
        "timer.fired",
        T,
        "The scheduler fired a timer (exactly once per timer).",
        {
            "timer_id": {"type": "string"},
            "purpose": {"type": "string"},
            "due_at": TIME,
            "fired_at": TIME,
            "target": {"type": ["object", "null"]},
            "payload": {"type": "object"},
        },
        ["timer_id", "purpose", "due_at", "fired_at"],
        [
            {
                "timer_id": "t1:due:1",
                "purpose": "due",
                "due_at": "2026-12-01T17:00:00.000Z",
                "fired_at": "2026-12-01T17:00:00.012Z",
                "target": None,
            }
        ],
    )
)

# -- voice (issue 5): fabric.voice -> fabric.chunks -> fabric.chunk-results -> fabric.tasks
AUDIO = {
    "type": "object",
    "description": "an audio file by reference",
    "properties": {
        "path": {"type": "string"},
        "sha256": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "sample_rate": {"type": "integer", "minimum": 1},
        "channels": {"type": "integer", "minimum": 1},
        "samples": {"type": "integer", "minimum": 0},
        "duration_s": {"type": "number", "minimum": 0},
    },
    "required": ["path", "sample_rate", "channels", "samples"],
    "additionalProperties": False,
}
VOICE_OPTS = TASK_SPEC["voice"]
S.append(
    schema(
        "voice.requested",
        "fabric.voice",
        "Change the voice of the task's video: the splitter extracts, separates and splits the audio.",
        {
            "video": ref("video"),
            "voice": {k: v for k, v in VOICE_OPTS.items() if k != "type"} | {"type": "object"},
        },
        ["video", "voice"],
        [{"video": EX_VIDEO, "voice": {"engine": "world", "pitch": 3}}],
        defs=("video",),
    )
)
SEPARATION = {
    "type": "object",
    "properties": {
        "ran": {"type": "boolean"},
        "model": {"type": ["string", "null"]},
        "note": {"type": "string"},
    },
    "required": ["ran"],
    "additionalProperties": False,
}
S.append(
    schema(
        "voice.planned",
        "fabric.chunk-results",
        "The splitter's plan: how many chunks the aggregator waits for, and the files it reassembles with.",
        {
            "chunks": {"type": "integer", "minimum": 1},
            "audio": AUDIO,
            "background": {"oneOf": [AUDIO, {"type": "null"}]},
            "separation": SEPARATION,
            "engine": {"type": "string"},
            "work_dir": {"type": "string"},
            "video": ref("video"),
            "voice": {"type": "object"},
            "requested_at": {
                **TIME,
                "description": "when voice.requested was made: where wall_seconds starts",
            },
            "spans": {
                "type": "array",
                "description": "each chunk's kept range [start, end) and context range [ctx_start, ctx_end), in samples: what the aggregator joins with",
                "items": {
                    "type": "object",
                    "properties": {
                        k: {"type": "integer", "minimum": 0}
                        for k in ("index", "start", "end", "ctx_start", "ctx_end")
                    },
                    "required": ["index", "start", "end", "ctx_start", "ctx_end"],
                    "additionalProperties": False,
                },
            },
        },
        ["chunks", "audio", "separation", "engine", "work_dir", "video", "voice"],
        [
            {
                "chunks": 2,
                "audio": {
                    "path": "/w/t1/audio.wav",
                    "sample_rate": 44100,
                    "channels": 2,
                    "samples": 15876000,
                },
                "background": None,
                "separation": {"ran": False, "note": "not asked for"},
                "engine": "world",
                "work_dir": "/w/t1",
                "video": EX_VIDEO,
                "voice": {"engine": "world", "pitch": 3},
                "requested_at": "2026-12-01T17:00:00.000Z",
                "spans": [
                    {"index": 0, "start": 0, "end": 7938000, "ctx_start": 0, "ctx_end": 7982100},
                    {
                        "index": 1,
                        "start": 7938000,
                        "end": 15876000,
                        "ctx_start": 7893900,
                        "ctx_end": 15876000,
                    },
                ],
            }
        ],
        defs=("video",),
    )
)
CHUNK = {
    "task_id": {"type": "string"},
    "chunk_id": {"type": "string"},
    "index": {"type": "integer", "minimum": 0},
    "count": {"type": "integer", "minimum": 1},
    "path": {"type": "string"},
    "sha256": {"type": "string"},
    "size": {"type": "integer", "minimum": 0},
}
S.append(
    schema(
        "chunk.ready",
        "fabric.chunks",
        "One chunk of audio (with context on both sides) to convert. Keyed by chunk; the index picks the partition so consecutive chunks go to different workers.",
        {
            **CHUNK,
            "start": {"type": "integer", "minimum": 0},
            "end": {"type": "integer", "minimum": 0},
            "ctx_start": {"type": "integer", "minimum": 0},
            "ctx_end": {"type": "integer", "minimum": 0},
            "sample_rate": {"type": "integer"},
            "channels": {"type": "integer"},
            "engine": {"type": "string"},
            "options": {"type": "object"},
        },
        [
            "task_id",
            "chunk_id",
            "index",
            "count",
            "path",
            "sha256",
            "start",
            "end",
            "ctx_start",
            "ctx_end",
            "sample_rate",
            "channels",
            "engine",
            "options",
        ],
        [
            {
                "task_id": "t1",
                "chunk_id": "t1:0",
                "index": 0,
                "count": 2,
                "path": "/w/t1/chunk-0000.wav",
                "sha256": "0" * 64,
                "size": 100,
                "start": 0,
                "end": 13230000,
                "ctx_start": 0,
                "ctx_end": 13274100,
                "sample_rate": 44100,
                "channels": 2,
                "engine": "world",
                "options": {"pitch": 3},
            }
        ],
        key="data.chunk_id",
        partition="data.index",
    )
)
S.append(
    schema(
        "chunk.converted",
        "fabric.chunk-results",
        "A voice worker converted one chunk.",
        {
            **CHUNK,
            "engine_seconds": {"type": "number", "minimum": 0},
            "worker": {"type": "string"},
            "background": {
                "type": ["string", "null"],
                "description": "the chunk's background stem when the worker separated it",
            },
            "separation_seconds": {"type": "number", "minimum": 0},
        },
        ["task_id", "chunk_id", "index", "count", "path", "sha256", "engine_seconds"],
        [
            {
                "task_id": "t1",
                "chunk_id": "t1:0",
                "index": 0,
                "count": 2,
                "path": "/w/t1/out-0000.wav",
                "sha256": "0" * 64,
                "size": 100,
                "engine_seconds": 12.5,
                "worker": "host-123",
            }
        ],
    )
)
S.append(
    schema(
        "chunk.failed",
        "fabric.chunk-results",
        "A chunk could not be converted (bad audio, engine error after retries).",
        {
            "task_id": {"type": "string"},
            "chunk_id": {"type": "string"},
            "index": {"type": "integer"},
            "count": {"type": "integer"},
            "code": {"type": "string"},
            "message": {"type": "string"},
        },
        ["task_id", "chunk_id", "index", "count", "code", "message"],
        [
            {
                "task_id": "t1",
                "chunk_id": "t1:1",
                "index": 1,
                "count": 2,
                "code": "engine_error",
                "message": "pyworld failed",
            }
        ],
    )
)
S.append(
    schema(
        "voice.progress",
        T,
        "Chunks converted so far (for progress bars).",
        {"done": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 1}},
        ["done", "total"],
        [{"done": 1, "total": 2}],
    )
)
S.append(
    schema(
        "voice.assembled",
        T,
        "The converted audio is joined, remixed and muxed: the task goes on with this video.",
        {
            "video": ref("video"),
            "engine": {"type": "string"},
            "chunks": {"type": "integer", "minimum": 1},
            "audio_seconds": {"type": "number", "minimum": 0},
            "engine_seconds": {"type": "number", "minimum": 0},
            "wall_seconds": {"type": "number", "minimum": 0},
            "separation": SEPARATION,
        },
        [
            "video",
            "engine",
            "chunks",
            "audio_seconds",
            "engine_seconds",
            "wall_seconds",
            "separation",
        ],
        [
            {
                "video": EX_VIDEO,
                "engine": "world",
                "chunks": 2,
                "audio_seconds": 360.0,
                "engine_seconds": 30.1,
                "wall_seconds": 17.2,
                "separation": {"ran": False, "note": "not asked for"},
            }
        ],
        defs=("video",),
    )
)
S.append(
    schema(
        "voice.failed",
        T,
        "The voice step cannot be done (no audio stream, corrupt audio, missing model...): the task fails with the reason.",
        {"code": {"type": "string"}, "message": {"type": "string"}},
        ["code", "message"],
        [{"code": "no_audio_stream", "message": "/videos/clip.mp4 has no audio stream"}],
    )
)

# -- media preparation (issue 8): fabric.media -> fabric.tasks
S.append(
    schema(
        "media.requested",
        "fabric.media",
        "Prepare the video for each target platform (profiles, checks, loudness, thumbnails) before any upload.",
        {
            "video": ref("video"),
            "targets": {"type": "array", "items": ref("target"), "minItems": 1},
            "thumbnail": {"type": ["string", "null"]},
        },
        ["video", "targets"],
        [{"video": EX_VIDEO, "targets": [EX_TARGET], "thumbnail": None}],
        defs=("target", "video"),
    )
)
S.append(
    schema(
        "media.prepared",
        T,
        "The video as it will be uploaded to one target, and what was done to it (and why).",
        {
            "target": ref("target"),
            "video": ref("video"),
            "profile": {"type": ["string", "null"]},
            "decision": {"type": "object"},
            "short": {"type": "boolean"},
            "thumbnail": {"type": ["object", "null"]},
        },
        ["target", "video", "decision", "short"],
        [
            {
                "target": EX_TARGET,
                "video": EX_VIDEO,
                "profile": "youtube",
                "short": False,
                "thumbnail": None,
                "decision": {"mode": "passthrough", "reason": "fits the youtube profile"},
            }
        ],
        defs=("target", "video"),
    )
)
S.append(
    schema(
        "media.rejected",
        T,
        "The video cannot be made to fit the target (too long, no video stream, corrupt): no upload is attempted and no quota spent.",
        {"target": ref("target"), "error": ref("error"), "limit": {}, "measured": {}},
        ["target", "error"],
        [
            {
                "target": {"platform": "instagram", "account": "brand"},
                "limit": 900,
                "measured": 1203.4,
                "error": {
                    "class": "permanent",
                    "code": "too_long",
                    "message": "Instagram Reels allow at most 900 s; this video is 1203.4 s",
                },
            }
        ],
        defs=("target", "error"),
    )
)

# -- scheduled metadata updates (issue 8): a change to an already-published video
CHANGES = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 5000},
        "description": {"type": "string", "maxLength": 20000},
        "tags": {"type": "array", "items": {"type": "string"}},
        "privacy": {"type": "string", "enum": ["private", "unlisted", "public"]},
        "thumbnail": {"type": "string", "description": "path of a new thumbnail image"},
    },
    "additionalProperties": False,
}
EX_CHANGES = {"privacy": "public"}
S.append(
    schema(
        "metadata.update_requested",
        T,
        "An operator asks to change published videos of a task, now or at a time (e.g. unlisted -> public at 18:00).",
        {
            "targets": {"type": "array", "items": ref("target")},
            "changes": CHANGES,
            "at": {"type": ["string", "null"]},
        },
        ["changes"],
        [{"changes": EX_CHANGES, "at": "2026-12-01T18:00:00+01:00"}],
        defs=("target",),
    )
)
S.append(
    schema(
        "metadata.scheduled",
        T,
        "A metadata change is planned: applied now, or when its timer fires.",
        {
            "update_id": {"type": "string"},
            "targets": {"type": "array", "items": ref("target"), "minItems": 1},
            "changes": CHANGES,
            "due_at": TIME,
            "timer_id": {"type": "string"},
        },
        ["update_id", "targets", "changes", "due_at"],
        [
            {
                "update_id": "t1:meta:1",
                "targets": [EX_TARGET],
                "changes": EX_CHANGES,
                "due_at": "2026-12-01T17:00:00.000Z",
                "timer_id": "t1:metadata:1",
            }
        ],
        defs=("target",),
    )
)
S.append(
    schema(
        "metadata.update",
        "fabric.publish",
        "Apply a metadata change to one published video (videos.update / thumbnails.set), with quota accounting.",
        {
            "update_id": {"type": "string"},
            "target": ref("target"),
            "account_key": {"type": "string"},
            "video_id": {"type": "string"},
            "changes": CHANGES,
            "attempt": {"type": "integer", "minimum": 1},
        },
        ["update_id", "target", "account_key", "video_id", "changes", "attempt"],
        [
            {
                "update_id": "t1:meta:1",
                "target": EX_TARGET,
                "account_key": "youtube:main",
                "video_id": "abc123",
                "changes": EX_CHANGES,
                "attempt": 1,
            }
        ],
        key="data.account_key",
        defs=("target",),
    )
)
S.append(
    schema(
        "metadata.updated",
        T,
        "A published video's metadata was changed.",
        {
            "update_id": {"type": "string"},
            "target": ref("target"),
            "video_id": {"type": "string"},
            "changes": CHANGES,
            "details": {
                "type": "object",
                "description": "what the platform reports (privacy, a notice)",
            },
        },
        ["update_id", "target", "video_id", "changes"],
        [
            {
                "update_id": "t1:meta:1",
                "target": EX_TARGET,
                "video_id": "abc123",
                "changes": EX_CHANGES,
            }
        ],
        defs=("target",),
    )
)
S.append(
    schema(
        "metadata.failed",
        T,
        "A metadata change failed; quota errors are retried at the reset, others are final.",
        {
            "update_id": {"type": "string"},
            "target": ref("target"),
            "video_id": {"type": "string"},
            "error": ref("error"),
            "retryable": {"type": "boolean"},
            "attempt": {"type": "integer", "minimum": 1},
        },
        ["update_id", "target", "video_id", "error", "retryable", "attempt"],
        [
            {
                "update_id": "t1:meta:1",
                "target": EX_TARGET,
                "video_id": "abc123",
                "retryable": False,
                "attempt": 1,
                "error": {"class": "permanent", "code": "invalidTitle", "message": "bad title"},
            }
        ],
        defs=("target", "error"),
    )
)

# -- accounts (issues 6, 7): fabric.accounts, keyed by account. Never a token: the account
# store keeps them encrypted; events name the account.
AC = "fabric.accounts"
ACCOUNT = {
    "platform": {"type": "string", "enum": ["local", "youtube", "instagram", "tiktok"]},
    "account": {"type": "string", "minLength": 1, "maxLength": 255},
    "account_key": {
        "type": "string",
        "minLength": 3,
        "description": "platform:account, the partition key",
    },
}
EX_ACCOUNT = {"platform": "youtube", "account": "main", "account_key": "youtube:main"}
S.append(
    schema(
        "account.token_refreshed",
        AC,
        "The token refresher renewed an account's access token ahead of its expiry (the new"
        " token is in the account store, never here).",
        {
            **ACCOUNT,
            "expires_at": {
                "type": ["string", "null"],
                "description": "when the new access token expires, if known",
            },
        },
        ["platform", "account", "account_key", "expires_at"],
        [{**EX_ACCOUNT, "expires_at": "2026-12-01T18:00:00+00:00"}],
        key="data.account_key",
    )
)
S.append(
    schema(
        "account.reauth_required",
        AC,
        "The platform refused the account's token for good (revoked or expired refresh token,"
        " invalid_grant, Graph code 190...): the owner must reconnect it. Its uploads are paused"
        " (deferred) until then; other accounts keep going.",
        {
            **ACCOUNT,
            "code": {"type": "string", "minLength": 1},
            "message": {"type": "string"},
            "detected_by": {"type": "string", "enum": ["refresher", "publisher"]},
            "task_id": {
                "type": ["string", "null"],
                "description": "the task whose upload found it, when the publisher did",
            },
            "hint": {"type": "string", "description": "how to reconnect"},
        },
        ["platform", "account", "account_key", "code", "message", "detected_by"],
        [
            {
                **EX_ACCOUNT,
                "code": "invalid_grant",
                "message": "the refresh token was refused (invalid_grant): the account must be"
                " reconnected",
                "detected_by": "refresher",
                "task_id": None,
                "hint": "fabric account add youtube main --client-secrets FILE --replace",
            }
        ],
        key="data.account_key",
    )
)

# -- notifications (issue 7): fabric.notifications, keyed by subject (task id or account key)
NO = "fabric.notifications"
NOTE = {
    "kind": {
        "type": "string",
        "enum": ["task_published", "task_failed", "account_reauth", "quota_deferred"],
    },
    "channel": {"type": "string", "enum": ["telegram", "email"]},
    "recipient": {
        "type": "string",
        "description": "masked (ow***@example.com, 12***89): never the address",
    },
    "recipient_hash": {
        "type": "string",
        "pattern": "^[0-9a-f]{16}$",
        "description": "sha256 of channel:recipient, to tell recipients apart",
    },
    "about": {
        "type": "object",
        "properties": {"event_id": {"type": "string"}, "event_type": {"type": "string"}},
        "required": ["event_id", "event_type"],
        "additionalProperties": False,
    },
}
EX_NOTE = {
    "kind": "task_published",
    "channel": "telegram",
    "recipient": "12***89",
    "recipient_hash": "0123456789abcdef",
    "about": {"event_id": "0191f3c2-7d3e-7a4b-9c1d-2e3f4a5b6c7d", "event_type": "task.completed"},
}
S.append(
    schema(
        "notification.sent",
        NO,
        "A notification was delivered (Telegram message ids or the e-mail Message-ID). Recorded"
        " once per event and recipient, so a redelivered event does not notify twice.",
        {
            **NOTE,
            "message_ids": {"type": "array", "items": {"type": "string"}},
            "recovered": {"type": "boolean", "description": "sent by an earlier attempt"},
        },
        ["kind", "channel", "recipient", "recipient_hash", "about", "message_ids"],
        [{**EX_NOTE, "message_ids": ["42"], "recovered": False}],
    )
)
NOTIFY_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "retryable": {"type": "boolean"},
        "retry_after_s": {"type": "number", "minimum": 0},
        "status": {"type": "integer"},
    },
    "required": ["code", "message", "retryable"],
    "additionalProperties": False,
}
S.append(
    schema(
        "notification.failed",
        NO,
        "A notification could not be delivered after its retries (or cannot be: channel not"
        " configured, chat not found). It never fails the task.",
        {**NOTE, "error": NOTIFY_ERROR, "attempts": {"type": "integer", "minimum": 0}},
        ["kind", "channel", "recipient", "recipient_hash", "about", "error", "attempts"],
        [
            {
                **EX_NOTE,
                "attempts": 1,
                "error": {
                    "code": "telegram_400",
                    "retryable": False,
                    "message": "Bad Request: chat not found",
                },
            }
        ],
    )
)

for s in S:
    (OUT / f"{s['title']}.json").write_text(json.dumps(s, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {len(S)} schemas")
