from pathlib import Path

from tests.log.contract import ProcessContract


class TestSqliteLog(ProcessContract):
    def url(self, tmp_path: Path) -> str:
        # short leases so a killed member's partitions move within ~1.5 s
        return f"sqlite:///{tmp_path}/log.db?session_timeout=1.5&heartbeat=0.2"
