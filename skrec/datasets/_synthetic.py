"""Synthetic interaction data with planted co-occurrence and sequential structure."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

__all__ = ["make_interactions"]

# Fixed knobs of the generative story (kept out of the signature on purpose).
_P_TWO_TOPICS = 0.6  # share of users with two preferred topics (the others have one)
_P_IN_TOPIC = 0.8  # a non-sequential step draws from the user's topics with this probability
_N_REJECTION = 8  # rejection-sampling rounds before exact (masked) sampling
_N_WALK = 16  # steps walked along a chain past already-consumed items
_CHUNK_CELLS = 1 << 26  # users per chunk * n_items (the "consumed" boolean matrix)


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _check_real(value, name: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}; got {value!r}.")
    return float(value)


class _Catalogue:
    """Items of the synthetic world: topics, popularity and the hidden cycles."""

    def __init__(self, rng: np.random.Generator, n_items: int, n_topics: int, exponent: float):
        self.n_items = n_items
        self.item_topic = np.empty(n_items, dtype=np.int64)
        self.item_topic[rng.permutation(n_items)] = np.arange(n_items) % n_topics
        self.pop = (rng.permutation(n_items) + 1.0) ** -exponent
        by_topic = np.lexsort((rng.random(n_items), self.item_topic))  # grouped by topic
        first = np.searchsorted(self.item_topic[by_topic], np.arange(n_topics))
        last = np.append(first[1:], n_items) - 1
        nxt = np.arange(1, n_items + 1)
        nxt[last] = first  # each topic's items form a cycle, in random order
        self.succ = np.empty(n_items, dtype=np.int64)
        self.succ[by_topic] = by_topic[nxt]
        self.by_topic, self.first, self.last = by_topic, first, last
        self.cum_topic = np.cumsum(self.pop[by_topic])
        self.lo = np.where(first > 0, self.cum_topic[first - 1], 0.0)
        self.mass = self.cum_topic[last] - self.lo
        self.cum_all = np.cumsum(self.pop)
        size = last - first + 1
        slot = np.arange(int(size.max()))
        self.topic_items = by_topic[np.minimum(first[:, None] + slot, last[:, None])]
        self.topic_pop = np.where(slot < size[:, None], self.pop[self.topic_items], 0.0)

    def draw(self, rng, consumed, rows, topic):
        """Popularity draw of unconsumed items for ``rows`` (within ``topic`` if given)."""
        out = np.empty(rows.size, dtype=np.int64)
        todo = np.arange(rows.size)
        for _ in range(_N_REJECTION):
            if topic is None:
                v = rng.random(todo.size) * self.cum_all[-1]
                pos = np.searchsorted(self.cum_all, v, side="right")
                cand = np.minimum(pos, self.n_items - 1)
            else:
                tp = topic[todo]
                v = self.lo[tp] + rng.random(todo.size) * self.mass[tp]
                pos = np.searchsorted(self.cum_topic, v, side="right")
                cand = self.by_topic[np.clip(pos, self.first[tp], self.last[tp])]
            ok = ~consumed[rows[todo], cand]
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
            if todo.size == 0:
                return out
        sub = None if topic is None else topic[todo]
        out[todo] = self._masked_draw(rng, consumed, rows[todo], sub)
        return out

    def _masked_draw(self, rng, consumed, rows, topic):
        """Exact popularity draw among unconsumed items (of ``topic`` where any is left)."""
        if topic is None:
            cum = np.cumsum(self.pop[None, :] * ~consumed[rows], axis=1)
            v = rng.random(rows.size) * cum[:, -1]
            return np.minimum((cum <= v[:, None]).sum(1), self.n_items - 1)
        out = np.empty(rows.size, dtype=np.int64)
        cand = self.topic_items[topic]
        cum = np.cumsum(self.topic_pop[topic] * ~consumed[rows[:, None], cand], axis=1)
        has = cum[:, -1] > 0
        v = rng.random(rows.size) * cum[:, -1]
        pick = np.minimum((cum <= v[:, None]).sum(1), cand.shape[1] - 1)
        out[has] = cand[has, pick[has]]
        if not has.all():  # the topic is exhausted: any unconsumed item
            out[~has] = self.draw(rng, consumed, rows[~has], None)
        return out


def _simulate(rng, world, users, lengths, topics, two, strength):
    """Generate the histories of ``users``; return (rows, items, positions)."""
    users = users[np.argsort(-lengths[users], kind="stable")]  # active users form a prefix
    L = lengths[users]
    n = users.size
    consumed = np.zeros((n, world.n_items), dtype=bool)
    last = np.full((n, 2), -1, dtype=np.int64)  # last item consumed in each user topic
    utop = topics[users]
    utwo = two[users]
    rows_out, cols_out, vals_out = [], [], []
    for t in range(int(L[0])):
        a = int(np.searchsorted(-L, -t, side="right"))  # users with length > t
        rows = np.arange(a)
        slot = ((rng.random(a) < 0.5) & utwo[:a]).astype(np.int64)
        topic = utop[rows, slot]
        mode = rng.random(a)
        item = np.full(a, -1, dtype=np.int64)
        # planted transition: successor of the last item in the chosen topic
        prev = last[rows, slot]
        seq = np.flatnonzero((mode < strength) & (prev >= 0))
        if seq.size:
            cand = world.succ[prev[seq]]
            for _ in range(_N_WALK):
                used = consumed[seq, cand]
                if not used.any():
                    break
                cand[used] = world.succ[cand[used]]
            fine = ~consumed[seq, cand]
            item[seq[fine]] = cand[fine]
        # otherwise: popularity within the user's topic, else in the whole catalogue
        rest = np.flatnonzero(item < 0)
        in_topic = rng.random(rest.size) < _P_IN_TOPIC
        sel = rest[in_topic]
        if sel.size:
            item[sel] = world.draw(rng, consumed, sel, topic[sel])
        sel = rest[~in_topic]
        if sel.size:
            item[sel] = world.draw(rng, consumed, sel, None)
        consumed[rows, item] = True
        it = world.item_topic[item]
        for s in (0, 1):
            hit = it == utop[rows, s]
            last[rows[hit], s] = item[hit]
        rows_out.append(users[:a])
        cols_out.append(item)
        vals_out.append(np.full(a, t + 1, dtype=np.float64))
    return np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(vals_out)


def make_interactions(
    n_users: int = 2000,
    n_items: int = 500,
    *,
    mean_length: float = 40,
    min_length: int = 5,
    n_topics: int = 10,
    sequential_strength: float = 0.6,
    popularity_exponent: float = 1.0,
    random_state: int | np.random.RandomState | None = None,
) -> sp.csr_matrix:
    """Generate user histories with planted topic and sequential structure.

    The generative story, per user, one position at a time (vectorised over users):

    - **Topics.** Every item belongs to one of ``n_topics`` topics (balanced sizes). Every
      user prefers one or two topics (60 % of users have two).
    - **Popularity.** Items have Zipf popularity ``rank ** -popularity_exponent`` (ranks in a
      random order).
    - **Planted transitions.** Inside each topic the items form a hidden cycle (a random
      order; think of the episodes of a series). With probability ``sequential_strength`` the
      next item continues the cycle *in one of the user's topics, chosen at random*: it is the
      successor of the user's **last item of that topic**, skipping items already consumed.
      For a user with two topics that item is often two or more steps back, so the next item
      depends on the user's topics and on more than the previous item: a first-order Markov
      chain over items only captures the steps that stay in the previous item's topic, a
      model that reads the whole history can capture all of them.
    - **Otherwise** (and for the first item of a topic), a popularity-weighted item from one
      of the user's topics (probability 0.8), else a popularity-weighted item from the whole
      catalogue. This gives item co-occurrence structure (autoencoders and EASE beat
      popularity) and a popularity baseline that is not trivial.
    - No item repeats within a user.

    Parameters
    ----------
    n_users : int, default=2000
        Number of users (rows).
    n_items : int, default=500
        Number of items (columns).
    mean_length : float, default=40
        Mean number of interactions per user (>= ``min_length``). Lengths are ``min_length``
        plus a negative-binomial (gamma-Poisson, shape 2) draw, capped at ``n_items``.
    min_length : int, default=5
        Minimum number of interactions per user (<= ``n_items``).
    n_topics : int, default=10
        Number of item topics (<= ``n_items``).
    sequential_strength : float in [0, 1], default=0.6
        Probability that a step follows a planted transition.
    popularity_exponent : float >= 0, default=1.0
        Zipf exponent of item popularity (0 = uniform).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items), dtype float64
        Row ``u`` holds user ``u``'s history: the stored values are the positions ``1..len``
        (larger = later), so each row's values are a permutation of ``1..nnz``.

    Notes
    -----
    Reference hit rates at 10 with the defaults (leave-last-out split, seen items excluded,
    mean over ``random_state`` 0-4): popularity 0.07, first-order Markov chain (transition
    counts) 0.37, the same counts summed over the last three items 0.53, EASE
    (``lambda=100``) 0.55; an oracle that knows the planted rules (the successor of the last
    item of each of the user's topics, then the user's most popular topic items) reaches
    about 0.70, the headroom for a sequence model that reads the whole history.

    Examples
    --------
    >>> from skrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=50, mean_length=10, random_state=0)
    >>> X.shape
    (100, 50)
    >>> sorted(X[0].data.astype(int)) == list(range(1, X[0].nnz + 1))
    True
    """
    n_users = _check_int(n_users, "n_users", 1)
    n_items = _check_int(n_items, "n_items", 1)
    min_length = _check_int(min_length, "min_length", 1)
    n_topics = _check_int(n_topics, "n_topics", 1)
    if min_length > n_items:
        raise ValueError(f"min_length={min_length} exceeds n_items={n_items} (no repeats).")
    mean_length = _check_real(mean_length, "mean_length", min_length)
    sequential_strength = _check_real(sequential_strength, "sequential_strength", 0.0, 1.0)
    popularity_exponent = _check_real(popularity_exponent, "popularity_exponent", 0.0)
    if n_topics > n_items:
        raise ValueError(f"n_topics={n_topics} exceeds n_items={n_items}.")
    rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))

    world = _Catalogue(rng, n_items, n_topics, popularity_exponent)

    # --- users: topics and lengths ------------------------------------------------------------
    topics = np.empty((n_users, 2), dtype=np.int64)
    topics[:, 0] = rng.integers(0, n_topics, n_users)
    two = (rng.random(n_users) < _P_TWO_TOPICS) if n_topics > 1 else np.zeros(n_users, bool)
    topics[:, 1] = (topics[:, 0] + 1 + rng.integers(0, max(n_topics - 1, 1), n_users)) % n_topics
    topics[~two, 1] = topics[~two, 0]
    extra = mean_length - min_length
    lam = rng.gamma(2.0, extra / 2.0, n_users) if extra > 0 else np.zeros(n_users)
    lengths = np.minimum(min_length + rng.poisson(lam), n_items)

    # --- histories, in chunks of users so the "consumed" matrix stays small -------------------
    chunk = max(1, min(n_users, _CHUNK_CELLS // n_items))
    parts = [
        _simulate(
            rng,
            world,
            np.arange(s, min(s + chunk, n_users)),
            lengths,
            topics,
            two,
            sequential_strength,
        )
        for s in range(0, n_users, chunk)
    ]
    r, c, v = (np.concatenate(x) for x in zip(*parts))
    X = sp.csr_matrix((v, (r, c)), shape=(n_users, n_items), dtype=np.float64)
    X.sort_indices()
    return X
