"""The pure audit (ledger.core.audit) over synthetic logs: no database, no clock.

Each test builds a small valid log in memory (signed events, leaves, checkpoints,
Merkle nodes, replayed state), breaks exactly one thing, and checks that the audit
reports the right kind at the right index.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from ledger.core import _sodium, merkle
from ledger.core import events as ev
from ledger.core.audit import KINDS, AuditReport, audit
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, sign_checkpoint
from ledger.core.note import NoteSigner
from ledger.core.rules import Context, MemoryState, apply

ORIGIN = "test.example/log"
T0 = 1_790_000_000_000


@dataclass
class Row:
    index: int
    leaf: bytes
    leaf_hash: bytes
    ledger_time: int


@dataclass
class Synth:
    """A valid synthetic log built event by event (the rules check every append)."""

    rng: random.Random = field(default_factory=lambda: random.Random(1))
    log_key: NoteSigner = field(init=False)
    keys: dict[str, _sodium.Signer] = field(default_factory=dict)
    entries: list[ev.Entry] = field(default_factory=list)
    state: MemoryState = field(default_factory=MemoryState)
    time: int = T0

    def __post_init__(self) -> None:
        self.log_key = NoteSigner(ORIGIN, self.rng.randbytes(32))

    def key(self, actor: str) -> _sodium.Signer:
        if actor not in self.keys:
            self.keys[actor] = _sodium.Signer(self.rng.randbytes(32))
        return self.keys[actor]

    def pub(self, actor: str) -> str:
        return base64.b64encode(self.key(actor).public_key).decode()

    def event(self, kind: str, actor: str, payload: dict[str, Any], *,
              signer: _sodium.Signer | None = None, claimed: int | None = None,
              prev: str | None = None) -> ev.SignedEvent:
        signer = signer or self.key(actor)
        body = ev.Event(kind=kind, origin=ORIGIN, nonce=self.rng.randbytes(16).hex(),
                        claimed_time=self.time if claimed is None else claimed, signer=actor,
                        key_id=ev.actor_key_id(actor, signer.public_key), payload=payload,
                        prev=prev)
        return ev.sign_event(body, signer)

    def append(self, signed: ev.SignedEvent, *, check: bool = True,
               ledger_time: int | None = None) -> ev.Entry:
        entry = ev.Entry(len(self.entries), self.time if ledger_time is None else ledger_time,
                         signed)
        if check:
            self.state.commit(apply(self.state, signed, Context(entry.index, entry.ledger_time)))
        self.entries.append(entry)
        self.time += 1000
        return entry

    def add(self, kind: str, actor: str, payload: dict[str, Any]) -> ev.Entry:
        return self.append(self.event(kind, actor, payload))

    # -- the stored artefacts an audit reads ---------------------------------------

    def rows(self) -> list[Row]:
        out = []
        for e in self.entries:
            leaf = e.leaf_bytes()
            out.append(Row(e.index, leaf, merkle.leaf_hash(leaf), e.ledger_time))
        return out

    def root(self, size: int) -> bytes:
        return merkle.root([r.leaf_hash for r in self.rows()[:size]])

    def checkpoint(self, size: int, signer: NoteSigner | None = None,
                   origin: str = ORIGIN) -> str:
        return sign_checkpoint(Checkpoint(origin, size, self.root(size)),
                               signer or self.log_key)

    def checkpoints(self, sizes: list[int] | None = None) -> list[tuple[int, str]]:
        sizes = sizes if sizes is not None else list(range(1, len(self.entries) + 1))
        return [(s, self.checkpoint(s)) for s in sizes]

    def nodes(self) -> list[tuple[int, int, bytes]]:
        frontier = merkle.Frontier.empty()
        out: list[tuple[int, int, bytes]] = []
        for r in self.rows():
            out += frontier.add_leaf(r.leaf_hash)
        return out

    def stored_state(self) -> list[tuple[str, object]]:
        return [(k, json.loads(canonical(v))) for k, v in sorted(self.state.records.items())]


def build(n_access: int = 12) -> Synth:
    s = Synth()
    s.add(ev.GENESIS, "admin", {
        "log_key": s.log_key.verifier_key, "skew_ms": 300_000, "rules": 2,
        "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
        "actor": {"id": "admin", "org": "bka", "name": "A", "roles": ["admin", "prosecutor"],
                  "public_key": s.pub("admin")}})
    s.add(ev.ACTOR_ENROL, "admin", {"id": "ex", "org": "bka", "name": "E",
                                    "roles": ["examiner"], "public_key": s.pub("ex")})
    s.add(ev.CASE_OPEN, "admin", {"id": "C1", "title": "t"})
    s.add(ev.ARTEFACT_REGISTER, "ex", {
        "id": "art-1", "case": "C1", "size": 3,
        "digests": {"sha256": hashlib.sha256(b"abc").hexdigest()}})
    for _ in range(n_access):
        s.add(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                "outcome": "success"})
    return s


def run(s: Synth, rows: list[Row] | None = None, **kw: Any) -> AuditReport:
    kw.setdefault("checkpoints", s.checkpoints())
    return audit(rows if rows is not None else s.rows(), kw.pop("checkpoints"), **kw)


def full(s: Synth, rows: list[Row] | None = None, **kw: Any) -> AuditReport:
    """Every optional input given."""
    nodes = kw.pop("nodes", s.nodes())
    return run(s, rows, stored_nodes=lambda: iter(nodes), state=kw.pop("state",
               s.stored_state()), trusted_checkpoint=kw.pop("trusted", s.checkpoint(5)), **kw)


def assert_fails(report: AuditReport, kind: str, index: int | None) -> None:
    assert not report.ok, report
    assert (report.kind, report.first_bad_index) == (kind, index), report
    assert report.detail
    assert "\n" not in report.detail
    assert report.kind in KINDS


# ---- clean logs ---------------------------------------------------------------------


def test_clean_log_with_every_input_audits_ok() -> None:
    s = build()
    report = full(s)
    assert report.ok
    assert report.kind is None
    assert report.first_bad_index is None
    assert report.entries_checked == report.tree_size == len(s.entries) == 16
    assert report.root_hex == s.root(16).hex()
    assert json.loads(json.dumps(report.to_json()))["entries_checked"] == 16


def test_entries_may_be_tuples_a_one_shot_generator_and_progress_is_reported() -> None:
    s = build()
    seen: list[int] = []
    gen = ((r.index, r.leaf, r.leaf_hash, r.ledger_time) for r in s.rows())
    report = audit(gen, iter(s.checkpoints()), progress=seen.append)
    assert report.ok
    assert seen[-1] == 16


def test_empty_log_is_ok_but_an_empty_log_with_a_checkpoint_is_truncated() -> None:
    assert audit([], []).ok
    s = build()
    assert_fails(audit([], [(3, s.checkpoint(3))]), "missing", 0)


def test_given_log_key_must_equal_the_genesis_key() -> None:
    s = build()
    assert run(s, log_verifier_key=s.log_key.verifier_key).ok
    other = NoteSigner(ORIGIN, b"\x07" * 32)
    assert_fails(run(s, log_verifier_key=other.verifier_key), "checkpoint", 0)


def test_audit_has_no_skip_switches() -> None:
    params = inspect.signature(audit).parameters
    assert not [p for p in params if p.startswith(("skip", "no_", "check_", "verify_"))]
    assert all(p.annotation != "bool" for p in params.values())


# ---- steps 1-4: entries -------------------------------------------------------------


@pytest.mark.parametrize("missing", [0, 1, 7, 15])
def test_a_gap_is_missing_at_the_first_missing_index(missing: int) -> None:
    s = build()
    rows = [r for r in s.rows() if r.index != missing]
    assert_fails(full(s, rows), "missing", missing)


def test_a_repeated_index_is_a_leaf_failure() -> None:
    s = build()
    rows = s.rows()
    assert_fails(run(s, [*rows[:5], rows[4], *rows[5:]]), "leaf", 5)


def test_every_single_byte_flip_in_every_leaf_is_caught_at_its_index() -> None:
    s = build(n_access=4)
    rows = s.rows()
    rng = random.Random(5)
    trials = 0
    for victim in range(len(rows)):
        for _ in range(10):
            pos = rng.randrange(len(rows[victim].leaf))
            leaf = bytearray(rows[victim].leaf)
            leaf[pos] ^= rng.randrange(1, 256)
            # The attacker also fixes the stored leaf hash: the leaf itself must fail.
            bad = replace(rows[victim], leaf=bytes(leaf), leaf_hash=merkle.leaf_hash(leaf))
            report = run(s, [*rows[:victim], bad, *rows[victim + 1:]])
            assert not report.ok
            assert report.first_bad_index == victim, (victim, pos, report)
            trials += 1
    assert trials == 80


def test_leaf_hash_mismatch_non_canonical_leaf_index_and_time_mismatch() -> None:
    s = build()
    rows = s.rows()
    bad_hash = replace(rows[3], leaf_hash=bytes(32))
    assert_fails(run(s, [*rows[:3], bad_hash, *rows[4:]]), "leaf", 3)
    spaced = json.dumps(json.loads(rows[3].leaf), indent=1).encode()
    loose = replace(rows[3], leaf=spaced, leaf_hash=merkle.leaf_hash(spaced))
    assert_fails(run(s, [*rows[:3], loose, *rows[4:]]), "leaf", 3)
    moved = replace(rows[4], index=3)  # leaf 4 stored at row 3
    assert_fails(run(s, [*rows[:3], moved, *rows[4:]]), "leaf", 3)
    retimed = replace(rows[3], ledger_time=rows[3].ledger_time + 1)
    assert_fails(run(s, [*rows[:3], retimed, *rows[4:]]), "leaf", 3)
    assert_fails(run(s, [*rows[:3], replace(rows[3], leaf=b"\xff\xfe")]), "leaf", 3)


def test_time_going_backwards_is_flagged_at_that_index() -> None:
    s = build(n_access=3)
    # Entry 5 gets a ledger time 1 ms before entry 4's (claimed time is within skew).
    s.append(s.event(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                       "outcome": "success"}),
             ledger_time=s.entries[-1].ledger_time - 1, check=False)
    s.add(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "q",
                            "outcome": "success"})
    assert_fails(full(s, trusted=s.checkpoint(3)), "time", 7)


def test_claimed_time_outside_the_skew_window_is_a_time_failure() -> None:
    s = build(n_access=2)
    s.append(s.event(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                       "outcome": "success"}, claimed=s.time - 7_200_000),
             check=False)
    assert_fails(run(s), "time", 6)


def test_unknown_signer_and_revoked_key_are_key_failures() -> None:
    s = build(n_access=2)
    s.append(s.event(ev.ACCESS, "mallory", {"artefact": "art-1", "action": "view",
                                            "purpose": "p", "outcome": "denied"}), check=False)
    assert_fails(run(s), "key", 6)

    s = build(n_access=2)
    s.add(ev.ACTOR_REVOKE, "admin", {"actor": "ex", "reason": "left"})
    s.append(s.event(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                       "outcome": "denied"}), check=False)
    assert_fails(run(s), "key", 7)


def test_an_event_signed_with_a_key_that_is_not_the_actors_is_a_signature_failure() -> None:
    s = build(n_access=2)
    forged = s.event(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                       "outcome": "success"},
                     signer=_sodium.Signer(b"\x09" * 32))
    s.append(forged, check=False)
    assert_fails(run(s), "signature", 6)
    # Same key id, wrong signature bytes.
    s = build(n_access=2)
    good = s.event(ev.ACCESS, "ex", {"artefact": "art-1", "action": "view", "purpose": "p",
                                     "outcome": "success"})
    s.append(ev.SignedEvent(good.event, bytes(64)), check=False)
    assert_fails(run(s), "signature", 6)


def test_a_replayed_nonce_or_broken_rule_is_a_rule_failure() -> None:
    s = build(n_access=2)
    s.append(s.entries[5].signed, check=False)  # the same signed event again
    assert_fails(run(s), "rule", 6)
    s = build(n_access=2)
    s.append(s.event(ev.ACCESS, "ex", {"artefact": "art-9", "action": "view", "purpose": "p",
                                       "outcome": "success"}), check=False)
    assert_fails(run(s), "rule", 6)


def test_first_failure_is_the_lowest_index() -> None:
    s = build()
    rows = s.rows()
    rows[9] = replace(rows[9], leaf_hash=bytes(32))
    nodes = [(lv, i, bytes(32) if (lv, i) == (1, 6) else h) for lv, i, h in s.nodes()]
    # The node (1, 6) covers leaves 12-13, above the leaf failure at 9: 9 is reported.
    assert_fails(full(s, rows, nodes=nodes), "leaf", 9)
    nodes = [(lv, i, bytes(32) if (lv, i) == (1, 2) else h) for lv, i, h in s.nodes()]
    assert_fails(full(s, rows, nodes=nodes), "node", 4)


# ---- step 6: checkpoints ------------------------------------------------------------


def test_checkpoint_with_a_wrong_root_is_named_by_size() -> None:
    s = build()
    cps = s.checkpoints()
    wrong = sign_checkpoint(Checkpoint(ORIGIN, 9, s.root(8)), s.log_key)
    cps[8] = (9, wrong)
    report = run(s, checkpoints=cps)
    assert_fails(report, "checkpoint", 8)
    assert "size 9" in report.detail


def test_checkpoint_signed_by_another_key_or_for_another_origin_fails() -> None:
    s = build()
    cps = s.checkpoints()
    cps[4] = (5, s.checkpoint(5, signer=NoteSigner(ORIGIN, b"\x01" * 32)))
    assert_fails(run(s, checkpoints=cps), "checkpoint", 4)
    other = NoteSigner("other.example/log", b"\x02" * 32)
    s2 = build()
    cps = s2.checkpoints()
    cps[2] = (3, s2.checkpoint(3, signer=other, origin="other.example/log"))
    assert_fails(run(s2, checkpoints=cps), "checkpoint", 2)


def test_checkpoint_size_column_must_match_the_note_and_increase() -> None:
    s = build()
    assert_fails(run(s, checkpoints=[(4, s.checkpoint(5))]), "checkpoint", 3)
    assert_fails(run(s, checkpoints=[(5, s.checkpoint(5)), (4, s.checkpoint(4))]),
                 "checkpoint", 4)


def test_checkpoint_beyond_the_log_is_a_truncation() -> None:
    s = build()
    rows = s.rows()
    report = run(s, rows[:10], checkpoints=s.checkpoints())
    assert_fails(report, "missing", 10)
    assert report.detail == "log truncated: checkpoint covers 11 entries but only 10 exist"


def test_checkpoints_beyond_a_bad_entry_are_not_judged() -> None:
    s = build()
    rows = s.rows()
    rows[6] = replace(rows[6], leaf_hash=bytes(32))
    assert_fails(run(s, rows), "leaf", 6)


# ---- step 7: stored nodes -----------------------------------------------------------


def test_stored_nodes_each_wrong_node_is_named_by_its_first_leaf() -> None:
    s = build()
    nodes = s.nodes()
    for k, (lv, i, _h) in enumerate(nodes):
        bad = [*nodes[:k], (lv, i, bytes(32)), *nodes[k + 1:]]
        report = run(s, stored_nodes=lambda bad=bad: iter(bad))
        assert_fails(report, "leaf" if lv == 0 else "node", i << lv)


def test_missing_and_extra_stored_nodes() -> None:
    s = build()
    nodes = s.nodes()
    assert_fails(run(s, stored_nodes=lambda: iter([n for n in nodes if n[:2] != (2, 1)])),
                 "node", 4)
    extra = [*nodes, (0, 16, bytes(32))]
    assert_fails(run(s, stored_nodes=lambda: iter(extra)), "missing", 16)


# ---- step 8: state ------------------------------------------------------------------


def test_state_must_equal_the_replayed_state() -> None:
    s = build()
    stored = s.stored_state()
    changed = [(k, {**v, "custodian": "evil"} if k == "art/art-1" else v)  # type: ignore[dict-item]
               for k, v in stored]
    report = run(s, state=changed)
    assert_fails(report, "state", 3)
    assert "art/art-1" in report.detail
    assert_fails(run(s, state=[kv for kv in stored if kv[0] != "case/C1"]), "state", 2)
    assert_fails(run(s, state=[*stored, ("zzz/extra", {})]), "state", None)
    assert_fails(run(s, state=[(k, "not json" if k == "ledger" else v) for k, v in stored]),
                 "state", 0)


# ---- step 9: trusted checkpoint -----------------------------------------------------


def test_trusted_checkpoint_catches_a_rebuilt_and_resigned_log() -> None:
    s = build()
    trusted = s.checkpoint(10)
    assert run(s, trusted_checkpoint=trusted).ok
    # The operator drops entry 7 and re-appends the rest: every event still verifies.
    rebuilt = Synth(rng=random.Random(1))
    rebuilt.log_key = s.log_key
    rebuilt.keys = s.keys
    for e in s.entries[:7] + s.entries[8:]:
        rebuilt.append(e.signed)
    assert full(rebuilt, trusted=rebuilt.checkpoint(10)).ok
    assert_fails(full(rebuilt, trusted=trusted), "consistency", None)


def test_trusted_checkpoint_from_another_key_or_beyond_the_log() -> None:
    s = build()
    foreign = s.checkpoint(5, signer=NoteSigner(ORIGIN, b"\x05" * 32))
    assert_fails(run(s, trusted_checkpoint=foreign), "consistency", None)
    big = build(n_access=20).checkpoint(20)  # same log key and origin, longer log
    assert_fails(run(s, trusted_checkpoint=big), "missing", 16)


def test_packed_tree_serves_proofs_like_a_node_dict() -> None:
    from ledger.core.audit import _Tree, _TreeMapping

    tree = _Tree()
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(37)]
    for h in hashes:
        tree.add_leaf(h)
    nodes = dict(((lv, i), h) for lv, i, h in _frontier_nodes(hashes))
    mapping = _TreeMapping(tree)
    assert dict(mapping) == nodes
    for size in range(38):
        assert tree.root(size) == merkle.root(hashes[:size])
    assert merkle.consistency_proof(13, 37, mapping) == merkle.consistency_proof(13, 37, nodes)
    assert sum(len(level) for level in tree.levels) == 32 * len(nodes)  # packed: 32 B/node


def _frontier_nodes(hashes: list[bytes]) -> Iterator[tuple[int, int, bytes]]:
    f = merkle.Frontier.empty()
    for h in hashes:
        yield from f.add_leaf(h)
