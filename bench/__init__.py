"""bench: reproducible benchmarks, each printing our figure and its peer's from the same run.

    python -m bench --help          the list; see bench/__main__.py

Benchmarks print JSON and never assert timings; the test suite does not time anything.
"""
