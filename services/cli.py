"""`fanline`: serve one role, bring the whole suite up, or play the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from services.common.config import ConfigError, load_settings

SERVE_ROLES = ("post", "fanout", "worker", "timeline")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fanline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one role in the foreground (what Kubernetes runs)")
    serve.add_argument("role", choices=SERVE_ROLES)

    up = sub.add_parser("up", help="start store, services and workers; Ctrl-C stops all")
    up.add_argument("--workers", type=int, default=1)
    up.add_argument("--cluster", type=int, default=0, metavar="MASTERS",
                    help="embedded store as a Valkey Cluster of this many masters (default: one node)")
    up.add_argument("--replicas", type=int, default=0,
                    help="replicas per master of the embedded cluster (default 0)")
    up.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                    help="send traces and metrics here (e.g. http://127.0.0.1:4317)")

    demo = sub.add_parser("demo", help="play a small story and print a timeline")
    demo.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))

    try:
        from bench.cli import add_commands
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
    if not settings.redis_url:
        print("fanline: FANLINE_REDIS_URL is not set (use `fanline up` for an embedded store)",
              file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )
    from services.common import telemetry

    telemetry.setup(os.environ.get("OTEL_SERVICE_NAME", f"fanline-{role}"), settings)
    if role == "post":
        from services.post.main import run
    elif role == "fanout":
        from services.fanout.main import run_api as run
    elif role == "worker":
        from services.fanout.main import run_worker as run
    else:
        from services.timeline.main import run
    try:
        asyncio.run(run(settings))
    finally:
        telemetry.shutdown()
    return 0


def _otlp_env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if endpoint else {}


def _up(args: argparse.Namespace) -> int:
    from services.launcher import Suite

    try:
        load_settings()
    except ConfigError as exc:
        print(f"fanline: {exc}", file=sys.stderr)
        return 2
    if args.cluster < 0 or args.replicas < 0 or (args.replicas and not args.cluster):
        print("fanline: --cluster must be positive, and --replicas needs --cluster", file=sys.stderr)
        return 2
    suite = Suite(workers=args.workers, extra_env=_otlp_env(args.otlp_endpoint), free_ports=False,
                  cluster_masters=args.cluster, cluster_replicas=args.replicas)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with suite:
        kind = ""
        if suite.store is not None:
            kind = f" (embedded cluster: {args.cluster} masters)" if args.cluster else " (embedded)"
        print(f"store     {suite.redis_url}{kind}")
        print(f"post      {suite.post_addr}")
        print(f"fanout    {suite.fanout_addr}")
        print(f"timeline  {suite.timeline_addr}")
        print(f"workers   {args.workers}")
        if args.otlp_endpoint:
            print(f"traces -> {args.otlp_endpoint}; Jaeger UI: http://127.0.0.1:16686")
        print("Ctrl-C stops everything.", flush=True)
        while not stop:
            time.sleep(0.2)
            for name, proc in suite.procs.items():
                if proc.poll() is not None and not stop:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    stop = True
    print("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.role)
    if args.command == "up":
        return _up(args)
    if args.command == "demo":
        from services.demo import run_demo

        return run_demo(_otlp_env(args.otlp_endpoint))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
