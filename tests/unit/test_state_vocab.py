"""The state vocabulary (``ledger/core/state.py``) is the one place that names the world
state's keys and records (issue #15):

* every key the rules write, in a scenario with every event kind on a version-2 ledger,
  a version-1 ledger and the test ledger the real service builds, has a known prefix and
  round-trips through its key builder;
* every record written matches its ``TypedDict``: required keys present, no unknown key,
  field values of the declared types (nested records included), and every optional field
  is written somewhere (else it is not optional but dead);
* no module of ``ledger``, ``api``, ``cli`` or ``chaincode`` other than the vocabulary
  spells a key prefix as a string literal;
* the one caching view (``ledger.store.base.CachedView``) reads each key once, and
  ``api.writes.view`` seeds it with the caller's record or returns the shared snapshot.
"""

from __future__ import annotations

import ast
import hashlib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.core import events as ev
from ledger.core import state as st
from ledger.core import vmap
from ledger.core.events import Entry
from ledger.core.policy import Caller
from ledger.core.rules import Effects, MemoryState
from ledger.store.base import CachedView
from tests.conftest import PureLedger, actor_key, b64, digests_of, log_signer

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("ledger", "api", "cli", "chaincode")
VOCABULARY = ROOT / "ledger" / "core" / "state.py"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

#: The key builder of every prefix (``HISTORY``'s takes a subject, checked apart).
BUILDERS: dict[str, Callable[[str], str]] = {
    st.ORG: st.org_key, st.ORG_ADMIN: st.org_admin_key, st.ORG_KEYS: st.org_keys_key,
    st.ACTOR: st.actor_key, st.CASE: st.case_key, st.LEGAL_BASIS: st.legal_basis_key,
    st.ARTEFACT: st.artefact_key, st.TRANSFER: st.transfer_key, st.DIGEST: st.digest_key,
    st.HISTORY: st.history_key, st.NONCE: st.nonce_key,
}


