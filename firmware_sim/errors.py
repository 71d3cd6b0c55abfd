"""Errors of the firmware simulator.

::

    SimulatorError (RuntimeError)   anything the simulator refuses or fails to do
"""

from __future__ import annotations

__all__ = ["SimulatorError"]


class SimulatorError(RuntimeError):
    """Root of the simulator's errors (bad kind, pty or symlink trouble, bad manifest)."""
