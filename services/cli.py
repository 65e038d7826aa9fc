"""`fanline`: serve one role, bring the whole suite up, or play the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from fanline.common.config import ConfigError, Settings, load_settings

SERVE_ROLES = ("post", "fanout", "worker", "timeline")
DEFAULT_DATA_DIR = "fanline-data"
STORE_CHECK_S = 5.0


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`, else a clear usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum, {minimum}")
        return value

    return parse


def real(low: float, high: float | None = None, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a number from `low` (or above it, with `above`) up to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or (value <= low if above else value < low) or \
                (high is not None and value > high):
            bounds = f"{'above' if above else 'from'} {low:g}" + (
                f" up to {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {bounds})")
        return value

    return parse


def version() -> str:
    try:
        return metadata.version("fanline")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _HelpWithDefaults(argparse.HelpFormatter):
    """--help shows each option's default, unless its help already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every `fanline` command's parser (subcommands inherit it): defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fanline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fanline {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one role in the foreground (what Kubernetes runs)",
                           description="Run one role in the foreground, configured by FANLINE_* "
                                       "environment variables (see the README); what each "
                                       "container runs. Refuses to start without FANLINE_AUTH.")
    serve.add_argument("role", choices=SERVE_ROLES)

    up = sub.add_parser("up", help="start store, services and workers; Ctrl-C stops all",
                        description="Start an embedded store (unless FANLINE_REDIS_URL is set), "
                                    "the three services and the workers as supervised processes "
                                    "on the configured addresses; Ctrl-C stops them all.")
    up.add_argument("--workers", type=count(0), default=1, help="fan-out workers (default 1)")
    up.add_argument("--cluster", type=count(0), default=0, metavar="MASTERS",
                    help="embedded store as a Valkey Cluster of this many masters (default: one node)")
    up.add_argument("--replicas", type=count(0), default=0,
                    help="replicas per master of the embedded cluster (default 0)")
    up.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                    help="send traces and metrics here (e.g. http://127.0.0.1:4317)")
    up.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                    help="where the embedded store keeps its data (append-only file, fsync every "
                         f"second); default ./{DEFAULT_DATA_DIR}")
    up.add_argument("--ephemeral", action="store_true",
                    help="a throwaway embedded store: nothing is kept when fanline up stops "
                         "(an embedded cluster always is)")

    token = sub.add_parser(
        "token", help="print a bearer token for USER, signed with the first FANLINE_JWT_SECRETS",
        description="Print an HS256 bearer token (metadata `authorization: Bearer <token>`) "
                    "signed with the first of FANLINE_JWT_SECRETS, for tests, demos and operators.")
    token.add_argument("user", help="the token's sub: the user the caller acts as")
    token.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                       help="a scope to grant (repeatable): fanline.admin, fanline.internal")
    token.add_argument("--ttl", type=count(1), default=3600, metavar="SECONDS",
                       help="lifetime in seconds (default 3600)")

    certs = sub.add_parser(
        "certs", help="write a development CA and certificate to DIR (ca.crt, tls.crt, tls.key)",
        description="Write a development certificate authority and one certificate signed by "
                    "it (valid for localhost, 127.0.0.1 and the Kubernetes Service names, for "
                    "servers and clients) to DIR, for FANLINE_TLS_CA, FANLINE_TLS_CERT and "
                    "FANLINE_TLS_KEY. For development and tests only.")
    certs.add_argument("dir", help="directory to write ca.crt, tls.crt and tls.key to")

    demo = sub.add_parser("demo", help="play a small story and print a timeline",
                          description="Play a small story (two ordinary authors, a celebrity, a "
                                      "reader, a crowd of fans) over the real gRPC API, against "
                                      "a running suite at the configured addresses or else one "
                                      "it starts, and print the reader's timeline and what each "
                                      "post cost.")
    demo.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                      help="send the suite's traces here (e.g. http://127.0.0.1:4317)")

    try:
        from fanline.bench.cli import add_commands
    except ImportError:  # the benchmark package is optional at run time
        pass
    else:
        add_commands(sub)
    return parser


def _serve(role: str) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"fanline: {exc}", file=sys.stderr)
        return 2
    if not settings.auth:
        return _fail("FANLINE_AUTH is not set: choose jwt (every call needs a verified token; "
                     "see docs/security.md) or none (every caller is trusted: development only)")
    if not settings.redis_url:
        return _fail("FANLINE_REDIS_URL is not set (use `fanline up` for an embedded store)")
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )
    from fanline.common import telemetry

    telemetry.setup(os.environ.get("OTEL_SERVICE_NAME", f"fanline-{role}"), settings)
    if role == "post":
        from fanline.post.main import run
    elif role == "fanout":
        from fanline.fanout.main import run_api as run
    elif role == "worker":
        from fanline.fanout.main import run_worker as run
    else:
        from fanline.timeline.main import run
    try:
        asyncio.run(run(settings))
    finally:
        telemetry.shutdown()
    return 0


