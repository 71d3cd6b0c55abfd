"""A pseudo-terminal pair standing in for a UART, with an optional stable symlink."""

from __future__ import annotations

import errno
import logging
import os
import tty
from pathlib import Path

from firmware_sim.errors import SimulatorError

__all__ = ["PseudoTerminal"]

log = logging.getLogger("firmware_sim.pty")


class PseudoTerminal:
    """The device writes to the master side; a reader opens :attr:`slave_path` (or the link).

    The slave is put in raw mode (no echo, no line editing, no CR/LF translation), as
    a USB-serial adapter would present it. The master is non-blocking: when nobody
    reads and the kernel buffer (about 4 KiB) is full, :meth:`write` writes what fits,
    like a UART whose receiver is not listening. The simulator keeps its own slave fd
    open so the terminal survives readers coming and going.
    """

    def __init__(self, *, link: Path | str | None = None, baud: int = 115200) -> None:
        self.baud = baud  # a pty ignores the line speed; recorded for the manifest
        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self._slave_fd)
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            self._make_link(self.link)

    @property
    def path(self) -> str:
        """What a reader should open: the link when there is one, else the slave."""
        return str(self.link) if self.link is not None else self.slave_path

    def _make_link(self, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, link)  # atomic: a reader never sees a missing or stale link
        except OSError as exc:
            self.close()
            raise SimulatorError(f"cannot create tty link {link} -> {self.slave_path}: {exc}") from exc

    def write(self, data: bytes) -> int:
        """Write what fits now; returns the number of bytes written (0 when full)."""
        try:
            return os.write(self.master_fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                return 0
            raise

    def drain_input(self) -> bytes:
        """Read and return what a reader wrote towards the device (AT commands)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.master_fd, 4096)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.link is not None:
            try:
                if os.readlink(self.link) == self.slave_path:
                    self.link.unlink()
            except OSError:
                pass
        for fd in (self.master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master_fd = self._slave_fd = -1
