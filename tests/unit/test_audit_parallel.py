"""The audit with its signature checks in worker processes reports exactly what the
one-process audit reports: the same first failure, kind, index and detail, whatever the
number of workers and wherever the batch boundaries fall. Also the audit's faster leaf
parse, its encodings cut out of the leaf and its state-map update, each against the
original they replace."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core import _sodium, merkle, vmap
from ledger.core import audit as audit_mod
from ledger.core import events as ev
from ledger.core.audit import AuditReport, BatchCheck, LeafItem, audit, check_leaves, replay
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, sign_checkpoint
from ledger.core.errors import InvalidInput
from ledger.core.note import NoteSigner
from ledger.core.rules import Context, MemoryState, apply
from ledger.parallel_verify import VerifyPool

ORIGIN = "test.example/parallel"
T0 = 1_790_000_000_000
Row = tuple[int, bytes, bytes, int]


@dataclass
class Log:
    rng: random.Random = field(default_factory=lambda: random.Random(3))
    keys: dict[str, _sodium.Signer] = field(default_factory=dict)
    entries: list[ev.Entry] = field(default_factory=list)
    state: MemoryState = field(default_factory=MemoryState)
    log_key: NoteSigner = field(init=False)

    def __post_init__(self) -> None:
        self.log_key = NoteSigner(ORIGIN, self.rng.randbytes(32))

    def key(self, actor: str) -> _sodium.Signer:
        if actor not in self.keys:
            self.keys[actor] = _sodium.Signer(self.rng.randbytes(32))
        return self.keys[actor]

    def pub(self, actor: str) -> str:
        return base64.b64encode(self.key(actor).public_key).decode()

    def event(self, index: int, kind: str, actor: str, payload: dict[str, Any],
              signer: _sodium.Signer | None = None) -> ev.SignedEvent:
        signer = signer or self.key(actor)
        body = ev.Event(kind=kind, origin=ORIGIN, nonce=self.rng.randbytes(16).hex(),
                        claimed_time=T0 + 1000 * index, signer=actor,
                        key_id=ev.actor_key_id(actor, signer.public_key), payload=payload)
        return ev.sign_event(body, signer)

    def add(self, kind: str, actor: str, payload: dict[str, Any]) -> None:
        index = len(self.entries)
        signed = self.event(index, kind, actor, payload)
        entry = ev.Entry(index, T0 + 1000 * index, signed)
        self.state.commit(apply(self.state, signed, Context(index, entry.ledger_time)))
        self.entries.append(entry)

    def access(self, index: int, actor: str, art: str = "art-1") -> dict[str, Any]:
        return {"artefact": art, "action": "view", "purpose": "p", "outcome": "success"}


def build(n: int) -> tuple[Log, list[Row]]:
    log = Log()
    log.add(ev.GENESIS, "admin", {
        "log_key": log.log_key.verifier_key, "skew_ms": 300_000, "rules": 2,
        "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
        "actor": {"id": "admin", "org": "bka", "name": "A", "roles": ["admin", "prosecutor"],
                  "public_key": log.pub("admin")}})
    log.add(ev.ACTOR_ENROL, "admin", {"id": "ex", "org": "bka", "name": "E",
                                      "roles": ["examiner"], "public_key": log.pub("ex")})
    log.add(ev.CASE_OPEN, "admin", {"id": "C1", "title": "t"})
    i = 0
    while len(log.entries) < n:
        if len(log.entries) == n // 3:  # an actor enrolled midway signs from then on
            log.add(ev.ACTOR_ENROL, "admin", {"id": "ex2", "org": "bka", "name": "F",
                                              "roles": ["examiner"], "public_key": log.pub("ex2")})
            continue
        actor = "ex2" if len(log.entries) > n // 3 and i % 2 else "ex"
        if i % 4 == 0:
            log.add(ev.ARTEFACT_REGISTER, actor, {
                "id": f"art-{i}", "case": "C1", "size": 3,
                "digests": {"sha256": hashlib.sha256(str(i).encode()).hexdigest()}})
        else:
            log.add(ev.ACCESS, actor, log.access(i, actor, f"art-{i - i % 4}"))
        i += 1
    return log, rows_of(log.entries)


def rows_of(entries: Sequence[ev.Entry]) -> list[Row]:
    out = []
    for e in entries:
        leaf = e.leaf_bytes()
        out.append((e.index, leaf, merkle.leaf_hash(leaf), e.ledger_time))
    return out


def put(rows: list[Row], entry: ev.Entry) -> None:
    """Replace a row by ``entry`` with a matching leaf hash (so only the event is wrong)."""
    rows[entry.index] = rows_of([entry])[0]


def bad_signature(log: Log, rows: list[Row], k: int) -> None:
    e = log.entries[k]
    sig = bytearray(e.signed.signature)
    sig[7] ^= 0x40
    put(rows, ev.Entry(k, e.ledger_time, ev.SignedEvent(e.signed.event, bytes(sig))))


def inline(items: Sequence[LeafItem]) -> Callable[[], Sequence[int]]:
    codes = check_leaves(items)
    return lambda: codes


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[str, BatchCheck | None]]:
    one, two = VerifyPool(1, start_after=0), VerifyPool(2, start_after=0)
    two.start(preload=("ledger.core.audit",))
    assert two.wait_ready()
    yield {"none": None, "inline": inline, "one-worker": one.check_leaves,
           "two-workers": two.check_leaves}
    one.close()
    two.close()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 50 and a window of 200, so a 700-entry log crosses many boundaries."""
    monkeypatch.setattr(audit_mod, "CHUNK", 50)
    monkeypatch.setattr(audit_mod, "AHEAD", 200)


