"""Issue 2, "Done when": an outside verifier that knows only RFC 6962/9162 and C2SP.

The verification below uses ONLY hashlib, base64 and PyNaCl on what the CLI prints
(``log entries``, ``log checkpoint``, ``log verifier-key``, ``log proof ...``): it does not
import the ledger's Merkle, checkpoint or note code.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from tests.cli.conftest import World

# ---- RFC 6962 / RFC 9162, written from the RFC text ------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def mth(leaf_hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash over already-hashed leaves."""
    n = len(leaf_hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def verify_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first > second:
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path  # the empty tree is a prefix of every tree
    if not path:
        return False
    if first & (first - 1) == 0:  # an exact power of 2
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---- C2SP signed-note / tlog-checkpoint ---------------------------------------------------


def parse_verifier_key(vkey: str) -> tuple[str, bytes, bytes]:
    """``name+hex(keyid)+base64(0x01 || pubkey)`` -> (name, keyid, pubkey)."""
    name, keyid_hex, b64 = vkey.split("+", 2)
    blob = base64.b64decode(b64, validate=True)
    assert len(blob) == 33, "not an Ed25519 note verifier key"
    assert blob[0] == 0x01, "not an Ed25519 note verifier key"
    keyid = bytes.fromhex(keyid_hex)
    pubkey = blob[1:]
    assert keyid == sha256(name.encode() + b"\n" + b"\x01" + pubkey)[:4]
    return name, keyid, pubkey


def open_checkpoint(note: str, name: str, keyid: bytes,
                    pubkey: bytes) -> tuple[str, int, bytes]:
    """Verify the note's signature by (name, keyid) and parse the checkpoint body."""
    text, sep, sigs = note.partition("\n\n")
    assert sep, "a signed note has a blank line before its signatures"
    text += "\n"
    verified = False
    for line in sigs.splitlines():
        assert line.startswith("— "), line
        sig_name, b64 = line[2:].split(" ")
        blob = base64.b64decode(b64, validate=True)
        if sig_name == name and blob[:4] == keyid:
            VerifyKey(pubkey).verify(text.encode(), blob[4:])  # raises if bad
            assert len(blob) == 4 + 64
            verified = True
    assert verified, "no signature by the log key"
    lines = text.split("\n")
    origin, size, root_b64 = lines[0], int(lines[1]), lines[2]
    root = base64.b64decode(root_b64, validate=True)
    assert len(root) == 32
    return origin, size, root


# ---- the test --------------------------------------------------------------------------


@pytest.fixture
def busy_world(world: World) -> World:
    """The standard world plus cross-border custody, a rejection and accesses."""
    lb = world.legal_basis()
    tr = world.dispatch(lb)
    world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian", expect=1)
    tr = world.dispatch(lb)
    world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian", expect=0)
    world.cli("access", world.art, "--action", "view", "--purpose", "x", "--as", "fr-analyst",
              expect=3)
    return world


def test_outside_verifier(busy_world: World) -> None:
    cli = busy_world.cli
    entries = cli("log", "entries", "--json", expect=0).lines
    size = len(entries)
    assert size == 20
    leaf_hashes = []
    for i, line in enumerate(entries):
        assert line["index"] == i
        leaf = base64.b64decode(line["entry"], validate=True)
        leaf_hash = bytes.fromhex(line["leaf_hash"])
        assert leaf_hash == sha256(b"\x00" + leaf), f"leaf hash of entry {i}"
        leaf_hashes.append(leaf_hash)
    root = mth(leaf_hashes)

    vkey = cli("log", "verifier-key", expect=0).out.strip()
    name, keyid, pubkey = parse_verifier_key(vkey)
    note = cli("log", "checkpoint", expect=0).out
    origin, cp_size, cp_root = open_checkpoint(note, name, keyid, pubkey)
    assert origin == name
    assert cp_size == size
    assert cp_root == root

    # a forged checkpoint does not verify
    forged = note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1)
    with pytest.raises(BadSignatureError):
        open_checkpoint(forged, name, keyid, pubkey)

    roots = {m: mth(leaf_hashes[:m]) for m in range(size + 1)}
    for i in range(size):
        proof = cli("log", "proof", "inclusion", "--index", i, "--json", expect=0).json
        assert (proof["index"], proof["tree_size"]) == (i, size)
        assert bytes.fromhex(proof["leaf_hash"]) == leaf_hashes[i]
        path = [bytes.fromhex(h) for h in proof["hashes"]]
        assert verify_inclusion(i, size, leaf_hashes[i], path, root), f"inclusion {i}"
        # the verifier is not vacuous: a wrong leaf, index or root fails
        assert not verify_inclusion(i, size, leaf_hashes[i - 1 if i else 1], path, root)
        assert not verify_inclusion((i + 1) % size, size, leaf_hashes[i], path, root)
        assert not verify_inclusion(i, size, leaf_hashes[i], path, roots[size - 1])
        if path:
            bad = [*path[:-1], bytes([path[-1][0] ^ 1]) + path[-1][1:]]
            assert not verify_inclusion(i, size, leaf_hashes[i], bad, root)

    for m in range(size + 1):
        proof = cli("log", "proof", "consistency", "--old", m, "--json", expect=0).json
        assert (proof["old_size"], proof["new_size"]) == (m, size)
        path = [bytes.fromhex(h) for h in proof["hashes"]]
        assert verify_consistency(m, size, roots[m], root, path), f"consistency {m}"
        if 0 < m < size:
            assert not verify_consistency(m, size, roots[m - 1], root, path)
            assert not verify_consistency(m, size, roots[m], roots[size - 1], path)
            bad = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
            assert not verify_consistency(m, size, roots[m], root, bad)


def test_historical_proofs(busy_world: World) -> None:
    """Proofs against older tree sizes (``--size`` / ``--new``) verify too."""
    cli = busy_world.cli
    leaf_hashes = [bytes.fromhex(line["leaf_hash"])
                   for line in cli("log", "entries", "--json", expect=0).lines]
    for n in (1, 6, 8, 13):
        root = mth(leaf_hashes[:n])
        for i in range(n):
            proof = cli("log", "proof", "inclusion", "--index", i, "--size", n, "--json",
                        expect=0).json
            path = [bytes.fromhex(h) for h in proof["hashes"]]
            assert verify_inclusion(i, n, leaf_hashes[i], path, root), (i, n)
        for m in range(1, n + 1):
            proof = cli("log", "proof", "consistency", "--old", m, "--new", n, "--json",
                        expect=0).json
            path = [bytes.fromhex(h) for h in proof["hashes"]]
            assert verify_consistency(m, n, mth(leaf_hashes[:m]), root, path), (m, n)
