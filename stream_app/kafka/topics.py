"""Create the service's topics when they are missing, with the configured partition count."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stream_app.errors import BrokerError
from stream_app.kafka.security import client_kwargs
from stream_app.settings import Settings

__all__ = ["ensure_topics", "topic_names", "topic_partitions"]

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes.

    >>> topic_names(Settings())[:3]
    ['features', 'labels', 'predictions']
    """
    t = settings.topics
    return [
        t.features,
        t.labels,
        t.predictions,
        t.predictions_shadow,
        t.dead_letters,
        t.model_events,
    ]


async def ensure_topics(
    settings: Settings,
    names: list[str] | None = None,
    *,
    partitions: int | None = None,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create each missing topic; return the names created (existing ones are left as they are).

    By default: the service's topics with ``topics.partitions`` partitions.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = topic_names(settings) if names is None else names
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        count = settings.topics.partitions if partitions is None else partitions
        response = await admin.create_topics(
            [
                NewTopic(
                    name, count, settings.topics.replication_factor, topic_configs=config or {}
                )
                for name in missing
            ]
        )
        for name, code, *_ in response.topic_errors:
            if code and for_code(code) is not TopicAlreadyExistsError:
                raise BrokerError(f"cannot create topic {name}: {for_code(code).__name__}")
        log.info("created topics %s with %d partitions", missing, count)
        return missing
    finally:
        await admin.close()


async def topic_partitions(consumer: Any, topic: str) -> set[int]:
    """Return the partitions of ``topic`` from fresh metadata (empty if it does not exist).

    ``consumer.partitions_for_topic`` only knows topics the client already tracks.
    """
    cluster = await consumer._client.fetch_all_metadata()
    partitions: set[int] = cluster.partitions_for_topic(topic) or set()
    return partitions