@pytest.fixture(scope="module")
def base() -> tuple[Log, list[Row]]:
    return build(700)


def checkpoints(log: Log, sizes: Sequence[int]) -> list[tuple[int, str]]:
    leaves = [merkle.leaf_hash(e.leaf_bytes()) for e in log.entries]
    return [(s, sign_checkpoint(Checkpoint(ORIGIN, s, merkle.root(leaves[:s])), log.log_key))
            for s in sizes]


def audit_all(rows: list[Row], pools: dict[str, BatchCheck | None],
              cps: list[tuple[int, str]] | None = None) -> AuditReport:
    """The report of every verifier; they must all be equal."""
    reports = {}
    for name, verifier in pools.items():
        seen: list[int] = []
        reports[name] = (audit(iter(rows), cps or [], progress=seen.append,
                               batch_checker=verifier), seen)
    first = reports["none"]
    for name, got in reports.items():
        assert got == first, f"{name} differs from the one-process audit"
    return first[0]


def expect(report: AuditReport, kind: str, index: int) -> None:
    assert (report.ok, report.kind, report.first_bad_index) == (False, kind, index), report


# ---- the same report whatever checks the signatures --------------------------------


def test_a_clean_log_audits_ok_with_every_verifier(base: tuple[Log, list[Row]],
                                                    pools: dict[str, BatchCheck | None]) -> None:
    log, rows = base
    report = audit_all(rows, pools, checkpoints(log, [100, 350, 700]))
    assert report.ok
    assert report.entries_checked == 700


@pytest.mark.parametrize("k", [0, 1, 49, 50, 233, 234, 235, 501, 699])
def test_a_forged_signature_is_reported_at_exactly_its_index(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None], k: int) -> None:
    log, clean = base
    rows = list(clean)
    bad_signature(log, rows, k)
    report = audit_all(rows, pools, checkpoints(log, [100, 350, 700]))
    expect(report, "signature", k)
    assert report.detail.startswith(f"entry {k} is refused by rule 'signature'")
    assert report.entries_checked == k