def _otlp_env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if endpoint else {}


def _fail(message: str, code: int = 2) -> int:
    print(f"fanline: {message}", file=sys.stderr)
    return code


def _busy(addresses: dict[str, str]) -> str | None:
    """The first address something else already listens on, with the setting that names it."""
    for setting, addr in addresses.items():
        host, _, port = addr.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                sock.bind((host, int(port)))
            except OSError as exc:
                return f"{addr} ({setting}) cannot be used: {exc.strerror or exc}"
    return None


def _store_unreachable(settings: Settings) -> str | None:
    """Why the configured store cannot be used, or None."""
    from fanline.common.store import open_store

    async def check() -> None:
        store = await asyncio.wait_for(open_store(settings, max_connections=2), STORE_CHECK_S)
        await store.close()

    try:
        asyncio.run(check())
    except Exception as exc:  # every cause ends the same way: one line, non-zero exit
        from fanline.common.store.client import redacted

        return (f"cannot use the store at {redacted(settings.redis_url)} (FANLINE_REDIS_URL): "
                f"{exc or type(exc).__name__}")
    return None


def _token(args: argparse.Namespace) -> int:
    from fanline.common.auth import Keys
    from fanline.common.validation import user_id

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    if not settings.jwt_secrets:
        return _fail("FANLINE_JWT_SECRETS is not set: a token is signed with its first secret")
    try:
        user_id(args.user, "USER")
    except Exception as exc:
        return _fail(str(exc))
    keys = Keys(settings.jwt_secrets, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    print(keys.mint(args.user, args.scope, args.ttl))
    return 0


def _auth_line(settings: Settings) -> str:
    if settings.auth == "jwt":
        return "auth      jwt: every call needs a bearer token (`fanline token USER` makes one)"
    return "auth      none: every caller is trusted (FANLINE_AUTH=jwt requires tokens)"


def _up(args: argparse.Namespace) -> int:
    from fanline.common.embedded import EmbeddedStore
    from fanline.launcher import Suite, Supervisor

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    if args.replicas and not args.cluster:
        return _fail("--replicas needs --cluster")
    persistent = not (args.ephemeral or args.cluster or settings.redis_url)
    suite = Suite(workers=args.workers, extra_env=_otlp_env(args.otlp_endpoint), free_ports=False,
                  cluster_masters=args.cluster, cluster_replicas=args.replicas,
                  data_dir=args.data_dir if persistent else None)
    busy = _busy(suite.addresses())
    if busy:
        return _fail(busy)
    if settings.redis_url:
        unreachable = _store_unreachable(settings)
        if unreachable:
            return _fail(unreachable)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        suite.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        return _fail(f"the suite did not start: {exc}", 1)
    try:
        kind = ""
        if suite.store is not None:
            kind = f" (embedded cluster: {args.cluster} masters)" if args.cluster else " (embedded)"
        pid = f" pid {suite.store.pid}" if isinstance(suite.store, EmbeddedStore) else ""
        from fanline.common.store.client import redacted

        print(f"store     {redacted(suite.redis_url)}{kind}{pid}")
        if persistent:
            print(f"data      {Path(args.data_dir).resolve()} (append-only, fsync every second; "
                  "delete it to start empty)")
        elif suite.store is not None:
            print("data      none: the embedded store is thrown away when fanline up stops")
        print(_auth_line(load_settings(suite.env)))
        print(f"post      {suite.post_addr}")
        print(f"fanout    {suite.fanout_addr}")
        print(f"timeline  {suite.timeline_addr}")
        print(f"workers   {args.workers}")
        for name, proc in suite.procs.items():
            print(f"          {name} pid {proc.pid}")
        if args.otlp_endpoint:  # where traces go; which UI shows them is the receiver's matter
            print(f"traces    {args.otlp_endpoint} (OTLP)")
        print("Ctrl-C stops everything.", flush=True)
        reason = Supervisor(suite, lambda line: print(f"fanline: {line}", flush=True)).run(
            lambda: stop)
    finally:
        suite.stop()
    if reason:
        return _fail(f"{reason}; stopped everything", 1)
    print("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.role)
    if args.command == "up":
        return _up(args)
    if args.command == "token":
        return _token(args)
    if args.command == "certs":
        from fanline.common.tls import make_dev_certs

        paths = make_dev_certs(Path(args.dir))
        print(f"FANLINE_TLS_CA={paths['ca.crt']}\nFANLINE_TLS_CERT={paths['tls.crt']}\n"
              f"FANLINE_TLS_KEY={paths['tls.key']}")
        return 0
    if args.command == "demo":
        from fanline.demo import run_demo

        return run_demo(_otlp_env(args.otlp_endpoint))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
