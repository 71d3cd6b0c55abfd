"""citylab: the command line and the settings shared by every stage.

The stages themselves live in sibling packages (`protocol`, `edge`, `ingest`,
`stream`, `storage`, `api`, ...); this package only wires them into processes.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
