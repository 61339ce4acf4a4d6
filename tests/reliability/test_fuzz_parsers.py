"""Fuzzing the parsers that take input from outside (issue #14, part 6).

Targets: the event decoder (``SignedEvent.from_bytes``/``from_json``, ``Entry.from_leaf``,
``verify_event``), the bundle parser and verifier (``Bundle.from_json`` +
``verify_bundle``), and the signed-note / checkpoint parsers (``split_note``,
``open_note``, ``parse_verifier_key``, ``Checkpoint.parse``, ``verify_checkpoint``,
``verify_cosignatures``, ``cosignature_timestamp``).

Inputs are arbitrary bytes and text, arbitrary JSON, and — where most bugs hide —
MUTATIONS of real, valid documents from a small ledger (a keyed value replaced by any
JSON, keys dropped or added, list items dropped or repeated, strings cut or bit-flipped,
base64 and hex payloads mutated at the byte level, integers pushed to the edges, note
lines repeated, dropped or swapped). The property: nothing but the ledger's own errors
(:class:`ledger.core.errors.LedgerError` subclasses) ever comes out.

``CUSTODY_FUZZ_EXAMPLES`` sets the examples per target (default 200); the recorded run
in docs/reliability.md used 10,000.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core import events as ev
from ledger.core.bundle import Bundle, verify_bundle
from ledger.core.canonical import parse
from ledger.core.checkpoint import (
    Checkpoint,
    add_cosignature,
    cosign,
    cosignature_timestamp,
    cosignature_verifier_key,
    verify_checkpoint,
    verify_cosignatures,
)
from ledger.core.errors import LedgerError
from ledger.core.note import NoteVerifier, open_note, parse_verifier_key, split_note
from tests.conftest import seed_of
from tests.reliability import world as W

EXAMPLES = int(os.environ.get("CUSTODY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
WITNESS = "witness.test.example/w1"
#: examples run per target (printed, for the record)
COUNTS: dict[str, int] = {}

pytestmark = pytest.mark.timeout(3600)


class Seeds:
    """Valid documents to mutate. A plain class, not a dataclass: Hypothesis prints the
    arguments of a failing example, and would print every field of a dataclass."""

    def __init__(self, signed_events: tuple[dict[str, Any], ...], leaves: tuple[bytes, ...],
                 public_keys: dict[str, bytes], bundles: tuple[dict[str, Any], ...],
                 bundle_bytes: bytes, evidence_sha256: str, note: str, cosigned_note: str,
                 cosignature: str, witness_key: str) -> None:
        self.signed_events = signed_events
        self.leaves = leaves
        self.public_keys = public_keys
        self.bundles = bundles
        self.bundle_bytes = bundle_bytes
        self.evidence_sha256 = evidence_sha256
        self.note = note
        self.cosigned_note = cosigned_note
        self.cosignature = cosignature
        self.witness_key = witness_key

    def __repr__(self) -> str:
        return "Seeds(<valid documents from a small ledger>)"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeds]:
    """Valid documents from a real ledger with a cross-border transfer."""
    from ledger.store.sql import SqlStore

    folder: Path = tmp_path_factory.mktemp("fuzz-seeds")
    url = f"sqlite:///{folder / 'ledger.db'}"
    W.build(url)
    store = SqlStore.open(url, signer=W.signer(), clock=W.now_ms)
    try:
        svc = W.custody(store)
        tr = svc.dispatch(W.key("admin"), artefact=W.BASE_ARTEFACT, to_org="nfi",
                          purpose="analysis", legal_basis=W.LEGAL_BASIS).result["transfer"]
        svc.receive(W.key("nl-cust"), transfer=tr, digests=W.BASE_DIGESTS)
        svc.access(W.key("nl-cust"), artefact=W.BASE_ARTEFACT, action="view", purpose="fuzz")
        leaves = tuple(e.leaf for e in store.entries())
        events = tuple(ev.Entry.from_leaf(leaf).signed.to_json() for leaf in leaves)
        bundle, faults = store.bundle(artefact_id=W.BASE_ARTEFACT)
        assert not faults
        by_sha, _ = store.bundle(sha256=W.BASE_DIGESTS.sha256)
        note = store.latest_checkpoint()
        assert note is not None
    finally:
        store.close()
    result = verify_bundle(bundle, log_key=W.log_key(), evidence_sha256=W.BASE_DIGESTS.sha256)
    assert result.verdict == "authentic", result
    wseed = seed_of("witness:" + WITNESS)
    line = cosign(note, WITNESS, wseed, 1_790_000_000)
    from ledger.core import _sodium

    wkey = cosignature_verifier_key(WITNESS, _sodium.Signer(wseed).public_key)
    cosigned = add_cosignature(note, line)
    assert verify_cosignatures(cosigned, [wkey], 1) == [WITNESS]
    keys = {a: W.key(a).signer.public_key for a in W.ACTORS}
    yield Seeds(events, leaves, keys, (bundle.to_json(), by_sha.to_json()),
                bundle.to_bytes(), W.BASE_DIGESTS.sha256, note, cosigned, line, wkey)
    print("\nfuzz examples per target: " + ", ".join(f"{k} {v}" for k, v in COUNTS.items()))


def count(target: str) -> None:
    COUNTS[target] = COUNTS.get(target, 0) + 1


def only_ledger_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a LedgerError is a fine answer, anything else escapes (a bug)."""
    try:
        return fn(*args, **kwargs)
    except LedgerError:
        return None


