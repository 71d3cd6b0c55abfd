"""Errors raised by the citylab protocol codecs.

Every decoder in :mod:`protocol` raises only these, never a foreign exception
(``json.JSONDecodeError``, ``cbor2.CBORDecodeError``, ``UnicodeDecodeError``...),
so a caller can dead-letter any bad payload with one ``except ProtocolError``::

    ValueError
     └── ProtocolError          reason: str, e.g. "truncated"
          ├── SenMLError        SenML packs (JSON and CBOR)
          ├── LppError          Cayenne LPP frames
          ├── LineError         citylab serial lines ($CLAB,...*HH)
          ├── TopicError        MQTT topics and the committed watermark
          └── RadioError        UART LoRa module lines (+RCV=...)

``reason`` is a short, stable, machine-friendly token (stored with dead
letters and counted in metrics); ``str(error)`` is the human message.
"""

from __future__ import annotations

__all__ = [
    "LineError",
    "LppError",
    "ProtocolError",
    "RadioError",
    "SenMLError",
    "TopicError",
]


class ProtocolError(ValueError):
    """A payload, line or topic that does not follow the citylab protocol."""

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, str]]:
        # Keeps the error picklable (multiprocessing, logging handlers).
        return (type(self), (self.reason, self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class SenMLError(ProtocolError):
    """A SenML pack that cannot be decoded or encoded."""


class LppError(ProtocolError):
    """A Cayenne LPP frame that cannot be decoded or encoded."""


class LineError(ProtocolError):
    """A citylab serial line that cannot be parsed or formatted."""


class TopicError(ProtocolError):
    """An MQTT topic (or committed watermark) outside the citylab scheme."""


class RadioError(ProtocolError):
    """A line from a UART LoRa module that cannot be parsed or formatted."""