class RecordingState(MemoryState):
    """A MemoryState that keeps every write, not only the last record of each key."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, dict[str, Any]]] = []

    def commit(self, effects: Effects) -> None:
        self.written += effects.writes.items()
        super().commit(effects)


def recipient(label: str) -> str:
    raw = hashlib.sha256(label.encode()).digest() * 2
    return "age1" + "".join(_BECH32[b % 32] for b in raw[:58])


def _package(data: bytes, to_org: str) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(b"age:" + data).hexdigest(), "size": len(data) + 200,
            "format": "age-v1", "recipient": ev.org_key_id(recipient(to_org + "-2")),
            "digests": digests_of(data).as_dict()}


def version2_writes() -> list[tuple[str, dict[str, Any]]]:
    """Every event kind, and every optional field, on a version-2 ledger."""
    p = PureLedger()
    p.state = state = RecordingState()
    admin, nl, nl_admin, court = (actor_key(a) for a in ("v-admin", "v-nl", "v-nl-admin",
                                                         "v-court"))
    p.genesis(admin)
    p.org(admin, "nfi", "NL")
    p.enrol(admin, nl, "nfi", ["custodian"])
    p.enrol(admin, court, "bka", ["court", "auditor"])
    for org in ("bka", "nfi"):  # a key, then a second one that retires it
        for n in (1, 2):
            p.submit(ev.ORG_KEY, admin, {"org": org, "recipient": recipient(f"{org}-{n}")})
    p.submit(ev.ORG_KEY_REVOKE, admin, {"org": "bka", "reason": "old",
                                        "key_id": ev.org_key_id(recipient("bka-1"))})
    p.enrol(admin, nl_admin, "nfi", ["admin"])  # nfi's own admin (orgadmin/nfi)
    p.case(admin, "CASE-1", members=("nfi",))
    p.legal_basis(admin, "lb-1", "NL", "DE", case="CASE-1")
    p.register(admin, "art-1", "CASE-1")
    p.register(admin, "art-2", "CASE-1", duplicate_of="art-1")
    p.register(admin, "art-3", "CASE-1", data=b"derived", parents=["art-1"])
    p.dispatch(admin, "art-1", "nfi", "tr-1", "lb-1", seals=["S-1"],
               package=_package(b"evidence", "nfi"))
    p.submit(ev.RECEIPT, nl, {**p.receipt_payload("art-1", "tr-1"), "seals": ["S-9"],
                              "package_sha256": _package(b"evidence", "nfi")["sha256"],
                              "seal_discrepancy": "seal S-1 arrived as S-9"},
             prev=p.head("art-1"))
    p.dispatch(admin, "art-3", "nfi", "tr-2", "lb-1")
    p.receive(nl, "art-3", "tr-2", data=b"tampered", outcome="rejected")
    p.submit(ev.ACCESS, nl, {"artefact": "art-1", "action": "view", "purpose": "review",
                             "outcome": "success"})
    p.submit(ev.VERIFICATION, court, {"artefact": "art-1", "verdict": "authentic",
                                      "sha256": digests_of(b"evidence").sha256,
                                      "tree_size": p.index})
    p.submit(ev.AUTH_DENIED, court, {"actor": "v-nl", "reason": "expired certificate"})
    p.submit(ev.ACTOR_REVOKE, nl_admin, {"actor": "v-nl", "reason": "left the unit"})
    return state.written


def version1_writes() -> list[tuple[str, dict[str, Any]]]:
    """A first-release ledger: no ``rules`` in its record, no ``sha/`` index, transfers
    without seals, package or receipt extras."""
    p = PureLedger(origin="v1.example/custody")
    p.state = state = RecordingState()
    admin, nl = actor_key("v1-admin"), actor_key("v1-nl")
    p.submit(ev.GENESIS, admin, {
        "log_key": log_signer(p.origin).verifier_key, "skew_ms": p.skew_ms, "rules": 1,
        "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
        "actor": {"id": admin.actor_id, "org": "bka", "name": "Admin",
                  "roles": ["admin", "examiner", "custodian", "prosecutor"],
                  "public_key": b64(admin.signer.public_key)}})
    p.org(admin, "nfi", "NL")
    p.enrol(admin, nl, "nfi", ["custodian"])
    p.case(admin, "CASE-1", members=("nfi",))
    p.legal_basis(admin, "lb-1", "NL", "DE", case="CASE-1")
    p.register(admin, "art-1", "CASE-1")
    p.dispatch(admin, "art-1", "nfi", "tr-1", "lb-1")
    p.receive(nl, "art-1", "tr-1")
    return state.written


def service_writes(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """The writes of the ledger the real service builds on SQLite, replayed."""
    from tests.helpers.ledger_builder import build_ledger

    built = build_ledger(directory, artefacts=4)
    try:
        state = RecordingState()
        for stored in built.store.entries():
            e = Entry.from_leaf(stored.leaf)
            from ledger.core.rules import Context, apply

            state.commit(apply(state, e.signed, Context(e.index, e.ledger_time)))
        return state.written
    finally:
        built.store.close()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, dict[str, Any]]]:
    return [*version2_writes(), *version1_writes(),
            *service_writes(tmp_path_factory.mktemp("vocab"))]


# ---- keys ----------------------------------------------------------------------------


def test_every_written_key_has_a_known_prefix_and_round_trips(
        written: list[tuple[str, dict[str, Any]]]) -> None:
    seen = set()
    for key, _record in written:
        parsed = st.parse_key(key)
        assert parsed is not None, f"{key!r} is outside the state vocabulary"
        prefix, ident = parsed
        seen.add(prefix)
        assert st.kind_of(key) == prefix
        if prefix == st.LEDGER:
            assert key == st.LEDGER
            continue
        assert ident, key
        assert BUILDERS[prefix](ident) == key
        if prefix == st.HISTORY:  # a subject: an artefact's key, or a digest's
            assert ident.startswith((st.ARTEFACT, st.DIGEST_SUBJECT)), key
            sub = ident.partition("/")[2]
            assert ident in (st.artefact_subject(sub), st.digest_subject(sub))
    # The scenarios write every kind of record: a new prefix needs a scenario here.
    assert seen == {st.LEDGER, *st.PREFIXES}


def test_the_vocabulary_is_consistent() -> None:
    assert all(p.endswith("/") for p in st.PREFIXES)
    assert len(set(st.PREFIXES)) == len(st.PREFIXES)
    assert set(st.RECORDS) == {st.LEDGER, *st.PREFIXES}
    assert set(BUILDERS) == set(st.PREFIXES)
    assert (st.LEDGER, *(p for p in st.PREFIXES if p != st.NONCE)) == st.MAPPED
    for prefix in st.PREFIXES:
        assert vmap.mapped(prefix + "x") == (prefix in st.MAPPED)
    assert st.parse_key(st.LEDGER) == (st.LEDGER, "")
    for outside in ("ledgers", "gate/DE", "art", "sha256/ab", "", "/x"):
        assert st.parse_key(outside) is None
        assert st.kind_of(outside) == ""
    assert st.subject_ref(st.artefact_subject("art-1")) == "art-1"
    assert st.subject_ref(st.digest_subject("ab" * 32)) == st.digest_ref("ab" * 32)


# ---- records -------------------------------------------------------------------------


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def _mismatches(value: Any, tp: Any, where: str) -> Iterator[str]:
    """Where ``value`` is not of the declared type ``tp`` (TypedDicts checked in depth)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            yield f"{where} is not an object"
            return
        required, optional = tp.__required_keys__, tp.__optional_keys__
        yield from (f"{where} lacks {k!r}" for k in sorted(required - set(value)))
        yield from (f"{where} has unknown field {k!r}"
                    for k in sorted(set(value) - required - optional))
        hints = typing.get_type_hints(tp)
        for k in sorted(set(value) & set(hints)):
            yield from _mismatches(value[k], hints[k], f"{where}.{k}")
    elif origin in (typing.Union, types.UnionType):
        if all(list(_mismatches(value, a, where)) for a in args):
            yield f"{where} = {value!r} is none of {tp}"
    elif origin is typing.Literal:
        if value not in args:
            yield f"{where} = {value!r} is not one of {args}"
    elif origin is list:
        if not isinstance(value, list):
            yield f"{where} is not a list"
            return
        for i, item in enumerate(value):
            yield from _mismatches(item, args[0], f"{where}[{i}]")
    elif origin is dict:
        if not isinstance(value, dict):
            yield f"{where} is not an object"
            return
        for k, item in value.items():
            yield from _mismatches(item, args[1], f"{where}[{k!r}]")
    elif tp is type(None):
        if value is not None:
            yield f"{where} = {value!r} is not null"
    elif tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{where} = {value!r} is not an integer"
    elif not isinstance(value, tp):
        yield f"{where} = {value!r} is not a {tp.__name__}"