# ---- mutations ---------------------------------------------------------------------------
# Mutations are driven by a seeded ``random.Random`` (the seed is Hypothesis's draw), not by
# interactive draws: the same seed gives the same input, so a failure names its seed.

json_scalars = (st.none() | st.booleans() | st.integers() |
                st.integers(min_value=-(2**70), max_value=2**70) |
                st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
EDGE_INTS = (-1, 0, 1, 2**31, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63), 10**30)
ODD_CHARS = ("", " ", "\r", "\t", "\x00", "\x7f", "—", "\u2028", "\ufeff", "\ud800", "é",
             "+", "\n", "\n\n", "\"", "\\", "=", "0", "f", "A")
_HEX = re.compile(r"[0-9a-f]+")
Rng = random.Random


def random_text(rng: Rng) -> str:
    return "".join(rng.choice(ODD_CHARS) if rng.random() < 0.3 else chr(rng.randrange(32, 0x2FF))
                   for _ in range(rng.randrange(0, 12)))


def random_json(rng: Rng, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(EDGE_INTS)
    if kind == 3:
        return rng.randrange(-1000, 1000)
    if kind == 4:
        return rng.choice([0.5, -0.0, 1e300, 1.0, 2.5e-308])
    if kind in (5, 6):
        return random_text(rng)
    if kind == 7:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {random_text(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _mutate_str(rng: Rng, value: str) -> str:
    op = rng.randrange(8)
    if op == 0:  # cut
        return value[:rng.randrange(len(value) + 1)]
    if op == 1 and value:  # flip a bit of one character
        i = rng.randrange(len(value))
        return value[:i] + chr(ord(value[i]) ^ (1 << rng.randrange(8))) + value[i + 1:]
    if op == 2:  # insert odd characters
        i = rng.randrange(len(value) + 1)
        return value[:i] + random_text(rng) + value[i:]
    if op == 3 and len(value) >= 8:  # base64: mutate the decoded bytes
        try:
            raw = bytearray(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raw = bytearray()
        if raw:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.5:
                raw = raw[:rng.randrange(len(raw) + 1)]
            return base64.b64encode(bytes(raw)).decode()
    if op == 4 and _HEX.fullmatch(value):  # hex: flip one digit, or change the length
        i = rng.randrange(len(value))
        digit = "0123456789abcdef"[(int(value[i], 16) + rng.randrange(1, 16)) % 16]
        return value[:i] + digit + value[i + 1:] + rng.choice(["", "", "0", "00"])
    if op == 5:
        return value.upper()
    if op == 6:
        return value + value
    return random_text(rng)


def mutate(rng: Rng, value: Any, depth: int = 0) -> Any:
    """One random mutation somewhere inside ``value`` (a JSON document)."""
    if depth > 12 or rng.randrange(12) == 0:
        return random_json(rng)
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        out = dict(value)
        op = rng.randrange(6)
        if op == 0:
            del out[key]
        elif op == 1:
            out[random_text(rng)] = random_json(rng)
        else:
            out[key] = mutate(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        out_list = list(value)
        op = rng.randrange(5)
        if op == 0:
            del out_list[i]
        elif op == 1:
            out_list.insert(i, value[i])
        elif op == 2:
            j = rng.randrange(len(value))
            out_list[i], out_list[j] = out_list[j], out_list[i]
        else:
            out_list[i] = mutate(rng, value[i], depth + 1)
        return out_list
    if isinstance(value, bool) or value is None:
        return random_json(rng)
    if isinstance(value, int):
        return rng.choice([rng.choice(EDGE_INTS), value + rng.randrange(-3, 4),
                           random_json(rng)])
    if isinstance(value, str):
        return _mutate_str(rng, value)
    return random_json(rng)


def mutated(rng: Rng, value: Any) -> Any:
    for _ in range(rng.randrange(1, 4)):
        value = mutate(rng, value)
    return value


def mutate_bytes(rng: Rng, raw: bytes) -> bytes:
    out = bytearray(raw)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(4)
        i = rng.randrange(max(1, len(out)))
        if op == 0 and out:
            out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i:i] = rng.randbytes(rng.randrange(1, 7))
        elif op == 2:
            del out[i:i + rng.randrange(1, 17)]
        else:
            out = out[:i]
    return bytes(out)


def mutate_text(rng: Rng, text: str) -> str:
    """Line- and character-level mutations of a signed note."""
    for _ in range(rng.randrange(1, 4)):
        lines = text.split("\n")
        op = rng.randrange(7)
        k = rng.randrange(len(lines))
        if op == 0:
            lines.insert(k, lines[k])
        elif op == 1:
            del lines[k]
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[k], lines[j] = lines[j], lines[k]
        elif op == 3:
            lines[k] = re.sub(r"\d+", lambda _m: str(rng.choice(
                [*EDGE_INTS, rng.randrange(-10**6, 10**6)])), lines[k], count=1)
        elif op == 4:
            lines[k] = _mutate_str(rng, lines[k])
        elif op == 5:
            lines.insert(k, random_text(rng))
        else:
            lines[k] = lines[k] + rng.choice(ODD_CHARS)
        text = "\n".join(lines)
    return text


seeds_st = st.integers(min_value=0, max_value=2**64 - 1)


# ---- the event decoder ------------------------------------------------------------------


def _decode_event(raw: bytes | str, keys: dict[str, bytes]) -> None:
    signed = only_ledger_errors(ev.SignedEvent.from_bytes, raw)
    if signed is not None:
        assert isinstance(signed, ev.SignedEvent)
        key = keys.get(signed.event.signer, b"\x00" * 32)
        only_ledger_errors(ev.verify_event, signed, key)
        try:  # an accepted event has an id: the API's group commit computes it unguarded
            _ = signed.event_id, signed.canonical_bytes()
        except LedgerError as exc:
            raise AssertionError(f"the decoder accepted an event that has no canonical form "
                                 f"(so no event id): {exc}") from exc


@FUZZ
@given(raw=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_event_decoder_on_arbitrary_bytes(seeds: Seeds, raw: bytes) -> None:
    count("event-bytes")
    _decode_event(raw, seeds.public_keys)
    only_ledger_errors(ev.Entry.from_leaf, raw)


@FUZZ
@given(seed=seeds_st)
def test_event_decoder_on_mutated_events(seeds: Seeds, seed: int) -> None:
    count("event-mutated")
    rng = Rng(seed)
    doc = mutated(rng, rng.choice(seeds.signed_events))
    _decode_event(json.dumps(doc).encode(), seeds.public_keys)
    only_ledger_errors(ev.SignedEvent.from_json, doc)


@FUZZ
@given(seed=seeds_st)
def test_leaf_decoder_on_mutated_leaves(seeds: Seeds, seed: int) -> None:
    count("leaf-mutated")
    rng = Rng(seed)
    leaf = rng.choice(seeds.leaves)
    if rng.random() < 0.5:
        raw = mutate_bytes(rng, leaf)
    else:
        raw = json.dumps(mutated(rng, json.loads(leaf)), separators=(",", ":")).encode()
    for check in (True, False):
        entry = only_ledger_errors(ev.Entry.from_leaf, raw, check_canonical=check)
        if entry is not None:
            assert isinstance(entry, ev.Entry)
            only_ledger_errors(entry.leaf_bytes)


# ---- the bundle parser and verifier --------------------------------------------------------


def _bundle(raw: bytes | Any, seeds: Seeds, *, from_bytes: bool) -> None:
    doc = only_ledger_errors(parse, raw) if from_bytes else raw
    if doc is None and from_bytes:
        return
    bundle = only_ledger_errors(Bundle.from_json, doc)
    if bundle is None:
        return
    assert isinstance(bundle, Bundle)
    for sha in (None, seeds.evidence_sha256):
        result = only_ledger_errors(verify_bundle, bundle, log_key=W.log_key(),
                                    evidence_sha256=sha)
        if result is not None:
            only_ledger_errors(result.to_json)
    only_ledger_errors(verify_bundle, bundle, log_key=W.log_key(),
                       witnesses=[seeds.witness_key], quorum=1)


@FUZZ
@given(raw=st.binary(max_size=600) | json_values.map(lambda v: json.dumps(v).encode()))
def test_bundle_parser_on_arbitrary_input(seeds: Seeds, raw: bytes) -> None:
    count("bundle-arbitrary")
    _bundle(raw, seeds, from_bytes=True)


@FUZZ
@given(seed=seeds_st)
def test_bundle_parser_on_mutated_bundles(seeds: Seeds, seed: int) -> None:
    count("bundle-mutated")
    rng = Rng(seed)
    if rng.randrange(4) == 0:
        _bundle(mutate_bytes(rng, seeds.bundle_bytes), seeds, from_bytes=True)
    else:
        _bundle(mutated(rng, rng.choice(seeds.bundles)), seeds, from_bytes=False)


# ---- signed notes and checkpoints ---------------------------------------------------------


def _note(text: Any, seeds: Seeds) -> None:
    only_ledger_errors(split_note, text)
    verifier = NoteVerifier.from_key(W.log_key())
    only_ledger_errors(open_note, text, [verifier])
    only_ledger_errors(verify_checkpoint, text, W.log_key())
    only_ledger_errors(verify_cosignatures, text, [seeds.witness_key], 1)
    if isinstance(text, str):
        only_ledger_errors(Checkpoint.parse, text)
        body = text.split("\n\n", 1)[0] + "\n"
        only_ledger_errors(Checkpoint.parse, body)
        for line in text.split("\n"):
            only_ledger_errors(cosignature_timestamp, line)
        only_ledger_errors(parse_verifier_key, text.strip())
        only_ledger_errors(verify_checkpoint, seeds.note, text.strip())


@FUZZ
@given(text=st.text(max_size=400))
def test_note_parsers_on_arbitrary_text(seeds: Seeds, text: str) -> None:
    count("note-arbitrary")
    _note(text, seeds)


@FUZZ
@given(seed=seeds_st)
def test_note_parsers_on_mutated_notes(seeds: Seeds, seed: int) -> None:
    count("note-mutated")
    rng = Rng(seed)
    base = rng.choice([seeds.note, seeds.cosigned_note, seeds.cosignature, seeds.witness_key,
                       W.log_key()])
    _note(mutate_text(rng, base), seeds)


@FUZZ
@given(seed=seeds_st)
def test_checkpoint_against_mutated_keys(seeds: Seeds, seed: int) -> None:
    """The TRUSTED side mutated too: a pinned log key or witness key that is malformed."""
    count("keys-mutated")
    rng = Rng(seed)
    log_key = mutate_text(rng, W.log_key())
    witness = mutate_text(rng, seeds.witness_key)
    only_ledger_errors(verify_checkpoint, seeds.cosigned_note, log_key)
    only_ledger_errors(verify_cosignatures, seeds.cosigned_note, [witness],
                       rng.randrange(-1, 4))
    only_ledger_errors(NoteVerifier.from_key, log_key)


# ---- findings (each was found by the fuzzers above; fixed in the code they name) --------


def _event_with(seeds: Seeds, value: str) -> bytes:
    """A well-formed signed event whose payload's ``purpose`` is the raw JSON ``value``."""
    signed = next(ev.SignedEvent.from_json(e) for e in seeds.signed_events
                  if e["event"]["kind"] == ev.ACCESS)
    payload = {**signed.event.payload, "purpose": "PURPOSE"}
    body = json.dumps({"event": {**signed.event.to_json(), "payload": payload},
                       "sig": base64.b64encode(signed.signature).decode()})
    return body.replace('"PURPOSE"', value).encode()


#: JSON the strict parser accepts but that has no RFC 8785 form: a lone surrogate (not
#: Unicode text), integers beyond +-(2**53 - 1), a number that overflows to infinity.
UNENCODABLE = ('"\\ud800"', '"a\\udfff"', str(2**63), str(-(2**53)), "1e400")


@pytest.mark.parametrize("value", UNENCODABLE)
def test_finding_the_event_decoder_refuses_what_it_cannot_encode(seeds: Seeds,
                                                                  value: str) -> None:
    """Found by test_event_decoder_on_mutated_events: ``SignedEvent.from_bytes``
    accepted an event whose payload holds a lone surrogate or an integer beyond 2**53,
    and its ``event_id`` (the canonical encoding) raised afterwards. The decoder must
    refuse it (RFC 8785 takes I-JSON only)."""
    with pytest.raises(LedgerError):  # today: accepted; its event_id raises afterwards
        ev.SignedEvent.from_bytes(_event_with(seeds, value))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_finding_group_commit_survives_an_unencodable_event(tmp_path: Path) -> None:
    """Such an event reaching the API's group committer (``POST /v1/events`` parses with
    the ledger's own parser) killed the committer thread: computing its event id raised
    outside any handler, so that request and EVERY later write hung forever. One bad
    event must fail alone; the next write must still commit."""
    from api.committer import GroupCommitter
    from ledger.store.sql import SqlStore

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    W.build(url)
    store = SqlStore.open(url, signer=W.signer(), clock=W.now_ms)
    committer = GroupCommitter(store, max_queue=16, max_batch=8)
    try:
        svc = W.custody(store)
        good = svc.event(ev.ACCESS, W.key("admin"), {
            "artefact": W.BASE_ARTEFACT, "action": "view", "purpose": "ok",
            "outcome": "success"})
        bad_body = ev.Event(**{**_event_fields(good.event), "payload": {
            **good.event.payload, "size": 2**63}})
        bad = ev.SignedEvent(bad_body, good.signature)
        first = committer.submit(bad)
        try:
            first.result(timeout=10)
        except LedgerError:
            pass
        except TimeoutError:
            pytest.fail("the request with an unencodable event never got an answer: the group "
                        "commit thread died")
        try:
            receipt = committer.submit(good).result(timeout=10)
        except TimeoutError:
            pytest.fail("a valid write after it never got an answer: the group commit "
                        "thread died, the API can no longer write")
        assert receipt.event_id == good.event_id
    finally:
        thread = committer._thread
        if thread is not None and thread.is_alive():
            committer.stop()
        store.close()


def _event_fields(event: ev.Event) -> dict[str, Any]:
    return {"kind": event.kind, "origin": event.origin, "nonce": event.nonce,
            "claimed_time": event.claimed_time, "signer": event.signer,
            "key_id": event.key_id, "payload": event.payload, "prev": event.prev}


def test_finding_a_verifier_key_with_a_lone_surrogate_is_invalid_input(seeds: Seeds) -> None:
    """Found by test_checkpoint_against_mutated_keys: a verifier key whose NAME holds a
    lone surrogate raised UnicodeEncodeError from ``key_hash`` (through
    ``parse_verifier_key``, ``verify_checkpoint``, ``verify_cosignatures`` and
    ``verify_bundle``). It reaches the CLI unchanged: ``custody bundle verify FILE
    --log-key KEY`` with a key holding a byte that is not UTF-8 (argv is decoded with
    surrogateescape) prints a traceback."""
    name, rest = W.log_key().split("+", 1)
    bad_key = name + "\udcff+" + rest
    with pytest.raises(LedgerError):
        parse_verifier_key(bad_key)
    with pytest.raises(LedgerError):
        verify_checkpoint(seeds.note, bad_key)
    with pytest.raises(LedgerError):
        verify_cosignatures(seeds.cosigned_note, ["w\ud800" + seeds.witness_key[1:]], 1)
    bundle = Bundle.from_json(seeds.bundles[0])
    result = only_ledger_errors(verify_bundle, bundle, log_key=bad_key)
    assert result is None or result.verdict != "authentic"
