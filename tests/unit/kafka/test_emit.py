"""The emit step without a broker: a fake producer that acknowledges or refuses batches."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition

from stream_app.kafka.emit import Emitter

LOG = "learning-log"


class FakeProducer:
    """Hands out small batches; acknowledges each sent batch at the next offsets, or refuses."""

    def __init__(self, batch_bytes: int = 300) -> None:
        self.batch_bytes = batch_bytes
        self.refuse = False
        self.log: list[bytes] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse:
            future.set_exception(KafkaTimeoutError())
            return future
        base = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = base + batch.record_count()
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, base, -1, 0, None))
        if topic == LOG:
            self.log += [bytes(v) for v in self.sent_values(batch)]
        return future

    @staticmethod
    def sent_values(batch: BatchBuilder) -> list[bytes]:
        from aiokafka.record.default_records import DefaultRecordBatch

        data = batch._build()  # what the producer would put on the wire
        return [record.value for record in DefaultRecordBatch(bytes(data))]

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def flush(emitter: Emitter) -> list[Any]:
    return list(await asyncio.gather(*await emitter.flush(), return_exceptions=True))


async def test_the_tracked_topic_reports_its_last_acknowledged_offset() -> None:
    producer = FakeProducer()
    emitter = Emitter(producer, tracked=LOG)  # type: ignore[arg-type]
    for i in range(25):  # several batches: a full one is parked and another started
        emitter.to_partition(LOG, 0, None, f"line-{i:02d}".encode())
        emitter.to_partition("predictions", i % 2, None, b"p")
    await flush(emitter)
    assert emitter.acked_through() == 24 and emitter.settled
    assert emitter.acked_through() is None  # nothing new since
    assert producer.log == [f"line-{i:02d}".encode() for i in range(25)]


async def test_lines_of_a_refused_batch_are_queued_again_in_order() -> None:
    producer = FakeProducer()
    emitter = Emitter(producer, tracked=LOG)  # type: ignore[arg-type]
    for i in range(10):
        emitter.to_partition(LOG, 0, None, f"line-{i}".encode())
        emitter.to_partition("predictions", 0, None, b"p")
    producer.refuse = True
    assert any(isinstance(r, BaseException) for r in await flush(emitter))
    emitter.discard()  # the inputs are read again; the learner already learned these lines
    assert not emitter.settled
    producer.refuse = False
    emitter.to_partition(LOG, 0, None, b"line-10")
    await flush(emitter)
    assert emitter.settled and emitter.acked_through() == 10
    assert producer.log == [f"line-{i}".encode() for i in range(11)]
