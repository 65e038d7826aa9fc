"""Follower graphs for the benchmark: a seeded synthetic one, or a real one from SNAP.

The synthetic graph has two parts:

* an organic part among `users` accounts: each follows a log-normally distributed number of
  others (mean `mean_follows`), picked with Zipf weights over a random popularity ranking, so
  follower counts come out heavy-tailed the way real ones are (most accounts have a handful,
  a few have thousands);
* planted celebrities: `celebrities` accounts of `celebrity_followers`, /2, /3, ... followers.
  A share of them (`celebrity_reach`) are workload users; the rest are audience accounts that
  only follow, which is how a 20k-user run can still contain a 100k-follower account.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SNAP_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / (
    "soc-Slashdot0902.txt.gz"
)


@dataclass
class Graph:
    """`following[a]` = accounts `a` follows. Every account appears as a key."""

    source: str
    users: list[str]  # post and read in the workload
    celebrities: list[str]  # planted big accounts (they post too); empty for a real graph
    audience: list[str]  # follow only; never driven by the workload
    following: dict[str, list[str]]
    _followers: dict[str, int] | None = field(default=None, repr=False)

    @property
    def accounts(self) -> list[str]:
        return [*self.users, *self.celebrities, *self.audience]

    @property
    def edges(self) -> int:
        return sum(len(f) for f in self.following.values())

    def follower_counts(self) -> dict[str, int]:
        if self._followers is None:
            counts = dict.fromkeys(self.following, 0)
            for followees in self.following.values():
                for followee in followees:
                    counts[followee] += 1
            self._followers = counts
        return self._followers

    def followers_of(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {a: [] for a in self.following}
        for follower, followees in self.following.items():
            for followee in followees:
                out[followee].append(follower)
        return out

    def authors(self) -> list[str]:
        """Accounts that post in the workload."""
        return [*self.users, *self.celebrities]

    def big_accounts(self, threshold: int) -> list[str]:
        """Posting accounts with at least `threshold` followers (PULL under that threshold)."""
        counts = self.follower_counts()
        return [a for a in self.authors() if counts[a] >= threshold]

    def describe(self) -> dict[str, float | int | str]:
        """Follower-count distribution over the posting accounts (the ones that fan out)."""
        from fanline.bench.stats import percentile

        counts = self.follower_counts()
        posting = [counts[a] for a in self.authors()]
        following = [len(self.following[a]) for a in self.users]
        return {
            "source": self.source,
            "accounts": len(self.following),
            "users": len(self.users),
            "celebrities": len(self.celebrities),
            "audience": len(self.audience),
            "edges": self.edges,
            "followers_mean": sum(posting) / len(posting),
            "followers_p50": percentile(posting, 50),
            "followers_p99": percentile(posting, 99),
            "followers_max": max(posting),
            "following_mean": sum(following) / len(following),
            "following_p99": percentile(following, 99),
        }


def _ids(prefix: str, count: int) -> list[str]:
    # Zero-padded so lexicographic order (the store's follower order) equals numeric order.
    width = max(1, len(str(count - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(count)]


def synthetic(
    users: int = 20_000,
    mean_follows: float = 20.0,
    celebrities: int = 1,
    celebrity_followers: int = 100_000,
    celebrity_reach: float = 0.25,
    zipf: float = 0.7,
    follows_sigma: float = 1.0,
    seed: int = 1,
) -> Graph:
    """A reproducible heavy-tailed graph: the same arguments give the same graph."""
    if users < 2:
        raise ValueError("need at least 2 users")
    if not 0 <= celebrity_reach <= 1:
        raise ValueError("celebrity_reach must be within 0..1")
    rng = random.Random(seed)
    user_ids = _ids("u", users)

    # Popularity: Zipf weights over a random ranking (ids carry no popularity).
    ranked = user_ids[:]
    rng.shuffle(ranked)
    cumulative = list(itertools.accumulate((r + 1) ** -zipf for r in range(users)))
    total = cumulative[-1]

    # Following counts: log-normal with the requested mean (mu chosen so E[X] = mean).
    mu = math.log(mean_follows) - follows_sigma**2 / 2
    following: dict[str, list[str]] = {}
    for user in user_ids:
        want = min(users - 1, max(1, round(rng.lognormvariate(mu, follows_sigma))))
        chosen: dict[str, None] = {}
        attempts = 0
        while len(chosen) < want and attempts < 20 * want + 20:
            attempts += 1
            pick = ranked[bisect.bisect_left(cumulative, rng.random() * total)]
            if pick != user:
                chosen[pick] = None
        following[user] = list(chosen)

    celeb_ids = _ids("c", celebrities) if celebrities else []
    sizes = [max(1, round(celebrity_followers / (i + 1))) for i in range(celebrities)]
    from_users = round(celebrity_reach * users)
    audience_count = max((s - min(s, from_users) for s in sizes), default=0)
    audience_ids = _ids("a", audience_count) if audience_count else []
    for account in [*celeb_ids, *audience_ids]:
        following[account] = []
    for celeb, size in zip(celeb_ids, sizes, strict=True):
        core = min(size, from_users)
        for follower in rng.sample(user_ids, core):
            following[follower].append(celeb)
        for follower in rng.sample(audience_ids, size - core):
            following[follower].append(celeb)

    source = (
        f"synthetic(users={users}, mean_follows={mean_follows:g}, celebrities={celebrities}, "
        f"celebrity_followers={celebrity_followers}, reach={celebrity_reach:g}, zipf={zipf:g}, "
        f"seed={seed})"
    )
    return Graph(source, user_ids, celeb_ids, audience_ids, following)


def parse_edges(lines: Iterable[str], nodes: set[str] | None = None) -> list[tuple[str, str]]:
    """SNAP edge list lines -> (follower, followee); comments, self-loops, duplicates dropped.

    Following yourself is refused by the API, so a self-loop is not a follow; its node still
    goes into `nodes` (when given), so the account count matches the data set's."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"not an edge line: {line!r}")
        src, dst = parts[0], parts[1]
        if nodes is not None:
            nodes.update((src, dst))
        if src == dst or (src, dst) in seen:
            continue
        seen.add((src, dst))
        out.append((src, dst))
    return out


def from_snap(path: str | Path, max_edges: int | None = None) -> Graph:
    """A SNAP directed edge list (`FromNodeId<TAB>ToNodeId` = From follows To), gzip or text.

    Every node becomes a workload user `s<id>`; there are no planted celebrities: the real
    distribution's head plays that part, picked by the threshold.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        lines = itertools.islice(handle, None) if max_edges is None else _first_edges(
            handle, max_edges
        )
        nodes: set[str] = set()
        edges = parse_edges(lines, nodes)
    following: dict[str, list[str]] = {f"s{n}": [] for n in nodes}
    for src, dst in edges:
        following[f"s{src}"].append(f"s{dst}")
    users = sorted(following, key=lambda s: int(s[1:]))
    label = f"{path.name}" + (f" (first {max_edges} edges)" if max_edges else "")
    return Graph(label, users, [], [], {u: following[u] for u in users})


def _first_edges(handle: Iterable[str], limit: int) -> Iterable[str]:
    taken = 0
    for line in handle:
        if not line.startswith("#"):
            taken += 1
            if taken > limit:
                return
        yield line
