"""``python -m firmware_sim district --serial 20 --lora 10 --dir DIR``: run a simulated district."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from firmware_sim.district import District
from firmware_sim.errors import SimulatorError

log = logging.getLogger("firmware_sim")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m firmware_sim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("district", help="serial sensors on ptys and LoRa nodes behind one radio module")
    d.add_argument("--dir", type=Path, required=True, help="puts tty/ symlinks and manifest.json here")
    d.add_argument("--serial", type=int, default=20, help="number of serial sensors (default 20)")
    d.add_argument("--lora", type=int, default=10, help="number of LoRa nodes (default 10)")
    d.add_argument("--meters", type=int, default=0, help="number of building energy meters (default 0)")
    d.add_argument("--period", type=float, default=1.0, help="serial line period in s (default 1.0)")
    d.add_argument("--lora-period", type=float, default=5.0, help="LoRa frame period in s (default 5.0)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--baud", type=int, default=115200)
    d.add_argument("--ledger", type=Path, default=None, help="SQLite ledger of every emitted reading")
    d.add_argument("--fault-rate", type=float, default=0.0, help="chance per emission of a random fault")
    d.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        district = District(
            args.dir,
            serial=args.serial,
            lora=args.lora,
            meters=args.meters,
            period_s=args.period,
            lora_period_s=args.lora_period,
            seed=args.seed,
            ledger_path=args.ledger,
            baud=args.baud,
            fault_rate=args.fault_rate,
        )
    except (SimulatorError, OSError) as exc:
        log.error("cannot start the district: %s", exc)
        return 2
    with district:
        district.start()
        while not stop.wait(1.0):
            pass
        log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
