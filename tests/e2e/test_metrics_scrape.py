"""Every process's Prometheus endpoint, scraped after a short workload on the suite as real
processes (docs/observability.md).

The workload calls every RPC of every service, as read from the generated descriptors
(a new RPC fails the test until the workload calls it),
some of them with a request that fails. Then each process's /metrics must show:

- rpc.server.duration for each RPC on the process that serves it (and only there), with a
  count for each status code the calls got, the errors included; none for health checks;
- rpc.client.duration for the calls between services: post -> fan-out (PublishPost,
  RetractPost), timeline -> post (BatchGetPosts);
- the fan-out, queue and inbox metrics on the worker, the read metrics on the timeline.

Metrics are recorded when calls end and fan-out runs in the background, so the scrape is
polled until everything is there (or the time is up, naming what is missing).
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from prometheus_client.parser import text_string_to_metric_families

import fanline.gen.feed.v1 as generated
from fanline.common.auth import ADMIN
from fanline.common.config import load_settings
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite
from tests.e2e.helpers import Clients

pytestmark = pytest.mark.e2e

OK = grpc.StatusCode.OK
POST, FANOUT, TIMELINE = "feed.v1.PostService", "feed.v1.FanoutService", "feed.v1.TimelineService"
# The process that serves each service (a service missing here fails the test).
SERVED_BY = {POST: "post", FANOUT: "fanout", TIMELINE: "timeline"}
PROCESSES = ("post", "fanout", "timeline", "worker-0")  # the order Suite starts them in
HOST = "127.0.0.1"
SCRAPE_TIMEOUT_S = 60.0  # generous: a loaded 2-core CI machine runs six processes here

Sample = tuple[str, dict[str, str], float]


def served_rpcs() -> set[tuple[str, str]]:
    """(service, method) of every RPC in the generated descriptors (unary or server-streaming:
    the suite has no client-streaming RPC)."""
    found: set[tuple[str, str]] = set()
    for module in pkgutil.iter_modules(generated.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"{generated.__name__}.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            found |= {(service.full_name, m.name) for m in service.methods
                      if not m.client_streaming}
    return found


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (Suite gives process i FANLINE_METRICS_PORT
    + i). Taken below the kernel's ephemeral range, where the free ports the suite picks for
    its listeners (bound to port 0) never are."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    first, last = (10_000, low - count) if low - count > 10_000 else (1024, 65535 - count)
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(first, last)
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.fixture(scope="module")
def metrics_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """Its own suite (the shared one has no metrics ports), on one node: the metrics do not
    depend on the store mode. Auth as in the shared suite and in production."""
    env = {"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": "e2e-metrics-jwt-secret-0123456789abcdef",
           "FANLINE_PAGE_TOKEN_SECRETS": "e2e-metrics-page-secret-0123456789abcdef",
           "FANLINE_METRICS_PORT": str(free_port_block(len(PROCESSES))),
           "FANLINE_BIND_HOST": HOST, "OTEL_SDK_DISABLED": "false",
           "FANLINE_CELEBRITY_THRESHOLD": "2",  # two followers make a PULL author
           "FANLINE_TIMELINE_BUDGET_MS": "5000"}  # a slow machine must not leave sources out
    with Suite(workers=1, extra_env=env,
               log_dir=str(tmp_path_factory.mktemp("suite-logs"))) as suite:
        assert tuple(suite.procs) == PROCESSES
        yield suite


def metrics_port(suite: Suite, process: str) -> int:
    return int(suite.procs[process].fanline_env["FANLINE_METRICS_PORT"])  # type: ignore[attr-defined]


@dataclass
class Workload:
    """Calls RPCs through the suite's stubs and remembers each one's service, method and code."""

    api: Clients
    codes: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def call(self, service: str, method: str, request: Message, user: str = "", scope: str = "",
             expect: grpc.StatusCode = OK) -> Any:
        """As `user` (with `scope`); without a user, as the suite itself (internal + admin)."""
        stub = {POST: self.api.posts, FANOUT: self.api.fanout,
                TIMELINE: self.api.timeline}[service]
        metadata = self.api.as_(user, scope) if user else None
        try:
            reply = getattr(stub, method)(request, metadata=metadata, timeout=30)
            code = OK
        except grpc.RpcError as err:
            reply, code = None, err.code()  # type: ignore[attr-defined]
        assert code == expect, f"{service}/{method}: {code}, expected {expect}"
        self.codes[(service, method, code.value[0])] += 1
        return reply


def run_workload(api: Clients) -> Workload:
    """Every unary RPC at least once, several with a request that fails; fan-out to a PUSH and
    from a PULL author, a merged timeline read, a delete."""
    w = Workload(api)
    post, fanout, timeline = POST, FANOUT, TIMELINE
    author, reader, star, fan = "m-author", "m-reader", "m-star", "m-fan"
    w.call(timeline, "GetTimeline", timeline_pb2.GetTimelineRequest(user_id=reader), reader)
    for follower, followee in ((reader, author), (reader, star), (fan, star)):  # star: PULL
        w.call(fanout, "Follow", fanout_pb2.FollowRequest(follower_id=follower,
                                                          followee_id=followee), follower)
    w.call(fanout, "Follow", fanout_pb2.FollowRequest(follower_id=reader, followee_id=reader),
           reader, expect=grpc.StatusCode.INVALID_ARGUMENT)

    def create(user: str, text: str) -> post_pb2.Post:
        return w.call(post, "CreatePost", post_pb2.CreatePostRequest(author_id=user, text=text),
                      user).post

    watch = api.watch(reader)  # a live timeline: it gets both posts, then the reader leaves
    pushed, pulled, doomed = create(author, "pushed"), create(star, "pulled"), create(author, "x")
    for each in (pushed, pulled):
        api.wait_delivered(each.post_id)  # GetDelivery, as an operator, until delivered
    assert {pushed.post_id, pulled.post_id} <= set(watch.entries(3))
    watch.close()  # the server sees the stream end as CANCELLED
    w.codes[(timeline, "WatchTimeline", grpc.StatusCode.CANCELLED.value[0])] += 1
    intruder = api.timeline.WatchTimeline(timeline_pb2.WatchTimelineRequest(user_id=reader),
                                          metadata=api.as_("m-intruder"))
    with pytest.raises(grpc.RpcError) as refused:
        next(intruder)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    w.codes[(timeline, "WatchTimeline", grpc.StatusCode.PERMISSION_DENIED.value[0])] += 1
    w.call(fanout, "GetDelivery", fanout_pb2.GetDeliveryRequest(post_id=pushed.post_id),
           author)
    w.call(fanout, "GetDelivery", fanout_pb2.GetDeliveryRequest(post_id="9"), "m-operator", ADMIN,
           expect=grpc.StatusCode.NOT_FOUND)
    # Inbox (pushed) merged with the star's list (pulled): body cache misses, BatchGetPosts.
    page = w.call(timeline, "GetTimeline", timeline_pb2.GetTimelineRequest(user_id=reader),
                  reader)
    assert {e.post.post_id for e in page.entries} >= {pushed.post_id, pulled.post_id}
    w.call(timeline, "GetTimeline", timeline_pb2.GetTimelineRequest(user_id=reader, page_size=-1),
           reader, expect=grpc.StatusCode.INVALID_ARGUMENT)

    w.call(post, "GetPost", post_pb2.GetPostRequest(post_id=pushed.post_id), reader)
    w.call(post, "GetPost", post_pb2.GetPostRequest(post_id="9"), reader,
           expect=grpc.StatusCode.NOT_FOUND)
    w.call(post, "GetPost", post_pb2.GetPostRequest(post_id="x"), reader,
           expect=grpc.StatusCode.INVALID_ARGUMENT)
    w.call(post, "BatchGetPosts", post_pb2.BatchGetPostsRequest(
        post_ids=[pushed.post_id, pulled.post_id]), reader)
    w.call(post, "ListAuthorPosts", post_pb2.ListAuthorPostsRequest(author_id=author), reader)
    w.call(post, "ListAuthorPosts", post_pb2.ListAuthorPostsRequest(author_id=author,
                                                                    page_size=-1),
           reader, expect=grpc.StatusCode.INVALID_ARGUMENT)
    w.call(post, "DeletePost", post_pb2.DeletePostRequest(post_id=doomed.post_id,
                                                          author_id=reader),
           reader, expect=grpc.StatusCode.PERMISSION_DENIED)  # not theirs
    w.call(post, "DeletePost", post_pb2.DeletePostRequest(post_id=doomed.post_id,
                                                          author_id=author), author)

    w.call(fanout, "ListFollowers", fanout_pb2.ListFollowersRequest(user_id=star), reader)
    w.call(fanout, "ListFollowing", fanout_pb2.ListFollowingRequest(user_id=reader), reader)
    w.call(fanout, "GetAuthor", fanout_pb2.GetAuthorRequest(user_id=star), reader)
    w.call(fanout, "GetAuthor", fanout_pb2.GetAuthorRequest(user_id=""), reader,
           expect=grpc.StatusCode.INVALID_ARGUMENT)
    w.call(fanout, "GetFanoutStats", fanout_pb2.GetFanoutStatsRequest(), "m-operator", ADMIN)
    # The post service's own hand-offs, called as the suite (both idempotent).
    w.call(fanout, "PublishPost", fanout_pb2.PublishPostRequest(post=pushed))
    w.call(fanout, "RetractPost", fanout_pb2.RetractPostRequest(post_id=doomed.post_id,
                                                                author_id=author))
    w.call(fanout, "Unfollow", fanout_pb2.UnfollowRequest(follower_id=fan, followee_id=star), fan)
    return w


def scrape(port: int) -> list[Sample]:
    """The samples a /metrics endpoint serves now (none while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return []
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` whose labels include `labels`; None if there is none."""
    values = [value for sample_name, sample_labels, value in samples
              if sample_name == name and labels.items() <= sample_labels.items()]
    return sum(values) if values else None


def label_values(samples: list[Sample], name: str, label: str) -> set[str]:
    return {labels[label] for sample_name, labels, _ in samples
            if sample_name == name and label in labels}


Check = tuple[str, Callable[[dict[str, list[Sample]]], bool]]


def at_least(process: str, name: str, minimum: float, **labels: str) -> Check:
    def check(scrapes: dict[str, list[Sample]]) -> bool:
        found = total(scrapes[process], name, **labels)
        return found is not None and found >= minimum

    return f"{process}: {name}{labels} >= {minimum}", check


def rpc_labels(service: str, method: str, code: int) -> dict[str, str]:
    return {"rpc_service": service, "rpc_method": method, "rpc_grpc_status_code": str(code)}


def expectations(workload: Workload, partitions: int) -> list[Check]:
    checks = [at_least(SERVED_BY[service], "rpc_server_duration_milliseconds_count", calls,
                       **rpc_labels(service, method, code))
              for (service, method, code), calls in sorted(workload.codes.items())]
    created = workload.codes[(POST, "CreatePost", 0)]
    checks += [
        # Calls between services, on the caller.
        at_least("post", "rpc_client_duration_milliseconds_count", created,
                 **rpc_labels(FANOUT, "PublishPost", 0)),
        at_least("post", "rpc_client_duration_milliseconds_count", 1,
                 **rpc_labels(FANOUT, "RetractPost", 0)),
        at_least("timeline", "rpc_client_duration_milliseconds_count", 1,
                 **rpc_labels(POST, "BatchGetPosts", 0)),
        # Delivery, on the worker.
        at_least("worker-0", "fanline_inbox_writes_total", 1, fanline_job_kind="post"),
        at_least("worker-0", "fanline_posts_published_total", 1, fanline_delivery_mode="push"),
        at_least("worker-0", "fanline_posts_published_total", 1, fanline_delivery_mode="pull"),
        at_least("worker-0", "fanline_post_write_amplification_count", 1),
        at_least("worker-0", "fanline_fanout_lag_milliseconds_count", 1),
        at_least("worker-0", "fanline_queue_depth", 0),
        at_least("worker-0", "fanline_queue_pending", 0),
        at_least("worker-0", "fanline_queue_reclaimed_total", 0),
        # Reads, on the timeline.
        at_least("timeline", "fanline_timeline_duration_milliseconds_count", 1,
                 fanline_timeline_path="merged"),
        at_least("timeline", "fanline_timeline_pulled_cache_total", 1),
        at_least("timeline", "fanline_timeline_body_cache_total", 1, fanline_cache_result="miss"),
        # Live timelines.
        at_least("timeline", "fanline_watch_delay_milliseconds_count", 2),
        at_least("timeline", "fanline_watch_streams", 0),
    ]
    every = {str(p) for p in range(partitions)}
    for name in ("fanline_queue_partition_depth", "fanline_queue_partition_pending"):
        checks.append((f"worker-0: {name} for partitions {sorted(every)}",
                       lambda s, name=name: label_values(s["worker-0"], name,
                                                         "fanline_queue_partition") == every))
    return checks


def test_every_process_exports_red_and_fanout_metrics(metrics_suite: Suite) -> None:
    rpcs = served_rpcs()
    assert {service for service, _ in rpcs} == set(SERVED_BY), "which process serves it?"
    workload = run_workload(Clients.of(metrics_suite))
    called = {(service, method) for service, method, _ in workload.codes}
    assert called == rpcs, f"the workload misses {sorted(rpcs - called)}"
    assert {code for *_, code in workload.codes} - {0}, "no failing call"

    ports = {process: metrics_port(metrics_suite, process) for process in PROCESSES}
    assert len(set(ports.values())) == len(PROCESSES), ports
    checks = expectations(workload, load_settings(metrics_suite.env).queue_partitions)
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        scrapes = {process: scrape(port) for process, port in ports.items()}
        missing = [what for what, check in checks if not check(scrapes)]
        if not missing:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"after {SCRAPE_TIMEOUT_S:.0f} s, /metrics still lacks:\n  "
                        + "\n  ".join(missing))
        time.sleep(0.25)

    # Server-side series only where the service is served; health checks are not counted.
    for process, samples in scrapes.items():
        served = label_values(samples, "rpc_server_duration_milliseconds_count", "rpc_service")
        assert served <= {s for s, p in SERVED_BY.items() if p == process}, (process, served)
