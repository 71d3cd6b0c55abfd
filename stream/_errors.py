"""Errors of the stream package.

    StreamError                  root
     └── BatchError              a batch or a setting was refused (also a ValueError)

The kernels raise nothing: every check happens in the Python wrappers, before a kernel runs.
"""

from __future__ import annotations

__all__ = ["BatchError", "StreamError"]


class StreamError(Exception):
    pass


class BatchError(StreamError, ValueError):
    """Input the processor refuses: ragged or non-1-D arrays, wrong dtypes, ids or times out of range."""
