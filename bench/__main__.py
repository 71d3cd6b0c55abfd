"""`python -m bench NAME`: run one benchmark and print its JSON."""

from __future__ import annotations

import argparse
import json
import sys

from bench import storage_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="citylab benchmarks")
    sub = parser.add_subparsers(dest="name", required=True)
    storage = sub.add_parser("storage", help="COPY writer into the indexed raw table, with its peers")
    storage.add_argument("--rows", type=int, default=1_000_000)
    storage.add_argument("--database-url", default=None,
                         help="an existing database to use (default: a private embedded cluster)")
    args = parser.parse_args(argv)
    if args.name == "storage":
        result = storage_bench.run(rows=args.rows, database_url=args.database_url)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
