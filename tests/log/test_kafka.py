from pathlib import Path

import pytest

from tests.conftest import kafka_url
from tests.log.contract import ProcessContract

pytestmark = pytest.mark.kafka


class TestKafkaLog(ProcessContract):
    @pytest.fixture(autouse=True)
    def _address(self, kafka_address: str) -> None:
        self.address = kafka_address

    def url(self, tmp_path: Path) -> str:
        return kafka_url(self.address)
