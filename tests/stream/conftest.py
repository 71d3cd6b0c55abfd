"""Loads the helper modules of the stream tests under names no other test folder can shadow.

``naive.py`` (slow twins of the kernels) becomes ``stream_naive`` and ``batches.py``
(hypothesis strategies) ``stream_batches``. The test folders have no ``__init__.py``, so
a plain ``import naive`` would pick whichever folder's ``naive.py`` came first.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

for _name in ("naive", "batches"):
    _spec = importlib.util.spec_from_file_location(f"stream_{_name}", Path(__file__).with_name(f"{_name}.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
