"""`python -m citylab` is the `citylab` command."""

from __future__ import annotations

import sys

from citylab.cli import main

sys.exit(main())
