"""ingest: the platform's MQTT entry.

It takes packs from the broker (persistent QoS 1 session), authorises each against
the device registry, decodes it into columnar numpy batches, validates every field
against what the schema holds, runs the batches through the stream processor,
stores everything in one transaction, and only then
acknowledges the messages and publishes each device's committed watermark.
Packs that cannot be decoded, validated, authorised or stored become dead letters
with their reason: received = stored + dead-lettered; nothing one pack holds stops
the others.
"""

from __future__ import annotations

from ingest.decode import DecodedPack, decode_message
from ingest.errors import BrokerError, IngestError
from ingest.message import Message
from ingest.mqtt import IngestClient, parse_mqtt_url
from ingest.pipeline import CommitResult, Pipeline
from ingest.service import IngestOptions, IngestService
from ingest.validate import PackLimits, check_pack

__all__ = [
    "BrokerError",
    "CommitResult",
    "DecodedPack",
    "IngestClient",
    "IngestError",
    "IngestOptions",
    "IngestService",
    "Message",
    "PackLimits",
    "Pipeline",
    "check_pack",
    "decode_message",
    "parse_mqtt_url",
]