def test_the_first_of_several_forged_signatures_is_reported(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None]) -> None:
    log, clean = base
    rows = list(clean)
    for k in (611, 377, 378, 640):
        bad_signature(log, rows, k)
    expect(audit_all(rows, pools), "signature", 377)


def test_an_earlier_failure_of_another_kind_wins_and_a_later_one_loses(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None]) -> None:
    log, clean = base
    rows = list(clean)
    bad_signature(log, rows, 400)
    idx, leaf, _, t = rows[403]
    rows[403] = (idx, leaf, bytes(32), t)  # a wrong leaf hash after it
    expect(audit_all(rows, pools), "signature", 400)
    rows[396] = (396, rows[396][1], bytes(32), rows[396][3])  # and one before it
    expect(audit_all(rows, pools), "leaf", 396)
    rows = list(clean)
    bad_signature(log, rows, 400)
    del rows[401]  # a gap right after
    expect(audit_all(rows, pools), "signature", 400)
    rows = list(clean)
    bad_signature(log, rows, 400)
    replayed = log.entries[300].signed  # the same signed event again: a nonce replay
    put(rows, ev.Entry(399, log.entries[399].ledger_time, replayed))
    expect(audit_all(rows, pools), "rule", 399)


def test_within_one_entry_the_rules_order_of_checks_is_kept(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None]) -> None:
    log, clean = base
    k = 450
    t = log.entries[k].ledger_time
    # A replayed event (a rule checked AFTER the signature) with a broken signature: the
    # signature is what is reported, as in one process.
    old = log.entries[300].signed
    sig = bytes([old.signature[0] ^ 1]) + old.signature[1:]
    rows = list(clean)
    put(rows, ev.Entry(k, t, ev.SignedEvent(old.event, sig)))
    expect(audit_all(rows, pools), "signature", k)
    # An unknown signer (checked BEFORE the signature): a key failure.
    stranger = log.event(k, ev.ACCESS, "nobody", log.access(k, "nobody"))
    rows = list(clean)
    put(rows, ev.Entry(k, t, stranger))
    expect(audit_all(rows, pools), "key", k)
    # A real actor's name with another key (the key id does not match): signature.
    other = log.event(k, ev.ACCESS, "ex", log.access(k, "ex"), signer=_sodium.Signer(b"\5" * 32))
    rows = list(clean)
    put(rows, ev.Entry(k, t, other))
    expect(audit_all(rows, pools), "signature", k)
    # The actor enrolled midway, signing before its enrolment: unknown signer.
    early = log.event(100, ev.ACCESS, "ex2", log.access(100, "ex2"))
    rows = list(clean)
    put(rows, ev.Entry(100, log.entries[100].ledger_time, early))
    expect(audit_all(rows, pools), "key", 100)


def test_leaves_that_do_not_parse_or_lie_are_reported_as_in_one_process(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None]) -> None:
    log, clean = base
    k = 333
    idx, leaf, _, t = clean[k]
    for bad_leaf in (leaf.replace(b'","', b'", "', 1), leaf[:-1], leaf + b" ",
                     log.entries[k + 1].leaf_bytes(), b'{"event":1}'):
        rows = list(clean)
        rows[k] = (idx, bad_leaf, merkle.leaf_hash(bad_leaf), t)
        report = audit_all(rows, pools)
        expect(report, "leaf", k)
        assert report.detail.startswith(f"entry {k}: ")
    rows = list(clean)
    rows[k] = (idx, leaf, merkle.leaf_hash(leaf), t + 1)  # the row's time is not the leaf's
    expect(audit_all(rows, pools), "leaf", k)
    rows = list(clean)
    rows.insert(k, clean[k - 1])  # a row repeated
    expect(audit_all(rows, pools), "leaf", k)


