"""bench: reproducible benchmarks, each printing our figure and its peer's from the same run.

    python -m bench storage [--rows N]    binary COPY writer vs a prebuilt COPY buffer vs executemany

Benchmarks print JSON and never assert timings; the test suite does not time anything.
"""
