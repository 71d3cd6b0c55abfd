"""``python -m edge --config FILE`` (also the ``citylab-edge`` script): run the gateway agent."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from edge.agent import Agent
from edge.config import load_config
from edge.errors import EdgeError

log = logging.getLogger("edge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citylab-edge", description="citylab gateway agent")
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        agent = Agent(load_config(args.config))
    except EdgeError as exc:
        log.error("%s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    try:
        agent.run()
    except EdgeError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