def test_check_leaves_codes() -> None:
    _, rows = _SMALL
    log, _ = _SMALL
    _, leaf, leaf_hash, _ = rows[3]
    key = log.keys["ex"].public_key
    assert check_leaves([(leaf, leaf_hash, key)]) == [7]
    assert check_leaves([(leaf, leaf_hash, b"")]) == [3]
    assert check_leaves([(leaf, bytes(32), key)]) == [6]
    assert check_leaves([(leaf, leaf_hash, log.keys["admin"].public_key)]) == [3]
    assert check_leaves([(leaf + b" ", leaf_hash, key)]) == [0]
    assert check_leaves([(b"\xff", merkle.leaf_hash(b"\xff"), key)]) == [1]


def test_a_forged_genesis_signature_is_reported_at_index_0(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None]) -> None:
    log, clean = base
    rows = list(clean)
    bad_signature(log, rows, 0)
    report = audit_all(rows, pools)
    expect(report, "signature", 0)
    assert "genesis signature does not verify" in report.detail


@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(forged=st.sets(st.integers(0, 699), max_size=4),
       hashes=st.sets(st.integers(0, 699), max_size=2), chunk=st.integers(1, 120),
       ahead=st.integers(1, 400))
def test_any_mix_of_failures_and_batch_sizes_gives_the_one_process_report(
        base: tuple[Log, list[Row]], pools: dict[str, BatchCheck | None],
        monkeypatch: pytest.MonkeyPatch, forged: set[int], hashes: set[int], chunk: int,
        ahead: int) -> None:
    monkeypatch.setattr(audit_mod, "CHUNK", chunk)
    monkeypatch.setattr(audit_mod, "AHEAD", max(ahead, chunk))
    log, clean = base
    rows = list(clean)
    for k in forged:
        bad_signature(log, rows, k)
    for k in hashes:
        rows[k] = (k, rows[k][1], bytes(32), rows[k][3])
    report = audit_all(rows, {k: pools[k] for k in ("none", "two-workers")})
    first = min(forged | hashes, default=None)
    if first is None:
        assert report.ok
    else:
        expect(report, "leaf" if first in hashes else "signature", first)


def test_real_batch_sizes_over_a_log_longer_than_the_window(monkeypatch: pytest.MonkeyPatch,
                                                            pools: dict[str, Any]) -> None:
    monkeypatch.undo()  # CHUNK 512, AHEAD 2048
    log, clean = build(2600)
    rows = list(clean)
    bad_signature(log, rows, 2301)
    expect(audit_all(rows, {k: pools[k] for k in ("none", "two-workers")}), "signature", 2301)
    assert audit_all(clean, {k: pools[k] for k in ("none", "two-workers")}).ok


def test_replay_gives_the_same_state_with_workers(base: tuple[Log, list[Row]],
                                                  pools: dict[str, Any]) -> None:
    log, rows = base
    one, two = replay(rows), replay(rows, pools["two-workers"])
    assert (one.size, one.records, one.written_at, one.failure) == \
        (two.size, two.records, two.written_at, two.failure)
    assert one.map.root() == two.map.root() != vmap.ZERO
    assert one.records == log.state.records


def test_a_batch_result_answers_only_for_the_exact_triple_it_checked() -> None:
    r = audit_mod._Replay(None)
    pk, msg, sig = b"k" * 32, b"message", b"s" * 64
    assert r._known(pk, msg, sig) is None
    r.current = ((pk, msg, sig), False)
    assert r._known(pk, msg, sig) is False
    assert r._known(b"o" * 32, msg, sig) is None
    assert r._known(pk, b"other", sig) is None
    assert r._known(pk, msg, b"t" * 64) is None
    r.current = ((pk, msg, sig), True)
    assert r._known(pk, msg, sig) is True


# ---- the leaf parse, the encodings cut out of the leaf, the map update --------------


def _outcome(parse: Callable[[bytes], ev.Entry], leaf: bytes) -> object:
    try:
        entry = parse(leaf)
    except InvalidInput as exc:
        return ("InvalidInput", exc.message)
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__, str(exc))
    return (entry, entry.signed.event.signing_bytes(), entry.signed.event_id,
            entry.signed.canonical_bytes())