def _fields_present(value: Any, tp: Any, path: str, out: set[str]) -> None:
    """Every ``TypedDict`` field path present in ``value`` (nested records included)."""
    for arg in (tp, *typing.get_args(tp)):
        if _is_typeddict(arg) and isinstance(value, dict):
            hints = typing.get_type_hints(arg)
            for k in set(value) & set(hints):
                out.add(f"{arg.__name__}.{k}")
                _fields_present(value[k], hints[k], f"{path}.{k}", out)
        elif typing.get_origin(arg) in (list, dict) and isinstance(value, list | dict):
            items = value if isinstance(value, list) else list(value.values())
            for item in items:
                _fields_present(item, typing.get_args(arg)[-1], path, out)


def _all_fields(tp: Any, out: set[str]) -> set[str]:
    for arg in (tp, *typing.get_args(tp)):
        if _is_typeddict(arg):
            for k, hint in typing.get_type_hints(arg).items():
                if f"{arg.__name__}.{k}" not in out:
                    out.add(f"{arg.__name__}.{k}")
                    _all_fields(hint, out)
        else:
            for sub in typing.get_args(arg):
                _all_fields(sub, out)
    return out


def test_every_record_written_matches_its_typed_record(
        written: list[tuple[str, dict[str, Any]]]) -> None:
    bad = []
    for key, record in written:
        tp = st.RECORDS[st.kind_of(key)]
        bad += _mismatches(record, tp, key)
    assert not bad, "\n".join(bad[:20])


def test_every_field_of_every_record_is_written_somewhere(
        written: list[tuple[str, dict[str, Any]]]) -> None:
    """An optional (``NotRequired``) field nobody writes is dead, and a scenario that
    misses one would not check its type."""
    present: set[str] = set()
    declared: set[str] = set()
    for key, record in written:
        _fields_present(record, st.RECORDS[st.kind_of(key)], key, present)
    for tp in st.RECORDS.values():
        _all_fields(tp, declared)
    assert declared - present == set()


