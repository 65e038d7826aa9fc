"""`fanline plan`: a capacity calculator for fan-out on write, and a threshold from costs.

Push-everything figures follow the textbook arithmetic: inserts/day = posts/day x mean
followers; rates = / 86,400 (x peak factor); storage = inserts x bytes per entry (x replicas).

The threshold model. Follower counts are taken as a bounded Pareto (heavy-tailed) with the
given mean; posts are spread evenly over authors. Pulling every author at or above T:

* saves the inserts of their posts: the share e(T) of all follow edges that point at them;
* costs one extra author-list fetch per read for each pulled followee: followees/read x e(T).

Both are linear in e(T), so pure cost says "push as much as possible" when writes are the
cheaper side (push-all cost < pull-all cost) and "pull as much as possible" otherwise. The
limits then decide T: a pushed post's fan-out runs one batch after another, so the biggest
pushed author (T followers) waits T / worker rate / (1 - utilisation) for their followers to
see the post (the lag target caps T from above); and every pulled followee adds a list fetch
to each read (the budget of lists per read caps T from below).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field

from fanline.cli import count, real

SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365


def add_plan_args(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("traffic")
    t.add_argument("--posts-per-day", type=real(0, above=True), default=1_000_000,
                   help="posts created per day")
    t.add_argument("--mean-followers", type=real(0, above=True), default=500,
                   help="mean followers per account")
    t.add_argument("--reads-per-day", type=real(0, above=True), default=100_000_000,
                   help="timeline reads per day")
    t.add_argument("--followees-per-read", type=real(0, above=True), default=None,
                   help="followees a timeline read covers (default: the mean followers, since "
                        "every follow edge has one follower and one followee)")
    t.add_argument("--bytes-per-entry", type=real(0, above=True), default=150,
                   help="store memory per inbox entry (see `fanline bench cluster`)")
    t.add_argument("--replication", type=count(1), default=3, help="copies of each entry kept")
    t.add_argument("--peak-factor", type=real(1), default=5, help="peak rate over the daily mean")
    m = p.add_argument_group("threshold model")
    m.add_argument("--tail-alpha", type=real(0, above=True), default=2.0,
                   help="Pareto tail index of follower counts (smaller = heavier tail)")
    m.add_argument("--max-followers", type=real(0, above=True), default=50_000_000,
                   help="the biggest account's followers")
    m.add_argument("--worker-rate", type=real(0, above=True), default=40_000,
                   help="inbox writes/s one worker sustains (see `fanline bench engine`)")
    m.add_argument("--workers", type=count(1), default=None,
                   help="fan-out workers (default: enough for 70%% utilisation at peak)")
    m.add_argument("--lag-target-s", type=real(0, above=True), default=5.0,
                   help="longest acceptable fan-out of one pushed post")
    m.add_argument("--max-pulled-per-read", type=real(0), default=10.0,
                   help="author lists a read may merge on top of the inbox")
    m.add_argument("--write-cost", type=real(0, above=True), default=1.0, help="relative cost of one insert")
    m.add_argument("--read-cost", type=real(0, above=True), default=1.0,
                   help="relative cost of fetching one pulled list during a read")
    p.add_argument("--json", action="store_true", help="print JSON")


@dataclass(frozen=True)
class Traffic:
    posts_per_day: float = 1_000_000
    mean_followers: float = 500
    reads_per_day: float = 100_000_000
    followees_per_read: float | None = None
    bytes_per_entry: float = 150
    replication: int = 3
    peak_factor: float = 5

    @property
    def followees(self) -> float:
        return self.mean_followers if self.followees_per_read is None else \
            self.followees_per_read


@dataclass(frozen=True)
class Model:
    tail_alpha: float = 2.0
    max_followers: float = 50_000_000
    worker_rate: float = 40_000
    workers: int | None = None
    lag_target_s: float = 5.0
    max_pulled_per_read: float = 10.0
    write_cost: float = 1.0
    read_cost: float = 1.0


class BoundedPareto:
    """Follower counts on [low, high] with density ~ x^-(alpha+1); `low` solved for a mean."""

    def __init__(self, mean: float, alpha: float, high: float) -> None:
        if alpha <= 0 or mean <= 0 or high <= mean:
            raise ValueError("need alpha > 0 and 0 < mean < max followers")
        self.alpha = alpha
        self.high = high
        lo, hi = 1e-9, mean
        for _ in range(200):  # the mean grows with `low`: bisect
            mid = (lo + hi) / 2
            self.low = mid
            if self.partial_moment(1, mid) < mean:
                lo = mid
            else:
                hi = mid
        self.low = (lo + hi) / 2
        self.mean = self.partial_moment(1, self.low)

    def _norm(self) -> float:
        return self.alpha * self.low**self.alpha / (1 - (self.low / self.high) ** self.alpha)

    def partial_moment(self, k: int, t: float) -> float:
        """E[X^k ; X >= t]."""
        t = min(max(t, self.low), self.high)
        if math.isclose(k, self.alpha):
            integral = math.log(self.high / t)
        else:
            integral = (self.high ** (k - self.alpha) - t ** (k - self.alpha)) / (k - self.alpha)
        return self._norm() * integral

    def tail(self, t: float) -> float:
        """P(X >= t)."""
        return self.partial_moment(0, t)


@dataclass(frozen=True)
class Candidate:
    threshold: float  # math.inf = push everyone
    pulled_author_share: float
    pulled_edge_share: float
    inserts_per_day: float
    inserts_per_s_peak: float
    pulled_lists_per_read: float
    list_fetches_per_day: float
    utilisation_peak: float
    biggest_push_lag_s: float
    cost_per_day: float
    meets_lag: bool
    meets_reads: bool


@dataclass
class PlanResult:
    traffic: Traffic
    model: Model
    inserts_per_day: float
    inserts_per_s: float
    inserts_per_s_peak: float
    storage_per_day_bytes: float
    storage_per_day_replicated_bytes: float
    storage_per_year_replicated_bytes: float
    workers: int
    push_all_cost: float
    pull_all_cost: float
    candidates: list[Candidate] = field(default_factory=list)
    recommended: Candidate | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for c in [*out["candidates"], out["recommended"]]:
            if c and math.isinf(c["threshold"]):
                c["threshold"] = None  # JSON has no infinity: null = push everyone
        return out


def candidate_thresholds(low: float, high: float) -> list[float]:
    """1-2-5 steps from the smallest account size up to the biggest, then "push everyone"."""
    out: list[float] = []
    decade = 10.0 ** math.floor(math.log10(max(low, 1)))
    while decade < high:
        out += [m * decade for m in (1, 2, 5) if low <= m * decade < high]
        decade *= 10
    return [*out, math.inf]


def plan(traffic: Traffic, model: Model) -> PlanResult:
    inserts = traffic.posts_per_day * traffic.mean_followers
    per_s = inserts / SECONDS_PER_DAY
    peak = per_s * traffic.peak_factor
    per_day = inserts * traffic.bytes_per_entry
    workers = model.workers or max(1, math.ceil(peak / (0.7 * model.worker_rate)))
    push_all = inserts * model.write_cost
    pull_all = traffic.reads_per_day * traffic.followees * model.read_cost
    result = PlanResult(
        traffic, model, inserts, per_s, peak, per_day, per_day * traffic.replication,
        per_day * traffic.replication * DAYS_PER_YEAR, workers, push_all, pull_all)

    dist = BoundedPareto(traffic.mean_followers, model.tail_alpha, model.max_followers)
    capacity = workers * model.worker_rate
    for t in candidate_thresholds(dist.low, model.max_followers):
        edge_share = 0.0 if math.isinf(t) else dist.partial_moment(1, t) / dist.mean
        author_share = 0.0 if math.isinf(t) else dist.tail(t)
        day_inserts = inserts * (1 - edge_share)
        peak_inserts = day_inserts / SECONDS_PER_DAY * traffic.peak_factor
        rho = peak_inserts / capacity
        pulled = traffic.followees * edge_share
        fetches = traffic.reads_per_day * pulled
        biggest = min(t, model.max_followers)
        lag = math.inf if rho >= 1 else biggest / model.worker_rate / (1 - rho)
        result.candidates.append(Candidate(
            t, author_share, edge_share, day_inserts, peak_inserts, pulled, fetches, rho, lag,
            day_inserts * model.write_cost + fetches * model.read_cost,
            lag <= model.lag_target_s, pulled <= model.max_pulled_per_read))

    feasible = [c for c in result.candidates if c.meets_lag and c.meets_reads]
    writes_cheaper = push_all <= pull_all
    side = (f"pushing everything costs {_short(push_all)} units/day, pulling everything "
            f"{_short(pull_all)}")
    if feasible:
        # Costs are linear in the pulled share: go as far towards the cheaper side as the
        # limits allow.
        chosen = max(feasible, key=lambda c: c.threshold) if writes_cheaper else \
            min(feasible, key=lambda c: c.threshold)
        result.reason = (
            f"{side}: {'writes' if writes_cheaper else 'reads'} are the cheaper side, so "
            f"{'push' if writes_cheaper else 'pull'} as much as the "
            f"{'fan-out lag target' if writes_cheaper else 'read budget'} allows")
    else:
        # Nothing meets both: the lag target is the hard limit (a late post is visible to
        # every follower), so honour it and report the read cost.
        meeting_lag = [c for c in result.candidates if c.meets_lag]
        chosen = max(meeting_lag, key=lambda c: c.threshold) if meeting_lag else None
        result.reason = (f"{side}; no threshold meets both the lag target and the read budget: "
                         + ("kept the lag target, reads merge more lists than the budget"
                            if chosen else "add fan-out workers (peak exceeds capacity)"))
    result.recommended = chosen
    return result


def plan_from_args(args: argparse.Namespace) -> PlanResult:
    traffic = Traffic(args.posts_per_day, args.mean_followers, args.reads_per_day,
                      args.followees_per_read, args.bytes_per_entry, args.replication,
                      args.peak_factor)
    model = Model(args.tail_alpha, args.max_followers, args.worker_rate, args.workers,
                  args.lag_target_s, args.max_pulled_per_read, args.write_cost, args.read_cost)
    return plan(traffic, model)


def round_sig(value: float, digits: int = 2) -> float:
    if value == 0:
        return 0.0
    return round(value, -math.floor(math.log10(abs(value))) + digits - 1)


def _bytes(value: float) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def _short(value: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:,.3g}{unit}"
    return f"{value:,.3g}"


def _threshold(t: float) -> str:
    return "none" if math.isinf(t) else f"{t:,.0f}"


def format_plan(r: PlanResult) -> str:
    t, m = r.traffic, r.model
    def row(label: str, value: str, note: str = "") -> str:
        return f"  {label:<34}{value:>16}{'   ' + note if note else ''}"

    lines = [
        f"{t.posts_per_day:,.0f} posts/day x {t.mean_followers:,.0f} mean followers; "
        f"{t.reads_per_day:,.0f} reads/day x {t.followees:,.0f} followees per read",
        "",
        "Fan-out on write for everyone:",
        row("inbox inserts per day", f"{r.inserts_per_day:,.0f}"),
        row("inserts/s, mean", f"{r.inserts_per_s:,.0f}", f"~{round_sig(r.inserts_per_s):,.0f}"),
        row(f"inserts/s, peak (x{t.peak_factor:g})", f"{r.inserts_per_s_peak:,.0f}",
            f"~{round_sig(r.inserts_per_s_peak):,.0f}"),
        row(f"storage per day ({t.bytes_per_entry:g} B/entry)", _bytes(r.storage_per_day_bytes)),
        row(f"with {t.replication} replicas, per day", _bytes(r.storage_per_day_replicated_bytes)),
        row(f"with {t.replication} replicas, per year",
            _bytes(r.storage_per_year_replicated_bytes)),
        row(f"workers at {m.worker_rate:,.0f} writes/s each", f"{r.workers:,}",
            "" if m.workers else "70% busy at peak"),
        "",
        f"Thresholds (followers ~ bounded Pareto, alpha {m.tail_alpha:g}, max "
        f"{m.max_followers:,.0f}; lag target {m.lag_target_s:g}s, at most "
        f"{m.max_pulled_per_read:g} pulled lists per read):",
        f"  {'threshold':>11} {'pulled authors':>15} {'pulled edges':>13} "
        f"{'inserts/s peak':>15} {'lists/read':>11} {'biggest lag':>12}  ok",
    ]
    for c in r.candidates:
        lag = "overload" if math.isinf(c.biggest_push_lag_s) else f"{c.biggest_push_lag_s:,.1f}s"
        ok = ("yes" if c.meets_lag and c.meets_reads else
              "lag" if not c.meets_lag and c.meets_reads else
              "reads" if c.meets_lag else "both")
        mark = " <" if c is r.recommended else ""
        lines.append(
            f"  {_threshold(c.threshold):>11} {c.pulled_author_share:>15.4%} "
            f"{c.pulled_edge_share:>13.1%} {c.inserts_per_s_peak:>15,.0f} "
            f"{c.pulled_lists_per_read:>11.2f} {lag:>12}  {ok}{mark}")
    lines.append("")
    if r.recommended:
        rec = r.recommended
        lines.append(f"Recommended threshold: {_threshold(rec.threshold)} followers")
        lines.append(f"  {r.reason}.")
        lines.append(
            f"  At it: {rec.inserts_per_s_peak:,.0f} inserts/s at peak "
            f"({1 - rec.inserts_per_day / r.inserts_per_day:.1%} fewer than push-everything), "
            f"{rec.pulled_lists_per_read:.2f} pulled lists per read, biggest pushed post "
            f"delivered in ~{rec.biggest_push_lag_s:,.1f}s; "
            f"{_bytes(rec.inserts_per_day * t.bytes_per_entry * t.replication)}/day stored "
            f"with replicas.")
    else:
        lines.append(f"No threshold fits: {r.reason}.")
    return "\n".join(lines)