def test_the_encodings_cut_out_of_the_leaf_are_the_events_own(
        base: tuple[Log, list[Row]]) -> None:
    assert audit_mod._PRIMABLE, "events.py no longer caches its encodings as expected"
    log, rows = base
    for (_, leaf, _, _), entry in zip(rows, log.entries, strict=True):
        fast = audit_mod._parse_leaf(leaf)
        assert "_signing_bytes" in vars(fast.signed.event)  # really cut, not computed
        assert fast == entry
        assert fast.signed.event.signing_bytes() == ev.EVENT_DOMAIN + canonical(
            entry.signed.event.to_json())
        assert fast.signed.canonical_bytes() == canonical(entry.signed.to_json())
        assert fast.signed.event_id == hashlib.sha256(canonical(entry.signed.to_json())).hexdigest()


ODD_LEAVES = [
    b"", b"{}", b"[]", b"null", b'{"event":1,"index":0,"ledger_time":1}',
    b'{"event":{},"index":0,"index":0,"ledger_time":1}',
    b'{"event":{},"index":1.0,"ledger_time":1}', b'{"event":{},"index":NaN,"ledger_time":1}',
    b'{"event":{},"index":9007199254740993,"ledger_time":1}',
    b'{"event":{},"index":true,"ledger_time":1}', b'{"event":{},"index":-1,"ledger_time":1}',
    b'{"event":{},"index":0,"ledger_time":253402300800000}',
    b'{"index":0,"event":{},"ledger_time":1}', b'{"event":{}, "index":0,"ledger_time":1}',
    b"[" * 40 + b"]" * 40, b'{"event":' + b"[" * 31 + b"]" * 31 + b',"index":0,"ledger_time":1}',
    '{"event":{"é":1},"index":0,"ledger_time":1}'.encode(), b"\xff\xfe", b'{"a":"\\ud800"}',
]


@pytest.mark.parametrize("leaf", ODD_LEAVES)
def test_odd_leaves_parse_or_fail_exactly_as_entry_from_leaf(leaf: bytes) -> None:
    assert _outcome(audit_mod._parse_leaf, leaf) == _outcome(ev.Entry.from_leaf, leaf)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_leaves_parse_or_fail_exactly_as_entry_from_leaf(data: st.DataObject) -> None:
    _, rows = _SMALL
    leaf = bytearray(rows[data.draw(st.integers(0, len(rows) - 1))][1])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(leaf) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b'{}[]",:.0123456789eE-+ \\natu\xc3\xa9\x00'))
        if op == "set":
            leaf[at] = byte
        elif op == "insert":
            leaf.insert(at, byte)
        else:
            del leaf[at]
    assert _outcome(audit_mod._parse_leaf, bytes(leaf)) == \
        _outcome(ev.Entry.from_leaf, bytes(leaf))


_SMALL = build(12)


@settings(max_examples=60, deadline=None)
@given(writes=st.lists(st.tuples(st.sampled_from(["a/1", "b/2", "nonce/x", "c/3", "d/" + "z" * 40,
                                                  "e/é"]),
                                 st.dictionaries(st.sampled_from(["x", "y"]), st.integers(-5, 5)),
                                 st.booleans()), max_size=30))
def test_the_audit_map_has_the_nodes_and_roots_of_the_state_map(
        writes: list[tuple[str, dict[str, Any], bool]]) -> None:
    ours, theirs = audit_mod._Map(), vmap.MemoryMap()
    for key, value, take_root in writes:
        ours.set(key, value)
        theirs.set(key, value)
        if take_root:
            assert ours.root() == theirs.root()
    assert ours.root() == theirs.root()
    assert ours.nodes == theirs.nodes
    assert ours.buckets == theirs.buckets
    for key in ("a/1", "zz/none"):
        assert ours.prove(key, None).path == theirs.prove(key, None).path
