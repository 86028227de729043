from pathlib import Path

from tests.log.contract import LogContract


class TestMemoryLog(LogContract):
    def url(self, tmp_path: Path) -> str:
        return "memory://"
