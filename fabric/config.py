"""Settings from the environment, with embedded defaults that need no set-up.

| variable          | default                          | what                              |
|-------------------|----------------------------------|-----------------------------------|
| FABRIC_HOME       | ./.fabric                        | where embedded files live         |
| FABRIC_LOG        | sqlite:///$FABRIC_HOME/log.db    | the log (memory://, sqlite://, kafka://) |
| FABRIC_DB         | sqlite:///$FABRIC_HOME/fabric.db | state and read model (sqlite, mysql) |
| FABRIC_PARTITIONS | 8                                | partitions of new topics          |
| FABRIC_LOG_LEVEL  | INFO                             | log level of the JSON-lines logs  |
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

__all__ = ["Settings"]


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@dataclasses.dataclass(frozen=True)
class Settings:
    home: Path
    log_url: str
    db_url: str
    partitions: int = 8
    log_level: str = "INFO"
    namespace: str = ""  # FABRIC_NAMESPACE: prefix of every topic and consumer group
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(overrides.pop("home", None) or env.get("FABRIC_HOME", ".fabric")).resolve()
        values: dict[str, Any] = dict(
            home=home,
            log_url=env.get("FABRIC_LOG") or _sqlite_url(home / "log.db"),
            db_url=env.get("FABRIC_DB") or _sqlite_url(home / "fabric.db"),
            partitions=int(env.get("FABRIC_PARTITIONS", "8")),
            log_level=env.get("FABRIC_LOG_LEVEL", "INFO"),
            namespace=env.get("FABRIC_NAMESPACE", ""),
            extra={k: v for k, v in env.items() if k.startswith("FABRIC_")},
        )
        values.update(overrides)
        return cls(**values)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Any FABRIC_* variable, e.g. ``settings.get("FABRIC_PLATFORM_DIR")``."""
        return self.extra.get(name, default)
