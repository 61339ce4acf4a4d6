"""An independent verifier of ``custody-bundle/v1`` court bundles, written from
``docs/bundle.md`` alone.

It shares no code with the ledger: it imports only the standard library, PyNaCl's
``nacl.signing`` (Ed25519) and ``rfc8785`` (JCS). Step labels B1-B12 and fault kinds are
those of the document. :func:`verify` returns ``(verdict, fault kinds)``; a file that is
not a bundle at all (B1) raises :class:`MalformedBundle`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import rfc8785
from nacl.signing import VerifyKey

FORMAT = "custody-bundle/v1"
MAX_ENTRIES = 200_000
ZERO = bytes(32)
MAP_LEVELS = 16
MAP_EXTENSION = "custody-map/v1 "
EVENT_DOMAIN = b"custody-ledger/v1/event\n"
MAX_TIME = 253402300799999
MAX_NOTE = 1 << 20
MAX_SIGS = 100
MAX_DEPTH = 32
STRONG = ("sha256", "sha512", "blake3")
KINDS = ("ledger.genesis", "org.register", "actor.enrol", "actor.revoke", "case.open",
         "case.add-member", "legal-basis.record", "artefact.register", "custody.dispatch",
         "custody.receipt", "access.record", "verification.record", "org.key",
         "org.key.revoke", "auth.denied")
ART_KINDS = ("custody.dispatch", "custody.receipt", "access.record", "verification.record")

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_LOWER_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_NOTE_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f]")


class MalformedBundle(ValueError):
    """B1: the input is not a custody-bundle/v1 object."""


class _Bad(Exception):
    """A check failed (internal)."""


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def jcs(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except Exception as exc:  # any value without an RFC 8785 encoding
        raise _Bad(f"no JCS encoding: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _b64(text: Any, *, canonical: bool = False) -> bytes:
    if not isinstance(text, str):
        raise _Bad("not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _Bad("not base64") from None
    if canonical and base64.b64encode(raw).decode() != text:
        raise _Bad("not canonical base64")
    return raw


# ---- B1: the file ----------------------------------------------------------------------


def _hash_list(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        raise MalformedBundle("a hash list is not an array")
    return [_hex32(h) for h in value]


def _hex32(value: Any) -> bytes:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise MalformedBundle("a hash is not 64 hex digits")
    return bytes.fromhex(value)


def parse_bundle(obj: Any) -> dict[str, Any]:
    """B1: check the shape of the file; return it with hashes and leaves decoded."""
    if not isinstance(obj, dict):
        raise MalformedBundle("not a JSON object")
    if obj.get("format") != FORMAT:
        raise MalformedBundle(f"format is not {FORMAT}")
    try:
        origin, note, subject = obj["origin"], obj["checkpoint"], obj["subject"]
        raw_entries, raw_maps = obj["entries"], obj["maps"]
    except KeyError as exc:
        raise MalformedBundle(f"missing {exc}") from None
    if not isinstance(origin, str) or not isinstance(note, str):
        raise MalformedBundle("origin and checkpoint are strings")
    if not isinstance(obj.get("log_key", ""), str):
        raise MalformedBundle("log_key is a string")
    if not (isinstance(subject, dict) and len(subject) == 1
            and next(iter(subject)) in ("artefact", "sha256")
            and isinstance(next(iter(subject.values())), str)):
        raise MalformedBundle("subject is {'artefact': ID} or {'sha256': HEX}")
    if not isinstance(raw_entries, list) or not isinstance(raw_maps, list):
        raise MalformedBundle("entries and maps are arrays")
    if len(raw_entries) > MAX_ENTRIES:
        raise MalformedBundle("too many entries")
    entries = []
    for e in raw_entries:
        if not isinstance(e, dict) or not {"index", "leaf", "inclusion"} <= set(e):
            raise MalformedBundle("an entry is {index, leaf, inclusion}")
        if not _is_int(e["index"]) or e["index"] < 0:
            raise MalformedBundle("an entry index is a non-negative integer")
        try:
            leaf = _b64(e["leaf"])
        except _Bad:
            raise MalformedBundle("an entry leaf is base64") from None
        entries.append((e["index"], leaf, _hash_list(e["inclusion"])))
    maps = []
    for m in raw_maps:
        if not isinstance(m, dict) or not {"key", "value", "bucket", "path"} <= set(m):
            raise MalformedBundle("a map proof is {key, value, bucket, path}")
        if not isinstance(m["key"], str) or not (m["value"] is None
                                                 or isinstance(m["value"], dict)):
            raise MalformedBundle("a map proof has a string key and an object or null value")
        if not isinstance(m["bucket"], list) or not all(
                isinstance(p, list) and len(p) == 2 for p in m["bucket"]):
            raise MalformedBundle("a map bucket is an array of pairs")
        bucket = [(_hex32(kh), _hex32(vh)) for kh, vh in m["bucket"]]
        maps.append((m["key"], m["value"], bucket, _hash_list(m["path"])))
    return {"origin": origin, "checkpoint": note, "subject": dict(subject),
            "entries": entries, "maps": maps}


# ---- B2/B3: signed note, checkpoint, cosignatures ----------------------------------------


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or _LINE_CONTROL.search(name):
        raise _Bad(f"bad key name {name!r}")


def parse_vkey(vkey: Any, alg: int) -> tuple[str, bytes, bytes]:
    """``name+keyid+base64(alg || pk)`` -> (name, key id, public key)."""
    if not isinstance(vkey, str) or vkey.count("+") < 2:
        raise _Bad("a verifier key is name+keyid+base64")
    name, keyid_hex, material = vkey.split("+", 2)
    _check_name(name)
    if not _KEY_ID.fullmatch(keyid_hex):
        raise _Bad("a key id is 8 lowercase hex digits")
    raw = _b64(material, canonical=True)
    if len(raw) != 33 or raw[0] != alg:
        raise _Bad(f"not a type 0x{alg:02x} Ed25519 key")
    keyid = H(name.encode() + b"\n" + raw)[:4]
    if keyid.hex() != keyid_hex:
        raise _Bad("the key id does not match the key")
    return name, keyid, raw[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Text and signature lines (name, key id, signature data) of a signed note."""
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Bad("not UTF-8") from None
    if size > MAX_NOTE or _NOTE_CONTROL.search(note):
        raise _Bad("too large or a control character")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise _Bad("no blank line")
    text, block = note[:cut + 1], note[cut + 2:]
    if not block.endswith("\n"):
        raise _Bad("the signature block does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGS:
        raise _Bad("too many signatures")
    sigs = []
    for line in lines:
        if not line.startswith("\u2014 "):
            raise _Bad("a signature line starts with an em dash and a space")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise _Bad("a signature line is a name and a signature")
        _check_name(fields[0])
        raw = _b64(fields[1], canonical=True)
        if len(raw) < 5:
            raise _Bad("a signature is shorter than 5 bytes")
        sigs.append((fields[0], raw[:4], raw[4:]))
    return text, sigs


def ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except Exception:  # bad signature, or a key libsodium refuses
        return False
    return True


def parse_checkpoint(text: str) -> tuple[str, int, bytes, list[str]]:
    if not text.endswith("\n"):
        raise _Bad("the text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _Bad("fewer than three lines")
    origin, size_line, root_line, *extensions = lines
    if not origin or _LINE_CONTROL.search(origin) or not _SIZE.fullmatch(size_line):
        raise _Bad("bad origin or size")
    size = int(size_line)
    root = _b64(root_line, canonical=True)
    if size >= 1 << 64 or len(root) != 32:
        raise _Bad("bad size or root")
    if any(not line or _LINE_CONTROL.search(line) for line in extensions):
        raise _Bad("bad extension line")
    return origin, size, root, extensions


def open_checkpoint(note: str, log_key: str) -> tuple[str, int, bytes, list[str], str, list]:
    """B2: verify the note with the log key; return the checkpoint, text and lines."""
    name, keyid, pk = parse_vkey(log_key, 0x01)
    text, sigs = split_note(note)
    verified = False
    for sig_name, sig_id, sig in sigs:
        if (sig_name, sig_id) == (name, keyid):
            if not ed25519_ok(pk, text.encode(), sig):
                raise _Bad("a log signature does not verify")
            verified = True
    if not verified:
        raise _Bad("no signature by the log key")
    origin, size, root, extensions = parse_checkpoint(text)
    if origin != name:
        raise _Bad("foreign origin")
    return origin, size, root, extensions, text, sigs


def check_witnesses(text: str, sigs: Sequence[tuple[str, bytes, bytes]],
                    witness_keys: Sequence[str], quorum: Any) -> None:
    """B3: tlog-cosignature cosignature/v1 with a quorum of distinct trusted witnesses."""
    table: dict[tuple[str, bytes], bytes] = {}
    for vkey in witness_keys:
        name, keyid, pk = parse_vkey(vkey, 0x04)
        if (name, keyid) in table or pk in table.values():
            raise _Bad("a witness key is given twice")
        table[(name, keyid)] = pk
    if not _is_int(quorum) or not 1 <= quorum <= len(table):
        raise _Bad("the quorum is not between 1 and the number of witness keys")
    valid: set[str] = set()
    for name, keyid, data in sigs:
        pk = table.get((name, keyid))
        if pk is None:
            continue
        if len(data) != 8 + 64:
            raise _Bad("a cosignature is not timestamp || signature")
        (t,) = struct.unpack(">Q", data[:8])
        if t > (1 << 63) - 1 or not ed25519_ok(
                pk, f"cosignature/v1\ntime {t}\n".encode() + text.encode(), data[8:]):
            raise _Bad("a trusted cosignature does not verify")
        valid.add(name)
    if len(valid) < quorum:
        raise _Bad("quorum not met")


# ---- B4: inclusion and leaves -------------------------------------------------------------


def inclusion_ok(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                 root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def _strict_json(data: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise _Bad("duplicate key")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise _Bad(f"{name} is not JSON")

    try:
        value = json.loads(data, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise _Bad("not JSON") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Bad("nested too deeply")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


def _need(obj: Any, fields: Iterable[str], kind: type | tuple[type, ...]) -> None:
    if not isinstance(obj, dict):
        raise _Bad("not an object")
    for name in fields:
        value = obj.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _Bad(f"payload field {name} missing or of another type")


def _check_payload(kind: str, p: dict[str, Any]) -> None:
    """The payload fields of docs/bundle.md §2 that this verifier reads."""
    if kind == "ledger.genesis":
        _need(p, ["actor"], dict)
        _need(p["actor"], ["id", "public_key"], str)
    elif kind == "actor.enrol":
        _need(p, ["id", "public_key"], str)
    elif kind == "legal-basis.record":
        _need(p, ["id"], str)
    elif kind == "artefact.register":
        _need(p, ["id", "case"], str)
        _need(p, ["size"], int)
        _need(p, ["digests"], dict)
        if not all(isinstance(v, str) for v in p["digests"].values()) or not (
                isinstance(p["digests"].get("sha256"), str)
                and _LOWER_HEX64.fullmatch(p["digests"]["sha256"])):
            raise _Bad("digests")
    elif kind == "custody.dispatch":
        _need(p, ["transfer", "artefact", "to_org", "purpose"], str)
        _need(p, ["to_actor", "legal_basis"], (str, type(None)))
    elif kind == "custody.receipt":
        _need(p, ["transfer", "artefact"], str)
        _need(p, ["recomputed"], dict)
        if p.get("outcome") not in ("accepted", "rejected") or not all(
                isinstance(v, str) for v in p["recomputed"].values()):
            raise _Bad("receipt")
    elif kind == "access.record":
        _need(p, ["artefact", "action", "purpose", "outcome"], str)
    elif kind == "verification.record":
        _need(p, ["artefact", "verdict"], str)


def parse_leaf(leaf: bytes) -> dict[str, Any]:
    """B4: the leaf JCS({index, ledger_time, event: {event, sig}}), strictly."""
    obj = _strict_json(leaf)
    if not isinstance(obj, dict) or set(obj) != {"index", "ledger_time", "event"}:
        raise _Bad("leaf keys")
    if not _is_int(obj["index"]) or obj["index"] < 0:
        raise _Bad("leaf index")
    if not _is_int(obj["ledger_time"]) or not 0 <= obj["ledger_time"] <= MAX_TIME:
        raise _Bad("ledger_time")
    signed = obj["event"]
    if not isinstance(signed, dict) or set(signed) != {"event", "sig"}:
        raise _Bad("signed event keys")
    if len(_b64(signed["sig"], canonical=True)) != 64:
        raise _Bad("sig")
    e = signed["event"]
    keys = {"v", "kind", "origin", "nonce", "claimed_time", "signer", "key_id", "prev",
            "payload"}
    if not isinstance(e, dict) or set(e) != keys:
        raise _Bad("event keys")
    if not _is_int(e["v"]) or e["v"] != 1 or e["kind"] not in KINDS:
        raise _Bad("version or kind")
    origin = e["origin"]
    if not isinstance(origin, str) or not 0 < len(origin) <= 256 or any(
            c.isspace() or c == "+" for c in origin):
        raise _Bad("origin")
    for name, pattern in (("nonce", _NONCE), ("key_id", _KEY_ID), ("signer", _ID)):
        if not isinstance(e[name], str) or not pattern.fullmatch(e[name]):
            raise _Bad(name)
    if e["prev"] is not None and not (isinstance(e["prev"], str)
                                      and _LOWER_HEX64.fullmatch(e["prev"])):
        raise _Bad("prev")
    if not _is_int(e["claimed_time"]) or not 0 <= e["claimed_time"] <= MAX_TIME:
        raise _Bad("claimed_time")
    if not isinstance(e["payload"], dict):
        raise _Bad("payload")
    if jcs(obj) != leaf:
        raise _Bad("not JCS")
    _check_payload(e["kind"], e["payload"])
    return obj


def subjects(event: dict[str, Any]) -> list[str]:
    p = event["payload"]
    if event["kind"] == "artefact.register":
        return ["art/" + p["id"], "sha256/" + p["digests"]["sha256"]]
    if event["kind"] in ART_KINDS:
        return ["art/" + p["artefact"]]
    return []


# ---- B5: the state map ----------------------------------------------------------------------


def map_node(left: bytes, right: bytes) -> bytes:
    return ZERO if left == ZERO and right == ZERO else H(b"\x03" + left + right)


def map_proof_ok(root: bytes, key: str, value: dict[str, Any] | None,
                 others: Sequence[tuple[bytes, bytes]], path: Sequence[bytes]) -> bool:
    if key.startswith("nonce/"):
        return False
    kh = H(key.encode())
    bucket = int.from_bytes(kh[:2], "big")
    seen = [o[0] for o in others]
    if kh in seen or len(set(seen)) != len(seen):
        return False
    if any(int.from_bytes(o[0][:2], "big") != bucket for o in others):
        return False
    items = [kh_ + vh for kh_, vh in others]
    if value is not None:
        try:
            items.append(kh + H(jcs(value)))
        except _Bad:
            return False
    h = H(b"\x02" + b"".join(sorted(items))) if items else ZERO
    if len(path) != MAP_LEVELS:
        return False
    for level, sibling in enumerate(path):
        h = map_node(sibling, h) if (bucket >> level) & 1 else map_node(h, sibling)
    return h == root


# ---- the verification ------------------------------------------------------------------------


def fold(leaf_hashes: Iterable[bytes]) -> str:
    acc = ZERO
    for h in leaf_hashes:
        acc = H(acc + h)
    return acc.hex()


def verify(bundle_obj: dict[str, Any], log_key: str, evidence_sha256: str | None = None,
           witness_keys: Sequence[str] = (), quorum: int = 0) -> tuple[str, list[str]]:
    """Steps B1-B12 of docs/bundle.md: ``(verdict, fault kinds in the order found)``."""
    b = parse_bundle(bundle_obj)                                                    # B1
    faults: list[str] = []
    sha = evidence_sha256.lower() if evidence_sha256 else None

    def done(verdict: str) -> tuple[str, list[str]]:
        return ("fault" if faults else verdict), faults

    try:                                                                            # B2
        origin, size, root, extensions, text, sigs = open_checkpoint(b["checkpoint"], log_key)
    except _Bad:
        faults.append("checkpoint")
        return done("fault")
    if b["origin"] != origin:
        faults.append("checkpoint")
    if witness_keys or quorum:                                                      # B3
        try:
            check_witnesses(text, sigs, witness_keys, quorum)
        except _Bad:
            faults.append("witness")
    map_lines = [x for x in extensions if x.startswith(MAP_EXTENSION)]
    try:
        if len(map_lines) != 1:
            raise _Bad("no map root" if not map_lines else "two map roots")
        map_root = base64.b64decode(map_lines[0][len(MAP_EXTENSION):], validate=True)
        if len(map_root) != 32:
            raise _Bad("map root size")
    except (_Bad, binascii.Error):
        if map_lines or not faults:
            faults.append("map")
        return done("fault")

    accepted: dict[int, tuple[dict[str, Any], bytes]] = {}                         # B4
    for index, leaf, proof in b["entries"]:
        if index in accepted:
            faults.append("leaf")
            continue
        leaf_hash = H(b"\x00" + leaf)
        if not inclusion_ok(leaf_hash, index, size, proof, root):
            faults.append("inclusion")
            continue
        try:
            parsed = parse_leaf(leaf)
        except _Bad:
            faults.append("leaf")
            continue
        if parsed["index"] != index or parsed["event"]["event"]["origin"] != origin:
            faults.append("leaf")
            continue
        accepted[index] = (parsed, leaf_hash)

    proven: dict[str, dict[str, Any] | None] = {}                                   # B5
    for key, value, others, path in b["maps"]:
        if key in proven or not map_proof_ok(map_root, key, value, others, path):
            faults.append("map")
            continue
        proven[key] = value

    def history(subject: str, value: dict[str, Any] | None) -> list[tuple[int, dict, bytes]]:
        chain = [(i, accepted[i][0], accepted[i][1]) for i in sorted(accepted)
                 if subject in subjects(accepted[i][0]["event"]["event"])]          # B7
        if value is None:
            if chain:
                faults.append("incomplete")
            return chain
        if len(chain) != value.get("n") or fold(h for _, _, h in chain) != value.get("acc") \
                or (chain and chain[-1][0] != value.get("last")):
            faults.append("incomplete")
        return chain

    subject = b["subject"]                                                          # B6
    art = subject.get("artefact")
    if art is None:
        digest = subject["sha256"].lower()
        sha = sha or digest
        key = "hist/sha256/" + digest
        if key not in proven:
            faults.append("incomplete")
            return done("fault")
        regs = history("sha256/" + digest, proven[key])
        if proven[key] is None:
            return done("not-registered")
        if not regs:
            faults.append("incomplete")
            return done("fault")
        art = regs[0][1]["event"]["event"]["payload"]["id"]
    key = "hist/art/" + art
    if key not in proven:
        faults.append("incomplete")
        return done("fault")
    if proven[key] is None:
        return done("not-registered")
    chain = history("art/" + art, proven[key])

    state = replay(chain, accepted, proven, art, faults)                            # B8-B10
    record = proven.get("art/" + art)                                               # B11
    if state is not None and record is not None:
        for name in ("custodian", "head", "open_transfer", "incidents", "digests", "case"):
            if record.get(name) != state.get(name):
                faults.append("state")
    if state is None:
        return done("fault")
    if faults:                                                                      # B12
        return done("fault")
    if sha is None:
        return done("verified")
    return done("authentic" if state["digests"]["sha256"] == sha else "mismatch")


def event_id(signed: dict[str, Any]) -> str:
    return H(jcs(signed)).hex()


def signer_record(signed: dict[str, Any], index: int,
                  accepted: dict[int, tuple[dict[str, Any], bytes]],
                  proven: dict[str, dict[str, Any] | None], faults: list[str]
                  ) -> dict[str, Any] | None:
    """B8 (key) and B9 (signature)."""
    event = signed["event"]
    actor = proven.get("actor/" + event["signer"])
    if actor is None:
        faults.append("key")
        return None
    enrolled, revoked = actor.get("enrolled_at"), actor.get("revoked_at")
    try:
        public = _b64(actor.get("public_key"))
        if not _is_int(enrolled) or not (revoked is None or _is_int(revoked)) \
                or not isinstance(actor.get("org", "?"), str):
            raise _Bad("malformed actor record")
    except _Bad:
        faults.append("key")
        return None
    key_id = H(event["signer"].encode() + b"\n\x01" + public)[:4].hex()
    if key_id != event["key_id"] or not ed25519_ok(
            public, EVENT_DOMAIN + jcs(event), base64.b64decode(signed["sig"])):
        faults.append("signature")
    if not enrolled <= index or (revoked is not None and revoked <= index):
        faults.append("key")
    enrol = accepted.get(enrolled)
    ok = False
    if enrol is not None:
        e = enrol[0]["event"]["event"]
        if e["kind"] == "ledger.genesis":
            ok = e["payload"]["actor"]["id"] == event["signer"] \
                and e["payload"]["actor"]["public_key"] == actor["public_key"]
        elif e["kind"] == "actor.enrol":
            ok = e["payload"]["id"] == event["signer"] \
                and e["payload"]["public_key"] == actor["public_key"]
    if not ok:
        faults.append("key")
    return actor


def replay(chain: Sequence[tuple[int, dict[str, Any], bytes]],
           accepted: dict[int, tuple[dict[str, Any], bytes]],
           proven: dict[str, dict[str, Any] | None], art: str, faults: list[str]
           ) -> dict[str, Any] | None:
    """B8-B10: keys, signatures, and the custody chain of the artefact."""
    first = chain[0][1]["event"]["event"] if chain else None
    if first is None or first["kind"] != "artefact.register" or first["payload"]["id"] != art:
        faults.append("chain")
        return None
    st: dict[str, Any] = {}
    open_tr: dict[str, Any] | None = None
    for index, leaf, _ in chain:
        signed = leaf["event"]
        event, p = signed["event"], signed["event"]["payload"]
        actor = signer_record(signed, index, accepted, proven, faults)
        org = actor.get("org", "?") if actor else "?"
        kind = event["kind"]
        if kind == "artefact.register" and st:
            faults.append("chain")  # registered again: the first registration stands
        elif kind == "artefact.register":
            st = {"digests": dict(p["digests"]), "size": p["size"], "case": p["case"],
                  "custodian": org, "head": event_id(signed), "open_transfer": None,
                  "incidents": 0}
        elif kind in ("custody.dispatch", "custody.receipt"):
            if event["prev"] != st["head"]:
                faults.append("chain")
            if kind == "custody.dispatch":
                if org != st["custodian"] or open_tr is not None:
                    faults.append("chain")
                basis = p.get("legal_basis")
                if basis is not None:
                    rec = proven.get("lb/" + basis)
                    at = rec.get("recorded_at") if rec else None
                    entry = accepted.get(at) if _is_int(at) else None
                    e = entry[0]["event"]["event"] if entry else None
                    if e is None or e["kind"] != "legal-basis.record" \
                            or e["payload"]["id"] != basis:
                        faults.append("legal-basis")
                open_tr = {"transfer": p["transfer"], "to_org": p["to_org"]}
                st["open_transfer"] = p["transfer"]
            else:
                if open_tr is None or open_tr["transfer"] != p["transfer"] \
                        or org != open_tr["to_org"]:
                    faults.append("chain")
                if p["outcome"] == "accepted":
                    if any(p["recomputed"].get(a) != v for a, v in st["digests"].items()
                           if a in STRONG):
                        faults.append("chain")
                    st["custodian"] = open_tr["to_org"] if open_tr else org
                    if p.get("seal_discrepancy"):  # accepted despite seals that differ
                        st["incidents"] += 1
                else:
                    st["incidents"] += 1
                open_tr, st["open_transfer"] = None, None
            st["head"] = event_id(signed)
    return st