def test_older_records_may_lack_only_the_optional_fields(
        written: list[tuple[str, dict[str, Any]]]) -> None:
    v1 = dict(version1_writes())
    assert "rules" not in v1[st.LEDGER]
    assert not any(st.kind_of(k) == st.DIGEST for k in v1)
    tr = v1[st.transfer_key("tr-1")]
    for name in ("seals", "package", "package_received", "seal_discrepancy"):
        assert name not in tr
        assert name in st.TransferRecord.__optional_keys__


def test_the_checker_sees_a_wrong_record() -> None:
    art = dict(version2_writes())[st.artefact_key("art-1")]
    assert not list(_mismatches(art, st.ArtefactRecord, "art"))
    assert list(_mismatches({**art, "size": "64"}, st.ArtefactRecord, "art"))
    assert list(_mismatches({**art, "extra": 1}, st.ArtefactRecord, "art"))
    assert list(_mismatches({k: v for k, v in art.items() if k != "head"},
                            st.ArtefactRecord, "art"))
    assert list(_mismatches({"org": "x", "current": None, "keys": {"k": {"status": "lost"}}},
                            st.OrgKeysRecord, "orgkey"))


# ---- one place -----------------------------------------------------------------------


def literal_prefixes(source: str) -> list[tuple[int, str]]:
    """String literals (f-string pieces included, docstrings not) that begin with a key
    prefix of the vocabulary or with a digest history subject."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    starts = (*st.PREFIXES, st.DIGEST_SUBJECT)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and node.value.startswith(starts)]


def test_no_module_spells_a_key_prefix_outside_the_vocabulary() -> None:
    found = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == VOCABULARY:
                continue
            for line, text in literal_prefixes(path.read_text()):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not found, ("use the key builders and prefixes of ledger/core/state.py:\n"
                       + "\n".join(found))


def test_the_literal_check_sees_prefixes() -> None:
    sample = ('"""Keys: art/ID and tr/ID."""\n'
              'def f(x):\n    """``orgkey/ORG``"""\n'
              '    return "art/" + x, f"tr/{x}", ("hist/sha256/" + x), "an art/ key", "gate/"\n')
    assert [text for _line, text in literal_prefixes(sample)] == ["art/", "tr/", "hist/sha256/"]
    assert literal_prefixes(VOCABULARY.read_text())  # the vocabulary itself is seen


# ---- the caching view ----------------------------------------------------------------


class _Store:
    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records
        self.reads: list[str] = []

    def state(self, key: str) -> dict[str, Any] | None:
        self.reads.append(key)
        return self.records.get(key)


def test_the_cached_view_reads_each_key_once_and_keeps_its_seed() -> None:
    store = _Store({st.case_key("C"): {"id": "C"}})
    own = {"id": "me", "org": "bka", "status": "active"}
    v = CachedView(store, {st.actor_key("me"): own})  # type: ignore[arg-type]
    assert v.get(st.actor_key("me")) is own
    for _ in range(3):
        assert v.get(st.case_key("C")) == {"id": "C"}
        assert v.get(st.case_key("gone")) is None
    assert store.reads == [st.case_key("C"), st.case_key("gone")]


def test_the_api_view_is_seeded_with_the_caller_or_is_the_snapshot() -> None:
    from api.deps import CallerAt
    from api.writes import view

    store = _Store({})
    caller = Caller("me", {"id": "me", "org": "bka", "roles": ["examiner"]})
    v = view(store, caller)  # type: ignore[arg-type]
    assert isinstance(v, CachedView)
    assert v.get(st.actor_key("me")) is caller.record
    assert view(store).get(st.actor_key("me")) is None  # type: ignore[arg-type]
    assert store.reads == [st.actor_key("me")]

    snap = types.SimpleNamespace(store=store, get=lambda key: None)
    snapped = CallerAt("me", caller.record, snap)  # type: ignore[arg-type]
    assert view(store, snapped) is snap  # type: ignore[arg-type]
    assert isinstance(view(_Store({}), snapped), CachedView)  # type: ignore[arg-type]
