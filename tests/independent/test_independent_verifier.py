"""Two verifiers of ``custody-bundle/v1`` must agree: ``ledger.core.bundle.verify_bundle`` (the
one the CLI and the API use) and ``tests.independent.verifier`` (written from
docs/bundle.md alone, sharing no code with the ledger).

Real bundles come from a real ledger made by ``custody demo`` (plus a second artefact,
a third registered with the same bytes, an access and a revocation), exported with
``custody bundle export`` or built with ``build_bundle(store, sha256=...)``. Every good
bundle gets the same verdict from both verifiers and from ``custody bundle verify`` in a
subprocess; every mutation is rejected by both with the same verdict and the same set of
fault kinds. The "operator" cases re-sign checkpoints with the ledger's own log key: what
a hostile operator can do.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from ledger.core import events as ev
from ledger.core import merkle, vmap
from ledger.core.bundle import Bundle, verify_bundle
from ledger.core.checkpoint import add_cosignature, cosign, cosignature_verifier_key
from ledger.core.errors import VerificationError
from ledger.core.note import NoteSigner, verifier_key
from ledger.home import Home, open_store
from ledger.keys import load_key, load_seed
from ledger.store.bundle_build import build_bundle
from tests.independent import verifier as independent

CUSTODY = Path(sys.executable).with_name("custody")
if not CUSTODY.exists():  # not run from the project's virtual environment
    CUSTODY = Path(shutil.which("custody") or "custody")
COSIGNED_AT = 1_767_225_600


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"independent-verifier-test/" + label.encode()).digest()


def _witness(name: str) -> tuple[str, bytes, str]:
    seed = _seed(name)
    return name, seed, cosignature_verifier_key(name, SigningKey(seed).verify_key.encode())


WITNESSES = [_witness("w1.example"), _witness("w2.example"), _witness("untrusted.example")]


@dataclass
class Case:
    """One verification: a bundle object and what the verifier is given."""

    obj: dict[str, Any]
    log_key: str
    evidence: Path | None = None
    witnesses: tuple[str, ...] = ()
    quorum: int = 0

    @property
    def sha256(self) -> str | None:
        if self.evidence is None:
            return None
        return hashlib.sha256(self.evidence.read_bytes()).hexdigest()


@dataclass
class Demo:
    root: Path
    home: Path
    log_key: str
    origin: str
    arts: dict[str, str]
    bundles: dict[str, dict[str, Any]]
    evidence: dict[str, Path]
    older_note: str
    leaves: list[bytes] = field(default_factory=list)

    def case(self, name: str = "demo", evidence: str | None = "demo") -> Case:
        return Case(copy.deepcopy(self.bundles[name]), self.log_key,
                    None if evidence is None else self.evidence[evidence])

    def witnessed(self) -> Case:
        case = self.case()
        note = case.obj["checkpoint"]
        for name, seed, _ in WITNESSES[:2]:
            note = add_cosignature(note, cosign(note, name, seed, COSIGNED_AT))
        case.obj["checkpoint"] = note
        return replace(case, witnesses=(WITNESSES[0][2], WITNESSES[1][2]), quorum=2)


def custody(*args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUSTODY_PASSPHRASE": "independent-verifier-test"}
    env.pop("CUSTODY_SERVER", None)
    proc = subprocess.run([str(CUSTODY), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, f"custody {args} exited {proc.returncode}:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return build_demo(tmp_path_factory.mktemp("independent"))


def build_demo(root: Path) -> Demo:
    """A real ledger made by ``custody demo`` plus a second artefact, a third with the same
    bytes, an access and a revocation; with its bundles (other test modules reuse it)."""
    home = root / "home"
    custody("demo", "--size-mib", "1", "--home", home)
    config = json.loads((home / "config.json").read_text())
    image, tampered = home / "evidence" / "disk01.E01", home / "evidence" / "disk01-tampered.E01"
    second = root / "second.bin"
    second.write_bytes(hashlib.sha512(b"second").digest() * 100)
    arts = {"demo": ""}
    for name, exhibit in (("second", "DE-02"), ("same-bytes", "DE-03")):
        # The same bytes again in the case must name the first (rule duplicate-bytes).
        again = ["--duplicate-of", arts["second"]] if name == "same-bytes" else []
        out = custody("--home", home, "register", second, "--case", "CASE-2026-0042",
                      "--exhibit", exhibit, *again, "--as", "de-examiner", "--json")
        arts[name] = json.loads(out.stdout)["artefact_id"]
    custody("--home", home, "access", arts["second"], "--action", "view", "--purpose",
            "review", "--as", "nl-custodian")
    custody("--home", home, "actor", "revoke", "fr-analyst", "--reason", "left",
            "--as", "bka-admin")
    store = open_store(Home(home).load(), writable=False)
    try:
        arts["demo"] = next(rec["id"] for _, rec in store.state_items("art/")
                            if rec["exhibit"] == "DE-01")
        bundles = {}
        for name, art in arts.items():
            out = root / f"{name}.json"
            custody("--home", home, "bundle", "export", art, "--out", out)
            bundles[name] = json.loads(out.read_text())
        digests = {"sha256-demo": hashlib.sha256(image.read_bytes()).hexdigest(),
                   "sha256-two-registrations": hashlib.sha256(second.read_bytes()).hexdigest(),
                   "sha256-not-registered": "ab" * 32}
        for name, digest in digests.items():
            bundle, faults = build_bundle(store, sha256=digest)
            assert faults == []
            bundles[name] = bundle.to_json()
        size = store.size()
        older = store.checkpoint_at(size - 1)
        leaves = [e.leaf for e in sorted(store.entries_at(list(range(size))),
                                         key=lambda e: e.index)]
    finally:
        store.close()
    return Demo(root, home, config["log_key"], config["origin"], arts, bundles,
                {"demo": image, "tampered": tampered, "second": second}, older, leaves)


# ---- running the verifiers -----------------------------------------------------------------


def run_both(case: Case) -> tuple[str, set[str], str, set[str]]:
    ref = verify_bundle(Bundle.from_json(copy.deepcopy(case.obj)), log_key=case.log_key,
                        evidence_sha256=case.sha256, witnesses=case.witnesses,
                        quorum=case.quorum)
    verdict, faults = independent.verify(copy.deepcopy(case.obj), case.log_key, case.sha256,
                                         case.witnesses, case.quorum)
    return ref.verdict, {f.kind for f in ref.faults}, verdict, set(faults)


def assert_agree(case: Case) -> tuple[str, set[str]]:
    ref_verdict, ref_kinds, verdict, kinds = run_both(case)
    assert (ref_verdict, ref_kinds) == (verdict, kinds), (
        f"verify_bundle says {ref_verdict} {sorted(ref_kinds)}, the independent verifier "
        f"says {verdict} {sorted(kinds)}")
    return verdict, kinds


def run_cli(case: Case, path: Path) -> tuple[int, str | None]:
    path.write_text(json.dumps(case.obj))
    args: list[Any] = ["bundle", "verify", path, "--log-key", case.log_key, "--json"]
    if case.evidence is not None:
        args += ["--evidence", case.evidence]
    for key in case.witnesses:
        args += ["--witness", key]
    if case.quorum:
        args += ["--quorum", case.quorum]
    proc = custody(*args, check=False)
    verdict = json.loads(proc.stdout)["verdict"] if proc.stdout.strip() else None
    return proc.returncode, verdict


# ---- (a) good bundles ------------------------------------------------------------------------


GOOD: dict[str, tuple[Callable[[Demo], Case], str]] = {
    "demo-artefact-with-evidence": (lambda d: d.case(), "authentic"),
    "demo-artefact-no-evidence": (lambda d: d.case(evidence=None), "verified"),
    "second-artefact-with-evidence": (lambda d: d.case("second", "second"), "authentic"),
    "same-bytes-artefact": (lambda d: d.case("same-bytes", None), "verified"),
    "sha256-demo": (lambda d: d.case("sha256-demo", None), "authentic"),
    "sha256-two-registrations": (lambda d: d.case("sha256-two-registrations", "second"),
                                 "authentic"),
    "sha256-not-registered": (lambda d: d.case("sha256-not-registered", None),
                              "not-registered"),
    "sha256-subject-in-upper-case": (lambda d: _upper_subject(d.case("sha256-demo", None)),
                                     "authentic"),
    "witnessed": (Demo.witnessed, "authentic"),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_good_bundle_is_accepted_by_both(demo: Demo, name: str, tmp_path: Path) -> None:
    make, expected = GOOD[name]
    case = make(demo)
    assert assert_agree(case) == (expected, set())
    code, verdict = run_cli(case, tmp_path / "bundle.json")
    assert (code, verdict) == (0 if expected in ("authentic", "verified") else 1, expected)


def _upper_subject(case: Case) -> Case:
    case.obj["subject"] = {"sha256": case.obj["subject"]["sha256"].upper()}
    return case


def test_every_artefact_of_the_demo_has_a_good_bundle(demo: Demo) -> None:
    assert len(set(demo.arts.values())) == 3
    for name in demo.arts:
        assert demo.bundles[name]["subject"] == {"artefact": demo.arts[name]}
    assert assert_agree(demo.case("sha256-two-registrations", None)) == ("authentic", set())


def test_entries_array_order_is_irrelevant(demo: Demo) -> None:
    case = demo.case()
    case.obj["entries"].reverse()
    case.obj["maps"].reverse()
    assert assert_agree(case) == ("authentic", set())


# ---- bundle surgery --------------------------------------------------------------------------


def events(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's entries, decoded: position, index, kind, payload, signer."""
    out = []
    for pos, e in enumerate(obj["entries"]):
        event = json.loads(base64.b64decode(e["leaf"]))["event"]["event"]
        out.append({"pos": pos, "index": e["index"], "kind": event["kind"],
                    "payload": event["payload"], "signer": event["signer"]})
    return out


