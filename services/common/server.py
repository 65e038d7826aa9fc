"""The one gRPC server bootstrap: health, reflection, interceptors, graceful shutdown.

Every Fanline process (the three services and the fan-out worker's health endpoint) starts
through `GrpcServer`, so they all answer the standard health check and server reflection, map
domain errors to statuses the same way, and stop the same way on SIGTERM: health goes
NOT_SERVING (load balancers stop routing), in-flight calls get `grace` seconds to finish, then
the process's own shutdown hooks run (a worker stops taking stream entries).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fanline.common import telemetry
from fanline.common.access import AccessInterceptor
from fanline.common.auth import Keys, keys_for
from fanline.common.config import Settings
from fanline.common.errors import DomainError
from fanline.common.interceptor import Unary, UnaryServerInterceptor
from fanline.common.store import is_outage
from fanline.common.tls import TlsFiles

log = logging.getLogger(__name__)

# Connections are closed (gracefully) after this age so clients re-resolve and spread across
# new pods: HTTP/2 otherwise pins a client to the pods it first reached.
DEPENDENCY_CHECK_S = 1.0  # how often a process checks what it depends on (the store)
MAX_CONNECTION_AGE_MS = 30_000
# After the age, calls in flight may finish within the grace: unary ones take milliseconds;
# WatchTimeline streams end when it runs out and resume on another connection, so the grace is
# also how long a stream lives.
MAX_CONNECTION_AGE_GRACE_MS = 300_000

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
    ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
    # Calls that arrived but are not yet taken by the server's loop. gRPC's default (1,000)
    # cancels the rest of a burst: thousands of WatchTimeline streams reconnecting at once
    # after a pod drains would see CANCELLED instead of waiting a few milliseconds.
    ("grpc.server.max_pending_requests", 20_000),
]


class ErrorMappingInterceptor(UnaryServerInterceptor):
    """Turns DomainError into its status (with rich details) and store outages into
    UNAVAILABLE, so callers never see INTERNAL for anything but a bug."""

    def wrap(self, method: str, inner: Unary) -> Unary:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except DomainError as exc:
                status = exc.to_grpc_status()
                await context.abort(status.code, status.details, status.trailing_metadata)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("store unavailable: %s", exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "store unavailable, retry")

        return unary


# Health service name for liveness probes: SERVING while the process runs, whatever its
# dependencies say. Restarting a pod does not bring its store back, so a store outage should
# take pods out of rotation (readiness, service "") without restarting them all.
LIVENESS = "liveness"

Registrar = Callable[[grpc.aio.Server], None]
Hook = Callable[[], Awaitable[None]]


class GrpcServer:
    def __init__(
        self,
        bind_addr: str,
        service_names: Iterable[str],
        register: Registrar,
        grace_s: float,
        drain_s: float = 0.0,
        keys: Keys | None = None,
        reflection_on: bool = True,
        tls: TlsFiles | None = None,
        health_port: int = 0,
    ) -> None:
        self._bind_addr = bind_addr
        self._service_names = list(service_names)
        self._grace_s = grace_s
        self._drain_s = drain_s
        self._shutdown_hooks: list[Hook] = []
        self._dependencies: list[tuple[str, Callable[[], Awaitable[bool]], float]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._tls = tls
        self.health = health.aio.HealthServicer()
        # Plain-text health only, for probes that cannot speak TLS (Kubernetes' gRPC probes).
        self._health_addr = (f"{bind_addr.rpartition(':')[0]}:{health_port}"
                             if tls is not None and health_port else "")
        self._health_server: grpc.aio.Server | None = None
        self.server = grpc.aio.server(
            # Tracing outermost: its span then sees the status (and rich details) that
            # ErrorMappingInterceptor's abort sets.
            # Access last: it sees the request, and refuses before any servicer code runs.
            interceptors=[*telemetry.server_interceptors(), ErrorMappingInterceptor(),
                          *([AccessInterceptor(keys)] if keys is not None else [])],
            options=SERVER_OPTIONS,
        )
        register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if reflection_on:
            reflection.enable_server_reflection(
                [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        self.port = 0

    def depend_on(self, check: Callable[[], Awaitable[bool]], name: str,
                  every_s: float = DEPENDENCY_CHECK_S) -> None:
        """While `check` fails (False, or raises), report NOT_SERVING: load balancers and
        readiness probes send calls elsewhere until it passes again (the store being away,
        say). Calls that still arrive get UNAVAILABLE from the error mapping."""
        self._dependencies.append((name, check, every_s))

    async def _watch(self, name: str, check: Callable[[], Awaitable[bool]], every_s: float) -> None:
        serving = True
        while not self._stopped.is_set():
            try:
                ok = await asyncio.wait_for(check(), every_s)
            except Exception:
                ok = False
            if ok != serving and not self._stopped.is_set():
                serving = ok
                status = (health_pb2.HealthCheckResponse.SERVING if ok
                          else health_pb2.HealthCheckResponse.NOT_SERVING)
                for service in ["", *self._service_names]:
                    await self.health.set(service, status)
                log.warning("%s %s: health %s", name, "is back" if ok else "unreachable",
                            "SERVING" if ok else "NOT_SERVING")
            try:
                await asyncio.wait_for(self._stopped.wait(), every_s)
            except TimeoutError:
                pass

    def on_shutdown(self, hook: Hook) -> None:
        """Run `hook` after health went NOT_SERVING and before in-flight calls are awaited."""
        self._shutdown_hooks.append(hook)

    async def start(self) -> int:
        if self._tls is not None:
            self.port = self.server.add_secure_port(self._bind_addr,
                                                    self._tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(self._bind_addr)
        if self.port == 0:
            raise OSError(f"cannot bind {self._bind_addr}")
        if self._health_addr:
            self._health_server = grpc.aio.server(options=SERVER_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            if self._health_server.add_insecure_port(self._health_addr) == 0:
                raise OSError(f"cannot bind {self._health_addr} (FANLINE_HEALTH_PORT)")
            await self._health_server.start()
        await self.server.start()
        for name in ["", LIVENESS, *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._watchers = [asyncio.create_task(self._watch(*dependency))
                          for dependency in self._dependencies]
        log.info("serving %s on port %d", ",".join(self._service_names) or "health", self.port)
        return self.port

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self.health.enter_graceful_shutdown()
        if self._drain_s:
            # Still serving, but reporting NOT_SERVING: readiness probes fail and endpoints are
            # withdrawn before we start refusing calls.
            await asyncio.sleep(self._drain_s)
        for hook in self._shutdown_hooks:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        await self.server.stop(self._grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)

    async def run_until_signalled(self) -> None:
        """Start, then serve until SIGTERM/SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await self.start()
        await stop_requested.wait()
        log.info("signal received: draining for up to %.1fs", self._grace_s)
        await self.stop()
        await self.server.wait_for_termination()


def for_service(
    settings: Settings, own_addr: str, service_names: Iterable[str], register: Registrar
) -> GrpcServer:
    """A server for one Fanline process: bound per its settings, with their shutdown timings."""
    return GrpcServer(
        settings.bind_addr(own_addr),
        service_names,
        register,
        settings.shutdown_grace_s,
        settings.shutdown_drain_s,
        keys_for(settings),
        settings.reflection,
        settings.tls(),
        settings.health_port,
    )
