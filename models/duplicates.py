"""Near-duplicate ticket detection over a bounded window of recent tickets.

A customer who writes twice about the same problem (an email, then the web form; or the
same complaint forwarded by two colleagues of one organisation) should be merged, not
worked twice. :class:`DuplicateDetector` compares each new ticket with the recent tickets
of the same customer and of the same organisation only, so unrelated customers who hit
the same outage never appear as each other's duplicates.

Shingles are word trigrams (``shingle=3`` words) of the case-folded, Unicode word tokens.
Word shingles rather than character shingles because ticket texts are short and written
in several languages: character 3-grams are shared by most texts of a language, which
raises the baseline similarity of unrelated tickets, and a text has about five times more
of them than words, which costs hashing time and memory.
Word trigrams keep word order (so "refund not received" differs from "received, not a
refund") while one edited word changes only three shingles.

Kept as one module: the shingling, the bounded window and the similarity search
are one index.
"""

from __future__ import annotations

import heapq
import re
import sys
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from datasketch import MinHash

DuplicateScope = Literal["customer", "organization"]

_WORD = re.compile(r"\w+")
# Estimates this far below the threshold are still verified exactly: with 64 permutations
# the standard error of a MinHash estimate near J = 0.6 is about 0.06, so 0.15 (2.5 sigma)
# keeps true duplicates from being rejected by an unlucky estimate.
_VERIFY_MARGIN = 0.15
# Signatures keep the lowest byte of each MinHash value (b-bit minwise hashing, Li and
# König, WWW 2010): a quarter of the memory and of the bytes compared. Two unequal values
# agree on that byte with probability 1/256, so the share of agreeing bytes is never below
# the full signatures' share: every pair the full signatures would send to the exact check
# is still sent (results do not change), plus about one pair in a few hundred more.
_SIGNATURE_DTYPE = np.uint8
# Up to this many matches are ranked as objects; more (repeated texts) as arrays.
_FEW = 16

# Scope arrays start small and double up to ``max_per_scope``: most customers have one or
# two recent tickets, and preallocating the cap for each would dominate memory.
_INITIAL_CAPACITY = 4


def _shingle_hashes(text: str, *, size: int, max_tokens: int) -> np.ndarray:
    """Sorted, unique 32-bit hashes of the word shingles of ``text``."""
    tokens = _WORD.findall(text.casefold())[:max_tokens]
    if not tokens:
        return np.empty(0, dtype=np.uint32)
    if len(tokens) <= size:
        # A text shorter than one shingle is a single shingle, so that two identical short
        # subjects ("Cannot log in") still compare as identical.
        shingles = [" ".join(tokens)]
    else:
        # The shifted slices differ in length; stopping at the shortest ends on the last
        # complete shingle.
        shifted = (tokens[i:] for i in range(size))
        shingles = list(map(" ".join, zip(*shifted, strict=False)))
    # CRC-32 is deterministic across processes (unlike ``hash``) and several times faster
    # than SHA-1; MinHash re-mixes the values, so its linearity does no harm.
    hashes = np.fromiter(map(zlib.crc32, map(str.encode, shingles)), np.uint32, len(shingles))
    return np.unique(hashes)


@dataclass(frozen=True)
class DuplicateMatch:
    """A stored ticket that looks like a near-duplicate of the checked one."""

    ticket_id: int
    similarity: float
    scope: DuplicateScope


@dataclass(slots=True)
class _Entry:
    at: float
    customer_id: int
    organization: str | None
    # The signature lives only in the scope matrices; the exact shingle set is kept once,
    # as the bytes of its sorted uint32 hashes (one object, where an array is two and
    # carries a hundred bytes of header).
    shingles: bytes
    in_customer: bool = True
    in_organization: bool = False