def pos_of(obj: dict[str, Any], kind: str, nth: int = 0) -> int:
    return [e["pos"] for e in events(obj) if e["kind"] == kind][nth]


def proof(obj: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(m for m in obj["maps"] if m["key"].startswith(prefix))


def flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


def flip_b64(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def drop_entry(obj: dict[str, Any], pos: int) -> None:
    del obj["entries"][pos]


def with_note_text(note: str, edit: Callable[[list[str]], None]) -> str:
    cut = note.rfind("\n\n")
    lines = note[:cut].split("\n")
    edit(lines)
    return "\n".join(lines) + note[cut:]


def with_signature_flipped(note: str) -> str:
    cut = note.rfind("\n\n")
    sigs = note[cut + 2:-1].split("\n")
    name, blob = sigs[0][2:].split(" ")
    sigs[0] = f"\u2014 {name} {flip_b64(blob, 10)}"
    return note[:cut + 2] + "\n".join(sigs) + "\n"


def without_line_of(note: str, name: str) -> str:
    return "".join(line for line in note.splitlines(keepends=True)
                   if not line.startswith(f"\u2014 {name} "))


def _wrong_log_key(d: Demo) -> Case:
    return replace(d.case(), log_key=verifier_key(d.origin, SigningKey(_seed("x")).verify_key
                                                  .encode()))


def _foreign_origin_key(d: Demo) -> Case:
    _name, _keyid, material = d.log_key.split("+", 2)
    public = base64.b64decode(material)[1:]
    return replace(d.case(), log_key=verifier_key("other.example/ledger", public))


def _checkpoint(edit: Callable[[str], str]) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        case.obj["checkpoint"] = edit(case.obj["checkpoint"])
        return case
    return make


def _root_altered(note: str) -> str:
    def edit(lines: list[str]) -> None:
        lines[2] = base64.b64encode(hashlib.sha256(b"another tree").digest()).decode()
    return with_note_text(note, edit)


def _witnessed(edit: Callable[[str], str]) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.witnessed()
        case.obj["checkpoint"] = edit(case.obj["checkpoint"])
        return case
    return make


def _cosignature_swapped(note: str) -> str:
    name, seed, _ = WITNESSES[2]
    return add_cosignature(without_line_of(note, "w2.example"),
                           cosign(note, name, seed, COSIGNED_AT))


def _cosignature_forged(note: str) -> str:
    line = next(x for x in note.splitlines() if x.startswith("\u2014 w2.example "))
    name, blob = line[2:].split(" ")
    return without_line_of(note, name) + f"\u2014 {name} {flip_b64(blob, 20)}\n"


def _cosignature_over_other(d: Demo) -> Case:
    case = d.witnessed()
    name, seed, _ = WITNESSES[1]
    stale = cosign(d.older_note, name, seed, COSIGNED_AT)
    case.obj["checkpoint"] = add_cosignature(case.obj["checkpoint"], stale)
    return case


def _entry(kind: str, edit: Callable[[dict[str, Any]], None], nth: int = 0
           ) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        edit(case.obj["entries"][pos_of(case.obj, kind, nth)])
        return case
    return make


def _set(key: str, value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj[key] = value(obj[key])
    return edit


def _leaves_swapped(d: Demo) -> Case:
    case = d.case()
    a, b = pos_of(case.obj, "custody.dispatch"), pos_of(case.obj, "custody.receipt")
    entries = case.obj["entries"]
    entries[a]["leaf"], entries[b]["leaf"] = entries[b]["leaf"], entries[a]["leaf"]
    return case


def _duplicated(d: Demo) -> Case:
    case = d.case()
    case.obj["entries"].append(copy.deepcopy(case.obj["entries"][pos_of(case.obj,
                                                                       "custody.receipt")]))
    return case


def _dropped(kind: str, nth: int = 0) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        drop_entry(case.obj, pos_of(case.obj, kind, nth))
        return case
    return make


def _last_dropped(d: Demo) -> Case:
    case = d.case()
    drop_entry(case.obj, max(events(case.obj), key=lambda e: e["index"])["pos"])
    return case


def _other_artefact_entry(d: Demo) -> Case:
    case = d.case()
    other = d.bundles["second"]
    theirs = other["entries"][pos_of(other, "access.record")]
    case.obj["entries"][pos_of(case.obj, "access.record")] = copy.deepcopy(theirs)
    return case


def _map(prefix: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        edit(proof(case.obj, prefix))
        return case
    return make


def _removed(prefix: str) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        case.obj["maps"].remove(proof(case.obj, prefix))
        return case
    return make


def _map_duplicated(d: Demo) -> Case:
    case = d.case()
    case.obj["maps"].append(copy.deepcopy(proof(case.obj, "art/")))
    return case


def _enrolment_dropped(d: Demo) -> Case:
    case = d.case()
    enrolled = proof(case.obj, "actor/de-custodian")["value"]["enrolled_at"]
    drop_entry(case.obj, next(e["pos"] for e in events(case.obj) if e["index"] == enrolled))
    return case


def _legal_basis_dropped(d: Demo) -> Case:
    case = d.case()
    drop_entry(case.obj, pos_of(case.obj, "legal-basis.record"))
    return case


def _subject(make_subject: Callable[[Demo], dict[str, str]]) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        case.obj["subject"] = make_subject(d)
        return case
    return make


def _origin_changed(d: Demo) -> Case:
    case = d.case()
    case.obj["origin"] = "other.example/ledger"
    return case


def _nonce_proof(d: Demo) -> Case:
    case = d.case()
    case.obj["maps"].append({"key": "nonce/" + "0" * 32, "value": None, "bucket": [],
                             "path": ["00" * 32] * 16})
    return case


def _set_value(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        m["value"] = {**m["value"], name: value}
    return edit


MUTATIONS: dict[str, Callable[[Demo], Case]] = {
    # B2 checkpoint
    "wrong-log-key": _wrong_log_key,
    "foreign-origin-key": _foreign_origin_key,
    "checkpoint-root-altered": _checkpoint(_root_altered),
    "checkpoint-signature-flipped": _checkpoint(with_signature_flipped),
    "older-checkpoint": lambda d: _checkpoint(lambda _note: d.older_note)(d),
    "bundle-origin-changed": _origin_changed,
    "log-key-not-a-key": lambda d: replace(d.case(), log_key="not a verifier key"),
    # B3 witnesses (a quorum of 2 is demanded)
    "cosignature-stripped": _witnessed(lambda note: without_line_of(note, "w2.example")),
    "cosignature-swapped-for-untrusted": _witnessed(_cosignature_swapped),
    "cosignature-forged": _witnessed(_cosignature_forged),
    "cosignature-over-other-checkpoint": _cosignature_over_other,
    "witness-quorum-zero": lambda d: replace(d.witnessed(), quorum=0),
    "witness-key-given-twice": lambda d: replace(d.witnessed(),
                                                 witnesses=(WITNESSES[0][2],) * 2, quorum=1),
    # B4 entries
    "leaf-byte-flipped": _entry("custody.receipt", _set("leaf", lambda s: flip_b64(s, 40))),
    "inclusion-hash-flipped": _entry("custody.dispatch",
                                     _set("inclusion", lambda p: [flip_hex(p[0]), *p[1:]])),
    "inclusion-proof-truncated": _entry("access.record", _set("inclusion", lambda p: p[:-1])),
    "leaves-swapped": _leaves_swapped,
    "index-changed": _entry("access.record", _set("index", lambda _i: 1)),
    "entry-duplicated": _duplicated,
    # B5 map proofs
    "map-value-changed": _map("hist/art/", _set_value("n", 6)),
    "art-record-changed": _map("art/", _set_value("custodian", "bka")),
    "map-path-hash-flipped": _map("actor/de-custodian",
                                  _set("path", lambda p: [*p[:7], flip_hex(p[7]), *p[8:]])),
    "map-path-truncated": _map("hist/art/", _set("path", lambda p: p[:-1])),
    "map-value-not-jcs": _map("hist/art/", _set_value("n", 2**60)),
    "map-proof-duplicated": _map_duplicated,
    "map-proof-of-unmapped-key": _nonce_proof,
    # B6/B7 subject and completeness
    "hist-proof-removed": _removed("hist/art/"),
    "subject-changed": _subject(lambda d: {"artefact": d.arts["second"]}),
    "subject-digest-changed": _subject(lambda d: {"sha256": "cd" * 32}),
    "dispatch-dropped": _dropped("custody.dispatch"),
    "registration-dropped": _dropped("artefact.register"),
    "last-event-dropped": _last_dropped,
    "other-artefact-entry-swapped-in": _other_artefact_entry,
    # B8-B10 keys and chain
    "actor-proof-removed": _removed("actor/de-custodian"),
    "enrolment-entry-dropped": _enrolment_dropped,
    "legal-basis-proof-removed": _removed("lb/"),
    "legal-basis-entry-dropped": _legal_basis_dropped,
    # B12 evidence
    "evidence-changed": lambda d: d.case(evidence="tampered"),
    "evidence-of-another-artefact": lambda d: d.case(evidence="second"),
}


#: The fault kinds each mutation must produce at least (both verifiers must agree on all).
EXPECTED: dict[str, set[str]] = {
    "wrong-log-key": {"checkpoint"}, "foreign-origin-key": {"checkpoint"},
    "checkpoint-root-altered": {"checkpoint"}, "checkpoint-signature-flipped": {"checkpoint"},
    "older-checkpoint": {"inclusion", "map"}, "bundle-origin-changed": {"checkpoint"},
    "cosignature-stripped": {"witness"}, "cosignature-swapped-for-untrusted": {"witness"},
    "cosignature-forged": {"witness"}, "cosignature-over-other-checkpoint": {"witness"},
    "leaf-byte-flipped": {"inclusion", "incomplete"},
    "inclusion-hash-flipped": {"inclusion", "incomplete"},
    "inclusion-proof-truncated": {"inclusion", "incomplete"},
    "leaves-swapped": {"inclusion", "incomplete"}, "index-changed": {"inclusion"},
    "entry-duplicated": {"leaf"},
    "map-value-changed": {"map", "incomplete"}, "art-record-changed": {"map"},
    "map-path-hash-flipped": {"map", "key"}, "map-path-truncated": {"map", "incomplete"},
    "map-value-not-jcs": {"map", "incomplete"}, "map-proof-duplicated": {"map"},
    "hist-proof-removed": {"incomplete"}, "subject-changed": {"incomplete"},
    "subject-digest-changed": {"incomplete"},
    "dispatch-dropped": {"incomplete", "chain"},
    "registration-dropped": {"incomplete", "chain"}, "last-event-dropped": {"incomplete"},
    "other-artefact-entry-swapped-in": {"incomplete"},
    "actor-proof-removed": {"key"}, "enrolment-entry-dropped": {"key"},
    "legal-basis-proof-removed": {"legal-basis"}, "legal-basis-entry-dropped": {"legal-basis"},
    "log-key-not-a-key": {"checkpoint"}, "witness-quorum-zero": {"witness"},
    "witness-key-given-twice": {"witness"}, "map-proof-of-unmapped-key": {"map"},
}
#: Mutations of the evidence: every proof holds, the verdict is mismatch.
MISMATCH = ("evidence-changed", "evidence-of-another-artefact")


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_is_rejected_by_both(demo: Demo, name: str) -> None:
    verdict, kinds = assert_agree(MUTATIONS[name](demo))
    if name in MISMATCH:
        assert (verdict, kinds) == ("mismatch", set())
        return
    assert verdict == "fault"
    assert EXPECTED[name] <= kinds, f"{name}: faults {sorted(kinds)}"


@pytest.mark.parametrize("name", ["wrong-log-key", "dispatch-dropped", "cosignature-stripped",
                                  "evidence-changed", "map-value-not-jcs"])
def test_cli_rejects_mutations_with_the_same_verdict(demo: Demo, name: str,
                                                     tmp_path: Path) -> None:
    case = MUTATIONS[name](demo)
    verdict, _ = assert_agree(case)
    assert run_cli(case, tmp_path / "bundle.json") == (1, verdict)


def test_quorum_without_witness_keys_is_a_witness_fault(demo: Demo) -> None:
    """A caller demanding a quorum with no witness keys must not get an unwitnessed
    verdict (ledger/core/bundle.py used to skip B3 entirely when no keys were given)."""
    case = replace(demo.witnessed(), witnesses=(), quorum=1)
    assert assert_agree(case) == ("fault", {"witness"})


# ---- B1: not a bundle ------------------------------------------------------------------------


def _malformed(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Demo], Any]:
    def make(d: Demo) -> Any:
        obj = copy.deepcopy(d.bundles["demo"])
        return edit(obj)
    return make


def _and(obj: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    obj[key] = value
    return obj


def _first_entry(obj: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    obj["entries"][0][key] = value
    return obj


MALFORMED: dict[str, Callable[[Demo], Any]] = {
    "not-an-object": _malformed(lambda o: [o]),
    "format-changed": _malformed(lambda o: _and(o, "format", "custody-bundle/v2")),
    "subject-two-members": _malformed(lambda o: _and(o, "subject", {**o["subject"],
                                                                    "sha256": "ab" * 32})),
    "entries-not-an-array": _malformed(lambda o: _and(o, "entries", {})),
    "checkpoint-missing": _malformed(lambda o: {k: v for k, v in o.items()
                                                if k != "checkpoint"}),
    "leaf-not-base64": _malformed(lambda o: _first_entry(o, "leaf", "not base64!")),
    "index-negative": _malformed(lambda o: _first_entry(o, "index", -1)),
    "index-boolean": _malformed(lambda o: _first_entry(o, "index", True)),
    "inclusion-hash-short": _malformed(lambda o: _first_entry(o, "inclusion", ["ab" * 31])),
    "map-bucket-not-pairs": _malformed(lambda o: _and(
        o, "maps", [{**o["maps"][0], "bucket": [["ab" * 32]]}])),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bundle_is_refused_by_both(demo: Demo, name: str) -> None:
    obj = MALFORMED[name](demo)
    with pytest.raises(VerificationError):
        Bundle.from_json(copy.deepcopy(obj))
    with pytest.raises(independent.MalformedBundle):
        independent.verify(obj, demo.log_key)


# ---- what a hostile operator holding the log key can do ------------------------------------


def _rfc6962_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    if m < k:
        return [*_rfc6962_path(m, hashes[:k]), merkle.root(hashes[k:])]
    return [*_rfc6962_path(m - k, hashes[k:]), merkle.root(hashes[:k])]


def _remap(maps: list[dict[str, Any]], changes: dict[str, dict[str, Any]]) -> bytes:
    """Apply ``changes`` (key -> new value, keys proven in ``maps``) to the map the proofs
    describe; rewrite every proof in place and return the new map root."""
    buckets: dict[int, dict[bytes, bytes]] = {}
    nodes: dict[tuple[int, int], bytes] = {}
    for m in maps:
        m["value"] = changes.get(m["key"], m["value"])
        b = vmap.bucket_of(m["key"])
        content = buckets.setdefault(b, {})
        content.update((bytes.fromhex(kh), bytes.fromhex(vh)) for kh, vh in m["bucket"])
        if m["value"] is not None:
            content[vmap.key_hash(m["key"])] = vmap.value_hash(m["value"])
        for level, sibling in enumerate(m["path"]):
            nodes.setdefault((level, (b >> level) ^ 1), bytes.fromhex(sibling))
    for b, content in buckets.items():
        nodes[(0, b)] = vmap.bucket_hash(content.items())
    level_idx = set(buckets)
    for level in range(vmap.LEVELS):
        level_idx = {i >> 1 for i in level_idx}
        for p in level_idx:
            nodes[(level + 1, p)] = vmap.node_hash(nodes[(level, 2 * p)],
                                                   nodes[(level, 2 * p + 1)])
    for m in maps:
        b, kh = vmap.bucket_of(m["key"]), vmap.key_hash(m["key"])
        m["bucket"] = [[k.hex(), v.hex()] for k, v in sorted(buckets[b].items()) if k != kh]
        m["path"] = [nodes[n].hex() for n in vmap.path_plan(b)]
    return nodes[(vmap.LEVELS, 0)]


def forge(d: Demo, obj: dict[str, Any], *, leaves: dict[int, bytes] | None = None,
          changes: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The operator rebuilds the log over ``leaves`` (index -> bytes, replacing or
    appending) and the map with ``changes``, signs a checkpoint of it with the real log
    key, and re-proves ``obj``'s entries and map proofs against it."""
    all_leaves = list(d.leaves)
    for index, leaf in sorted((leaves or {}).items()):
        if index < len(all_leaves):
            all_leaves[index] = leaf
        else:
            all_leaves.append(leaf)
    hashes = [merkle.leaf_hash(leaf) for leaf in all_leaves]
    known = {e["index"] for e in obj["entries"]}
    obj["entries"] += [{"index": i, "leaf": "", "inclusion": []} for i in sorted(leaves or {})
                       if i not in known]
    for e in obj["entries"]:
        e["leaf"] = base64.b64encode(all_leaves[e["index"]]).decode()
        e["inclusion"] = [h.hex() for h in _rfc6962_path(e["index"], hashes)]
    map_root = _remap(obj["maps"], changes or {})
    text = (f"{d.origin}\n{len(all_leaves)}\n{base64.b64encode(merkle.root(hashes)).decode()}\n"
            f"{vmap.extension_line(map_root)}\n")
    seed = load_seed(d.home / "keys" / "log.key", None)
    obj["checkpoint"] = NoteSigner(d.origin, seed).sign_note(text)
    return obj


def _leaf_of(d: Demo, kind: str, artefact: str) -> tuple[int, dict[str, Any]]:
    for index, leaf in enumerate(d.leaves):
        obj = json.loads(leaf)
        if obj["event"]["event"]["kind"] == kind and \
                obj["event"]["event"]["payload"].get("artefact") == artefact:
            return index, obj
    raise AssertionError(f"no {kind} of {artefact}")


def _jcs(value: Any) -> bytes:
    import rfc8785

    return rfc8785.dumps(value)


def test_operator_signed_wrong_state_record_is_a_state_fault(demo: Demo) -> None:
    case = demo.case()
    record = proof(case.obj, "art/")["value"]
    forge(demo, case.obj, changes={"art/" + demo.arts["demo"]: {**record, "custodian": "bka"}})
    assert assert_agree(case) == ("fault", {"state"})


def test_operator_hiding_an_access_in_a_signed_map_is_not_detected_offline(
        demo: Demo) -> None:
    """The documented limit (docs/bundle.md §6): the map root is the operator's signed
    claim. An operator that signs an accumulator without the last access gets a bundle
    both verifiers accept; the wrong root is signed, and a replay (custody audit) finds
    it."""
    case = demo.case()
    last = max(events(case.obj), key=lambda e: e["index"])
    assert last["kind"] == "access.record"
    drop_entry(case.obj, last["pos"])
    hist = proof(case.obj, "hist/art/")["value"]
    chain = sorted(e["index"] for e in events(case.obj)
                   if e["payload"].get("artefact") == demo.arts["demo"]
                   or e["payload"].get("id") == demo.arts["demo"])
    acc = bytes(32)
    for index in chain:
        acc = hashlib.sha256(acc + merkle.leaf_hash(demo.leaves[index])).digest()
    forged = {**hist, "n": hist["n"] - 1, "last": chain[-1], "acc": acc.hex()}
    forge(demo, case.obj, changes={"hist/art/" + demo.arts["demo"]: forged})
    assert assert_agree(case) == ("authentic", set())


def test_operator_signed_forged_event_is_a_signature_fault(demo: Demo) -> None:
    """An access the actor never signed, put in the log and the accumulator by the
    operator: only the signature check (B9) can tell."""
    case = demo.case()
    index, leaf = _leaf_of(demo, "access.record", demo.arts["demo"])
    leaf["event"]["event"]["payload"]["purpose"] = "something else"
    forged_leaf = _jcs(leaf)
    hist = proof(case.obj, "hist/art/")["value"]
    chain = [e["index"] for e in events(case.obj)
             if e["payload"].get("artefact") == demo.arts["demo"]
             or e["payload"].get("id") == demo.arts["demo"]]
    acc = bytes(32)
    for i in sorted(chain):
        acc = hashlib.sha256(acc + merkle.leaf_hash(
            forged_leaf if i == index else demo.leaves[i])).digest()
    forge(demo, case.obj, leaves={index: forged_leaf},
          changes={"hist/art/" + demo.arts["demo"]: {**hist, "acc": acc.hex()}})
    assert assert_agree(case) == ("fault", {"signature"})


def test_operator_signed_malformed_payload_is_a_leaf_fault(demo: Demo) -> None:
    """A signed log may hold an entry the rules would never have accepted: a dispatch
    without an artefact. Verification must name it, not crash (ledger/core/bundle.py raised
    KeyError from rules.subjects)."""
    case = demo.case()
    _, leaf = _leaf_of(demo, "access.record", demo.arts["demo"])
    index = len(demo.leaves)
    leaf["index"] = index
    leaf["event"]["event"]["kind"] = "custody.dispatch"
    leaf["event"]["event"]["payload"] = {}
    forge(demo, case.obj, leaves={index: _jcs(leaf)})
    assert assert_agree(case) == ("fault", {"leaf"})


def test_operator_signed_malformed_actor_record_is_a_key_fault(demo: Demo) -> None:
    """A signed actor record whose revocation index is not an integer: a ``key`` fault,
    not a TypeError (ledger/core/bundle.py compared it with ``<=``)."""
    case = demo.case()
    record = proof(case.obj, "actor/de-custodian")["value"]
    forge(demo, case.obj, changes={"actor/de-custodian": {**record, "revoked_at": "never"}})
    verdict, kinds = assert_agree(case)
    assert verdict == "fault"
    assert "key" in kinds


def test_operator_signed_malformed_legal_basis_record_is_a_legal_basis_fault(
        demo: Demo) -> None:
    """A signed legal-basis record whose ``recorded_at`` is not an index: the cited basis
    is not proven (ledger/core/bundle.py used it as a dict key: TypeError)."""
    case = demo.case()
    lb = proof(case.obj, "lb/")
    forge(demo, case.obj, changes={lb["key"]: {**lb["value"],
                                               "recorded_at": [lb["value"]["recorded_at"]]}})
    assert assert_agree(case) == ("fault", {"legal-basis"})


def _signed_leaf(d: Demo, actor: str, index: int, kind: str, payload: dict[str, Any],
                 prev: str | None = None, origin: str | None = None) -> bytes:
    """A leaf of an event really signed by ``actor`` (the demo's keys are unencrypted):
    what an operator colluding with that actor can put in its log."""
    signer = load_key(d.home / "keys" / "actors" / f"{actor}.key", None)
    time_ms = json.loads(d.leaves[-1])["ledger_time"]
    event = ev.Event(kind=kind, origin=origin or d.origin, nonce=_seed(str(index)).hex()[:32],
                     claimed_time=time_ms, signer=actor,
                     key_id=ev.actor_key_id(actor, signer.public_key), payload=payload,
                     prev=prev)
    return ev.Entry(index, time_ms, ev.sign_event(event, signer)).leaf_bytes()


def _append_to_history(d: Demo, case: Case, leaf: bytes) -> dict[str, dict[str, Any]]:
    """The ``hist/art/`` record after appending ``leaf`` (the new last entry)."""
    hist = proof(case.obj, "hist/art/")
    acc = hashlib.sha256(bytes.fromhex(hist["value"]["acc"]) + merkle.leaf_hash(leaf))
    return {hist["key"]: {**hist["value"], "n": hist["value"]["n"] + 1,
                          "last": len(d.leaves), "acc": acc.hexdigest()}}


def test_operator_and_examiner_re_registering_an_artefact_is_a_chain_fault(
        demo: Demo) -> None:
    """A second registration of the same artefact id, with the digests of the tampered
    copy, signed by an enrolled examiner and put in the log by the operator (the rules
    refuse it: duplicate-id). The replay must not let it replace the registered digests:
    ledger/core/bundle.py said ``authentic`` for the TAMPERED file."""
    case = demo.case(evidence="tampered")
    index = len(demo.leaves)
    _, first = next((i, json.loads(x)) for i, x in enumerate(demo.leaves)
                    if json.loads(x)["event"]["event"]["kind"] == "artefact.register")
    payload = {**first["event"]["event"]["payload"],
               "digests": {"sha256": case.sha256,
                           "sha512": hashlib.sha512(case.evidence.read_bytes()).hexdigest()}}
    leaf = _signed_leaf(demo, "de-examiner", index, "artefact.register", payload)
    art = proof(case.obj, "art/")
    replayed = {**art["value"], "digests": payload["digests"], "custodian": "bka",
                "head": hashlib.sha256(_jcs(json.loads(leaf)["event"])).hexdigest(),
                "open_transfer": None, "incidents": 0}
    forge(demo, case.obj, leaves={index: leaf},
          changes={**_append_to_history(demo, case, leaf), art["key"]: replayed})
    verdict, kinds = assert_agree(case)
    assert verdict == "fault"
    assert "chain" in kinds


def test_operator_importing_an_event_signed_for_another_ledger_is_a_leaf_fault(
        demo: Demo) -> None:
    """An access really signed by nl-custodian, but for another ledger (its ``origin``):
    the rules refuse it; a bundle that carries it must not verify."""
    case = demo.case()
    index = len(demo.leaves)
    payload = {"artefact": demo.arts["demo"], "action": "view", "purpose": "elsewhere",
               "authorisation": "", "outcome": "success", "source": "cli"}
    leaf = _signed_leaf(demo, "nl-custodian", index, "access.record", payload,
                        origin="other.example/ledger")
    forge(demo, case.obj, leaves={index: leaf}, changes=_append_to_history(demo, case, leaf))
    verdict, kinds = assert_agree(case)
    assert verdict == "fault"
    assert "leaf" in kinds


def test_operator_signed_empty_digest_history_is_an_incomplete_fault(demo: Demo) -> None:
    """A signed ``hist/sha256/D`` that names no entry (n = 0) with no registration in the
    bundle: ledger/core/bundle.py returned the verdict ``fault`` with NO fault named."""
    case = demo.case("sha256-demo", None)
    for e in [e for e in events(case.obj) if e["kind"] == "artefact.register"]:
        drop_entry(case.obj, e["pos"])
    hist = proof(case.obj, "hist/sha256/")
    forge(demo, case.obj, changes={hist["key"]: {"n": 0, "first": None, "last": None,
                                                 "acc": "00" * 32}})
    assert assert_agree(case) == ("fault", {"incomplete"})


def test_the_independent_verifier_shares_no_code_with_the_ledger() -> None:
    import ast

    tree = ast.parse(Path(independent.__file__).read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)}
    allowed = {"__future__", "base64", "binascii", "hashlib", "json", "re", "struct",
               "collections.abc", "typing", "rfc8785", "nacl.signing"}
    assert modules <= allowed, sorted(modules - allowed)
