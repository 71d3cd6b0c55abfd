"""`python -m bench NAME [options]`: run one benchmark and print its JSON.

Each benchmark is a module `bench/<name>_bench.py` with `add_arguments(parser)`
and `run(args) -> dict`; the list below names them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = {
    "storage": "COPY writer into the indexed raw table, with raw COPY and executemany",
    "edge": "edge agent: serial lines to published packs, readings/s, RSS, CPU",
    "stream": "stream kernels on 10 M readings, with pandas and river",
    "nab": "the production detector on the Numenta Anomaly Benchmark, scored",
    "ingest": "MQTT to committed rows with the real broker and database, with the naive peer",
    "export": "streamed CSV/Parquet exports: rows/s and the API's peak memory, with a fetchall peer",
    "http_ingest": "POST /v1/ingest with device tokens, with the MQTT path as the peer",
    "sensorthings": "SensorThings Observations paged with $top=10000 and a $expand of latest values, with /v1",
    "ngsild": "NGSI-LD temporal queries and upserts beside /v1 and the ingest pipeline, over real HTTP",
    "scaleout": "readings/s committed by 1, 2 and 4 ingest workers on one shared subscription, same load",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="citylab benchmarks (JSON on stdout)")
    sub = parser.add_subparsers(dest="name", required=True)
    modules = {}
    for name, help_text in BENCHMARKS.items():
        try:
            module = importlib.import_module(f"bench.{name}_bench")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}_bench":
                continue  # not written yet
            raise
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    result = modules[args.name].run(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
