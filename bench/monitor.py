"""Counting what the store executes, from outside: MONITOR on a raw socket."""

from __future__ import annotations

import socket
import threading
import time


class CommandMonitor:
    """Counts the commands the store executes on given keys, via MONITOR on a raw socket."""

    def __init__(self, redis_url: str) -> None:
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)))
        self._sock.sendall(b"MONITOR\r\n")
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._lines:  # MONITOR answers +OK once it is on
            if time.monotonic() > deadline:
                raise TimeoutError("MONITOR did not start")
            time.sleep(0.01)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            with self._lock:
                self._lines += [line.decode(errors="replace") for line in lines]

    def count(self, key: str) -> int:
        needle = f'"{key}"'
        with self._lock:
            return sum(needle in line for line in self._lines)

    def close(self) -> None:
        self._sock.close()