class _Scope:
    """Signatures of one customer's or one organisation's recent tickets, a row per ticket.

    Rows are packed (a removal moves the last row into the gap) so that one vectorised
    comparison covers the whole scope. Ticket ids are a column too: a removal finds its
    row by one scan of at most ``max_per_scope`` ids, which is rarer and cheaper than
    keeping a map from id to row for every stored ticket.
    """

    __slots__ = ("ats", "ids", "n", "signatures")

    def __init__(self, num_perm: int) -> None:
        self.n = 0
        self.ids = np.empty(_INITIAL_CAPACITY, dtype=np.int64)
        self.ats = np.empty(_INITIAL_CAPACITY, dtype=np.float64)
        self.signatures = np.empty((_INITIAL_CAPACITY, num_perm), dtype=_SIGNATURE_DTYPE)

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        # Only the used rows: the arrays grow by doubling, so up to half is spare room
        # that every recovery snapshot would otherwise carry.
        n = self.n
        return {
            "ids": self.ids[:n].copy(),
            "ats": self.ats[:n].copy(),
            "signatures": self.signatures[:n].copy(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Older snapshots hold the ids as a list (with a map from id to row) and the full
        # 32-bit signatures.
        self.ids = np.asarray(state["ids"], dtype=np.int64)
        self.n = len(self.ids)
        self.ats = state["ats"]
        self.signatures = _bbit(state["signatures"])
        if self.n == 0:  # add() grows by doubling, which needs room to start from
            self.ids = np.empty(_INITIAL_CAPACITY, dtype=np.int64)
            self.ats = np.empty(_INITIAL_CAPACITY, dtype=np.float64)
            self.signatures = np.empty(
                (_INITIAL_CAPACITY, self.signatures.shape[1]), dtype=_SIGNATURE_DTYPE
            )

    def add(self, ticket_id: int, at: float, signature: np.ndarray, cap: int) -> None:
        n = self.n
        if n == len(self.ats):
            grown = min(cap, 2 * n)
            self.ids = np.resize(self.ids, grown)
            self.ats = np.resize(self.ats, grown)
            self.signatures = np.resize(self.signatures, (grown, self.signatures.shape[1]))
        self.ids[n] = ticket_id
        self.ats[n] = at
        self.signatures[n] = signature
        self.n = n + 1

    def row(self, ticket_id: int) -> int | None:
        found = np.flatnonzero(self.ids[: self.n] == ticket_id)
        return int(found[0]) if found.size else None

    def discard(self, ticket_id: int) -> None:
        slot = self.row(ticket_id)
        if slot is None:
            return
        last = self.n - 1
        if slot != last:
            self.ids[slot] = self.ids[last]
            self.ats[slot] = self.ats[last]
            self.signatures[slot] = self.signatures[last]
        self.n = last

    def oldest(self) -> int:
        return int(self.ids[int(np.argmin(self.ats[: self.n]))])


class DuplicateDetector:
    """Finds near-duplicates of a ticket among the same customer's or organisation's recent ones.

    Similarity is the Jaccard index of word-shingle sets, estimated with MinHash signatures
    (one vectorised comparison per scope) and, by default, confirmed exactly on the stored
    shingle hashes for the few candidates near the threshold. A scope holds at most
    ``max_per_scope`` tickets, the window at most ``window`` of event time, so memory is
    bounded by the arrival rate within the window, not by history. Within a scope of a few
    hundred tickets a packed signature matrix is faster than MinHashLSH's band tables and
    needs less memory; LSH would pay off only for scopes of many thousands.

    State is plain data (numpy arrays, dicts, a heap list) and pickles; results depend only
    on the inputs and ``seed``.

    Args:
        window: How far back in event time a ticket can have duplicates.
        max_per_scope: Most tickets kept per customer and per organisation; the oldest go
            first.
        threshold: Minimum Jaccard similarity reported as a duplicate.
        num_perm: MinHash permutations (signature length).
        shingle: Words per shingle.
        seed: Seed of the MinHash permutations.
        verify: Confirm candidates on the exact shingle sets (and report the exact value).
        max_matches: Most matches returned per check.
        max_tokens: Words of a text that are considered; long quoted threads add nothing
            but cost.

    Example:
        >>> from datetime import datetime, UTC
        >>> detector = DuplicateDetector()
        >>> at = datetime(2024, 5, 1, 9, tzinfo=UTC)
        >>> text = "I was charged twice for invoice 1042 this month, please refund one charge"
        >>> detector.check_and_add(1, text, customer_id=7, organization="Acme", at=at)
        []
        >>> detector.check_and_add(2, text + " thanks", customer_id=7, organization="Acme", at=at)
        [DuplicateMatch(ticket_id=1, similarity=0.9167, scope='customer')]
    """

    def __init__(
        self,
        window: timedelta = timedelta(days=7),
        max_per_scope: int = 500,
        threshold: float = 0.6,
        num_perm: int = 64,
        shingle: int = 3,
        seed: int = 1,
        *,
        verify: bool = True,
        max_matches: int = 5,
        max_tokens: int = 400,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        if max_per_scope < 1:
            raise ValueError("max_per_scope must be at least 1")
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if shingle < 1 or num_perm < 1 or max_tokens < 1 or max_matches < 1:
            raise ValueError("shingle, num_perm, max_tokens and max_matches must be positive")
        self.window = window
        self.max_per_scope = max_per_scope
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self.seed = seed
        self.verify = verify
        self.max_matches = max_matches
        self.max_tokens = max_tokens
        self._entries: dict[int, _Entry] = {}
        self._scopes: dict[tuple[DuplicateScope, int | str], _Scope] = {}
        # (event time, ticket id) of every stored ticket, oldest first; entries of tickets
        # removed meanwhile are skipped when popped and compacted away when they pile up.
        self._by_time: list[tuple[float, int]] = []
        self._watermark = float("-inf")
        self._hasher = self._new_hasher()

    def _new_hasher(self) -> MinHash:
        # Shingles arrive already hashed (the exact check needs the same values); ``int``
        # passes them through and MinHash's own mixing decorrelates them.
        return MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=int)

    def __getstate__(self) -> dict[str, Any]:
        # The hasher is derived from (num_perm, seed); rebuilding it keeps snapshots small.
        # Entries and the time heap go as columns: a detector is snapshotted at every
        # epoch its scope sees a ticket, and pickling hundreds of small objects (each
        # with its own shingle array) cost several times more than a few arrays.
        state = self.__dict__.copy()
        del state["_hasher"]
        state["_entries"] = _entry_columns(self._entries)
        times = self._by_time
        state["_by_time"] = (
            np.fromiter((t for t, _ in times), np.float64, len(times)),
            np.fromiter((i for _, i in times), np.int64, len(times)),
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        entries, times = state["_entries"], state["_by_time"]
        if not isinstance(entries, dict):  # columns (snapshots before them hold the dict)
            state["_entries"] = _entries_from_columns(entries)
        else:  # and their shingles as arrays
            for entry in entries.values():
                if isinstance(entry.shingles, np.ndarray):
                    entry.shingles = entry.shingles.astype(np.uint32).tobytes()
        if not isinstance(times, list):
            state["_by_time"] = list(zip(times[0].tolist(), times[1].tolist(), strict=True))
        self.__dict__.update(state)
        self._hasher = self._new_hasher()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._entries

    @property
    def scope_count(self) -> int:
        """Number of customers and organisations that currently hold tickets."""
        return len(self._scopes)

    def check_and_add(
        self,
        ticket_id: int,
        text: str,
        *,
        customer_id: int,
        organization: str | None,
        at: datetime,
    ) -> list[DuplicateMatch]:
        """Return the stored near-duplicates of a ticket, then store the ticket.

        A ticket already stored is replaced (an edited description is re-checked, never
        matched with itself). Tickets without any word are neither matched nor stored.
        Naive datetimes are taken as UTC.

        Returns:
            Up to ``max_matches`` matches, most similar first (ties by ticket id). A
            ticket of the same customer is reported with scope ``customer`` even when it
            also shares the organisation.
        """
        ts = _timestamp(at)
        if ts > self._watermark:
            self._watermark = ts
            self._evict_before(ts - self.window.total_seconds())
        self.remove(ticket_id)
        shingles = _shingle_hashes(text, size=self.shingle, max_tokens=self.max_tokens)
        if shingles.size == 0:
            return []
        self._hasher.clear()
        self._hasher.update_batch(shingles.tolist())
        signature = _bbit(self._hasher.hashvalues)
        org = _organization_key(organization)

        found = self._match(("customer", customer_id), ts, signature, shingles, None)
        if org is not None:
            # A ticket in both scopes is compared once: the customer scope comes first.
            seen = found[0][0] if found else None
            found += self._match(("organization", org), ts, signature, shingles, seen)
        matches = _best_matches(found, self.max_matches)

        entry = _Entry(ts, customer_id, org, shingles.tobytes())
        self._entries[ticket_id] = entry
        self._add_to_scope(("customer", customer_id), ticket_id, ts, signature)
        if org is not None:
            entry.in_organization = True
            self._add_to_scope(("organization", org), ticket_id, ts, signature)
        heapq.heappush(self._by_time, (ts, ticket_id))
        return matches

    def remove(self, ticket_id: int) -> bool:
        """Forget a ticket (closed, deleted or merged). Returns whether it was stored."""
        entry = self._entries.pop(ticket_id, None)
        if entry is None:
            return False
        if entry.in_customer:
            self._discard_from_scope(("customer", entry.customer_id), ticket_id)
        if entry.in_organization and entry.organization is not None:
            self._discard_from_scope(("organization", entry.organization), ticket_id)
        self._compact_time_heap()
        return True

    def evict(self, before: datetime) -> int:
        """Forget every ticket older than ``before``. Returns how many were forgotten."""
        return self._evict_before(_timestamp(before))

    def _evict_before(self, cutoff: float) -> int:
        evicted = 0
        heap = self._by_time
        while heap and heap[0][0] < cutoff:
            at, ticket_id = heapq.heappop(heap)
            entry = self._entries.get(ticket_id)
            # A ticket re-added later has a newer time and a heap item of its own.
            if entry is not None and entry.at == at and self.remove(ticket_id):
                evicted += 1
        return evicted

    def _match(
        self,
        key: tuple[DuplicateScope, int | str],
        ts: float,
        signature: np.ndarray,
        shingles: np.ndarray,
        seen: np.ndarray | None,
    ) -> list[tuple[np.ndarray, np.ndarray, DuplicateScope]]:
        """The scope's tickets at or above the threshold (ids, similarities), except
        ``seen``: nothing, or one part."""
        scope = self._scopes.get(key)
        if scope is None:
            return []
        n = len(scope)
        # The share of agreeing bytes: an estimate biased up by accidental agreements,
        # which only widens the candidates for the exact check.
        estimates = _agreements(scope.signatures[:n], signature) / self.num_perm
        floor = self.threshold - _VERIFY_MARGIN if self.verify else self.threshold
        # A late ticket must not match tickets outside its own window either.
        in_window = np.abs(scope.ats[:n] - ts) <= self.window.total_seconds()
        slots = np.flatnonzero((estimates >= floor) & in_window)
        if seen is not None and slots.size:
            slots = slots[~_among(scope.ids[slots], seen)]
        if not slots.size:
            return []
        ids = scope.ids[slots]
        if self.verify:
            entries = self._entries
            similarities = _jaccard_many(shingles, [entries[o].shingles for o in ids.tolist()])
        else:
            # Without the exact check the estimate is reported: remove the bias.
            accidental = 0.5 ** (8 * scope.signatures.itemsize)
            similarities = np.maximum(0.0, (estimates[slots] - accidental) / (1 - accidental))
        keep = similarities >= self.threshold
        return [(ids[keep], similarities[keep], key[0])] if keep.any() else []

    def _add_to_scope(
        self,
        key: tuple[DuplicateScope, int | str],
        ticket_id: int,
        ts: float,
        signature: np.ndarray,
    ) -> None:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope(self.num_perm)
        while len(scope) >= self.max_per_scope:
            self._drop_from_scope(key, scope, scope.oldest())
        scope.add(ticket_id, ts, signature, self.max_per_scope)

    def _drop_from_scope(
        self, key: tuple[DuplicateScope, int | str], scope: _Scope, ticket_id: int
    ) -> None:
        # The cap of one scope must not erase the ticket from its other scope: a busy
        # organisation keeps its customers' own histories intact.
        scope.discard(ticket_id)
        entry = self._entries[ticket_id]
        if key[0] == "customer":
            entry.in_customer = False
        else:
            entry.in_organization = False
        if not (entry.in_customer or entry.in_organization):
            del self._entries[ticket_id]
            self._compact_time_heap()

    def _compact_time_heap(self) -> None:
        # Forgotten tickets leave stale heap items behind; rebuild once they dominate so the
        # heap stays proportional to what is stored even when the window is long.
        if len(self._by_time) > 2 * len(self._entries) + 64:
            self._by_time = [(e.at, tid) for tid, e in self._entries.items()]
            heapq.heapify(self._by_time)

    def _discard_from_scope(self, key: tuple[DuplicateScope, int | str], ticket_id: int) -> None:
        scope = self._scopes.get(key)
        if scope is None:
            return
        scope.discard(ticket_id)
        if not len(scope):
            del self._scopes[key]


_EntryColumns = tuple[
    np.ndarray, np.ndarray, np.ndarray, list[str | None], np.ndarray, np.ndarray, np.ndarray
]


def _entry_columns(entries: dict[int, _Entry]) -> _EntryColumns:
    """Ticket ids, times, customers, organisations, scope flags, shingle ends, shingles."""
    values = list(entries.values())
    n = len(values)
    flags = np.fromiter((e.in_customer | (e.in_organization << 1) for e in values), np.uint8, n)
    sizes = np.fromiter((len(e.shingles) // 4 for e in values), np.int64, n)
    shingles = np.frombuffer(b"".join(e.shingles for e in values), np.uint32)
    return (
        np.fromiter(entries, np.int64, n),
        np.fromiter((e.at for e in values), np.float64, n),
        np.fromiter((e.customer_id for e in values), np.int64, n),
        [e.organization for e in values],
        flags,
        np.cumsum(sizes),
        shingles,
    )


def _entries_from_columns(columns: _EntryColumns) -> dict[int, _Entry]:
    ids, ats, customers, organizations, flags, ends, shingles = columns
    data = np.ascontiguousarray(shingles, np.uint32).tobytes()
    bounds = (4 * ends).tolist()
    parts = [data[start:end] for start, end in zip([0, *bounds], bounds, strict=False)]
    return {
        tid: _Entry(at, cid, org, part, bool(flag & 1), bool(flag & 2))
        for tid, at, cid, org, flag, part in zip(
            ids.tolist(),
            ats.tolist(),
            customers.tolist(),
            organizations,
            flags.tolist(),
            parts,
            strict=True,
        )
    }


def _jaccard_many(query: np.ndarray, others: list[bytes]) -> np.ndarray:
    """Exact Jaccard index of ``query`` with each of ``others`` (sorted, unique hashes;
    the others as the bytes of their uint32 arrays).

    One pass for all candidates: texts that repeat (templates, forwarded mails) put many
    candidates above the estimate floor, and a set intersection per candidate cost more
    in numpy's per-call overhead than in the comparison itself.
    """
    if not others:
        return np.empty(0, dtype=np.float64)
    sizes = np.fromiter(map(len, others), np.int64, len(others)) // 4
    candidates = np.frombuffer(b"".join(others), np.uint32)
    found = np.searchsorted(query, candidates)
    np.minimum(found, query.size - 1, out=found)
    hits = np.concatenate(([0], np.cumsum(query[found] == candidates, dtype=np.int64)))
    ends = np.cumsum(sizes)
    common = hits[ends] - hits[ends - sizes]
    return common / (query.size + sizes - common)


def _timestamp(at: datetime) -> float:
    # Naive datetimes would otherwise be read in the machine's local zone, making results
    # depend on where the worker runs.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _organization_key(organization: str | None) -> str | None:
    if organization is None:
        return None
    key = " ".join(organization.split()).casefold()
    # Interned: every stored ticket of an organisation points at one string.
    return sys.intern(key) if key else None


def _bbit(values: np.ndarray) -> np.ndarray:
    """The lowest byte of each MinHash value (a copy, whatever the input's width)."""
    return np.asarray(values).astype(_SIGNATURE_DTYPE, copy=True)


def _agreements(rows: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """How many values of each row equal ``signature``'s.

    The equalities are packed into bits and counted a 64-bit word at a time: summing a
    boolean matrix along its short rows costs about three times more.
    """
    packed = np.packbits(rows == signature, axis=1)
    if packed.shape[1] % 8 == 0:  # whole 64-bit words
        packed = packed.view(np.uint64)
    counts = np.bitwise_count(packed)
    return counts[:, 0] if counts.shape[1] == 1 else counts.sum(axis=1)


def _among(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``pool`` (one comparison table when both are small:
    ``np.isin`` sorts, which costs more than it saves below a few thousand pairs)."""
    if values.size * pool.size <= 4096:
        return (values[:, None] == pool[None, :]).any(axis=1)
    return np.isin(values, pool)


def _best_matches(
    parts: list[tuple[np.ndarray, np.ndarray, DuplicateScope]], limit: int
) -> list[DuplicateMatch]:
    """The ``limit`` most similar, similarity rounded to 4 places (ties by ticket id).

    Repeated texts (templates, forwarded mails) can put hundreds of tickets above the
    threshold: they are ranked as arrays, and only the matches returned become objects.
    """
    if not parts:
        return []
    if sum(len(p[0]) for p in parts) <= _FEW:
        found = [
            DuplicateMatch(i, round(v, 4), scope)
            for ids, values, scope in parts
            for i, v in zip(ids.tolist(), values.tolist(), strict=True)
        ]
        return sorted(found, key=lambda m: (-m.similarity, m.ticket_id))[:limit]
    ids = np.concatenate([p[0] for p in parts])
    similarities = np.concatenate([p[1] for p in parts])
    # Python's rounding (correct to the decimal), once per distinct value.
    distinct, inverse = np.unique(similarities, return_inverse=True)
    rounded = np.array([round(v, 4) for v in distinct.tolist()])[inverse]
    best = np.lexsort((ids, -rounded))[:limit]
    scope_of = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
    return [
        DuplicateMatch(int(ids[i]), float(rounded[i]), parts[scope_of[i]][2]) for i in best.tolist()
    ]
