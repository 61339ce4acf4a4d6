"""The sealed evidence exchange through the CLI (docs/sealed-exchange.md).

Two agencies in one embedded home (the standard world: BKA in DE sends, NFI in NL
receives; ``custody init`` and ``custody org add`` gave each its encryption key):
``transfer --seal-file --out`` then ``receive --package``; every mutation of the package
is a SIGNED rejection with its reason, exit 1, and no opened evidence left behind; seals
that differ; ``--seal-discrepancy``; duplicates and what ``verify`` lists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.evidence import Digests
from ledger.home import Home, open_store
from ledger.home import custody as custody_of
from ledger.seal import seal
from tests.cli.conftest import CASE, World, assert_error


def sealed_transfer(world: World, *extra: str, name: str = "disk.img.age",
                    seals: tuple[str, ...] = ("S-1001",), expect: int = 0) -> tuple[str, Path]:
    """Dispatch the world's artefact to NFI as a sealed package; (transfer id, package)."""
    lb = world.legal_basis()
    package = world.root / "outbox" / name
    package.parent.mkdir(exist_ok=True)
    args = ["transfer", world.art, "--to", "nfi", "--purpose", "analysis", "--legal-basis",
            lb, "--seal-file", world.evidence, "--out", package, "--as", "de-custodian",
            "--json", *extra]
    for s in seals:
        args += ["--seal", s]
    res = world.cli(*args, expect=expect)
    return (res.json["transfer"] if expect == 0 else ""), package


def inbox(world: World) -> Path:
    folder = world.root / "inbox"
    folder.mkdir(exist_ok=True)
    return folder


def receive(world: World, tr: str, package: Path, *extra: str, expect: int | None = None,
            seals: tuple[str, ...] = ("S-1001",)) -> Any:
    args = ["receive", tr, "--package", package, "--out", inbox(world), "--as",
            "nl-custodian", "--json", *extra]
    for s in seals:
        args += ["--seal", s]
    return world.cli(*args, expect=expect)


def transfer_record(world: World, tr: str) -> dict[str, Any]:
    rows = world.cli("transfers", "list", "--json", "--as", "nl-custodian", expect=0).lines
    return next(r for r in rows if r["id"] == tr)


def signed_payload(world: World, index: int) -> dict[str, Any]:
    """The payload of the signed event at log index ``index`` (from the log's leaf)."""
    rows = world.cli("log", "entries", "--json", expect=0).lines
    leaf = json.loads(base64.b64decode(next(r for r in rows if r["index"] == index)["entry"]))
    return dict(leaf["event"]["event"]["payload"])


def org_recipient(world: World, org: str) -> str:
    return str(world.cli("org", "key", "show", org, "--json", expect=0).json["recipient"])


def artefact(world: World) -> dict[str, Any]:
    return dict(world.cli("artefact", "show", world.art, "--json", expect=0).json)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- the story -------------------------------------------------------------------------


def test_sealed_transfer_then_receipt_moves_custody(world: World) -> None:
    tr, package = sealed_transfer(world)
    res_json = transfer_record(world, tr)
    pkg = res_json["package"]
    assert pkg["sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert pkg["size"] == package.stat().st_size
    assert pkg["format"] == "age-v1"
    assert pkg["also_to"] == []
    nfi_key = world.cli("org", "key", "show", "nfi", "--json", expect=0).json
    assert pkg["recipient"] == nfi_key["current"]
    assert pkg["digests"] == {"sha256": hashlib.sha256(world.data).hexdigest(),
                              "sha512": hashlib.sha512(world.data).hexdigest()}
    assert package.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert world.data not in package.read_bytes()

    res = receive(world, tr, package, expect=0)
    assert res.json["outcome"] == "accepted"
    assert res.json["custodian"] == "nfi"
    assert res.json["package_sha256"] == pkg["sha256"]
    opened = Path(res.json["file"])
    assert opened == inbox(world) / "disk.img"
    assert opened.read_bytes() == world.data
    assert files_in(inbox(world)) == ["disk.img"]
    signed = signed_payload(world, res.json["log_index"])
    assert signed["outcome"] == "accepted"
    assert signed["package_sha256"] == pkg["sha256"]
    assert signed["recomputed"] == pkg["digests"]
    assert transfer_record(world, tr)["package_received"] == pkg["sha256"]
    assert artefact(world)["custodian"] == "nfi"
    verdict = world.cli("verify", world.evidence, "--json", expect=0).json
    assert verdict["verdict"] == "authentic"
    assert verdict["custodian"] == "nfi"
    # The court's timeline shows which package was sent and which arrived (proven).
    items = {i["kind"]: i for i in verdict["custody"]}
    assert items["custody.dispatch"]["package_sha256"] == pkg["sha256"]
    assert items["custody.receipt"]["package_sha256"] == pkg["sha256"]
    world.cli("audit", expect=0)


def test_text_output_names_the_package_and_the_opened_file(world: World) -> None:
    lb = world.legal_basis()
    package = world.root / "disk.img.age"
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "analysis",
                    "--legal-basis", lb, "--seal-file", world.evidence, "--out", package,
                    "--id", "TR-7", "--as", "de-custodian", expect=0)
    assert f"Dispatched {world.art} to nfi: transfer TR-7" in res.out
    assert f"sealed package {package}" in res.out
    # Default --out: the package's folder, named as the package without .age.
    res = world.cli("receive", "TR-7", "--package", package, "--as", "nl-custodian",
                    expect=0)
    assert "Accepted" in res.out
    assert f"evidence in {world.root / 'disk.img'}" in res.out
    assert (world.root / "disk.img").read_bytes() == world.data


def test_the_stock_age_tool_opens_the_package_with_the_receiving_key(world: World) -> None:
    age = shutil.which("age")
    if age is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the 'age' tool is not installed, and CI=true")
        pytest.skip("the 'age' tool is not installed (apt-get install -y age)")
    _, package = sealed_transfer(world)
    identity = Home(world.home).load().org_identity("nfi")
    keyfile = world.root / "nfi-identity.txt"
    keyfile.write_text(identity + "\n")
    keyfile.chmod(0o600)
    out = world.root / "by-age.img"
    subprocess.run([age, "-d", "-i", str(keyfile), "-o", str(out), str(package)], check=True)
    assert out.read_bytes() == world.data


def test_seal_to_self_lets_the_sender_open_its_package(world: World) -> None:
    tr, package = sealed_transfer(world, "--seal-to-self")
    pkg = transfer_record(world, tr)["package"]
    bka_key = world.cli("org", "key", "show", "bka", "--json", expect=0).json["current"]
    assert pkg["also_to"] == [bka_key]
    from ledger.seal import open_package

    home = Home(world.home).load()
    reg = Digests(hashlib.sha256(world.data).hexdigest(), hashlib.sha512(world.data).hexdigest(),
                  None, len(world.data))
    mine = open_package(package, [home.org_identity("bka")], world.root / "mine.img",
                        expected_package_sha256=pkg["sha256"], expected=reg)
    assert mine.path.read_bytes() == world.data
    receive(world, tr, package, expect=0)


# ---- what the sender is refused, with nothing left behind ------------------------------


def test_a_refused_dispatch_leaves_no_package(world: World) -> None:
    package = world.root / "p.age"
    before = world.size()
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "analysis",
                    "--seal-file", world.evidence, "--out", package, "--as", "de-custodian")
    assert_error(res, 3, "crosses a border and needs a legal basis")
    assert not package.exists()
    assert files_in(world.root) == ["evidence", "home"]
    assert world.size() == before


def test_sealing_other_bytes_than_the_registered_ones_is_refused_before_signing(
        world: World) -> None:
    lb = world.legal_basis()
    package = world.root / "p.age"
    before = world.size()
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "analysis",
                    "--legal-basis", lb, "--seal-file", world.tampered(), "--out", package,
                    "--as", "de-custodian")
    assert_error(res, 1, "is not the registered bytes")
    assert "nothing was signed" in res.err
    assert not package.exists()
    assert world.size() == before


def test_a_receiving_org_without_a_current_key_is_one_sentence(world: World) -> None:
    key = world.cli("org", "key", "show", "nfi", "--json", expect=0).json["current"]
    world.cli("org", "key", "revoke", "nfi", key, "--reason", "laptop stolen", "--as",
              "bka-admin", expect=0)
    lb = world.legal_basis()
    package = world.root / "p.age"
    before = world.size()
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "analysis",
                    "--legal-basis", lb, "--seal-file", world.evidence, "--out", package,
                    "--as", "de-custodian")
    assert_error(res, 3, "nfi (the receiving organisation) has no current encryption key")
    assert "custody org key rotate nfi" in res.err
    assert not package.exists()
    assert world.size() == before
    res = world.cli("transfer", world.art, "--to", "nobody", "--purpose", "analysis",
                    "--legal-basis", lb, "--seal-file", world.evidence, "--out", package,
                    "--as", "de-custodian")
    assert_error(res, 4, "unknown organisation 'nobody'")


def test_the_options_go_together(world: World) -> None:
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--seal-file",
                    world.evidence, "--as", "de-custodian")
    assert_error(res, 2, "--seal-file needs --out PACKAGE")
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--out",
                    world.root / "p.age", "--as", "de-custodian")
    assert_error(res, 2, "go with --seal-file")
    (world.root / "exists.age").write_bytes(b"keep")
    lb = world.legal_basis()
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--legal-basis",
                    lb, "--seal-file", world.evidence, "--out", world.root / "exists.age",
                    "--as", "de-custodian")
    assert_error(res, 2, "refusing to overwrite")
    assert (world.root / "exists.age").read_bytes() == b"keep"


def test_a_dispatch_lost_to_another_one_deletes_its_package(world: World) -> None:
    tr, first = sealed_transfer(world)
    second = world.root / "second.age"
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "again",
                    "--legal-basis", transfer_record(world, tr)["legal_basis"],
                    "--seal-file", world.evidence, "--out", second, "--as", "de-custodian")
    assert_error(res, 3, "already has an open dispatch")
    assert first.exists()
    assert not second.exists()


# ---- what the receiver refuses: signed rejections ---------------------------------------


def _flip(at: Callable[[bytes], int]) -> Callable[[bytes, World], bytes]:
    def mutate(blob: bytes, world: World) -> bytes:
        out = bytearray(blob)
        out[at(blob)] ^= 0x01
        return bytes(out)
    return mutate


def _payload_start(blob: bytes) -> int:
    return blob.index(b"\n", blob.index(b"\n---") + 1) + 1


def _resealed_to(recipient: Callable[[World], str]) -> Callable[[bytes, World], bytes]:
    def mutate(blob: bytes, world: World) -> bytes:
        out = world.root / "resealed.age"
        out.unlink(missing_ok=True)
        seal(world.evidence, out, [recipient(world)])
        return out.read_bytes()
    return mutate


def _another_transfers_package(blob: bytes, world: World) -> bytes:
    other = world.evidence_copy("other.img", b"another artefact's bytes" * 999)
    out = world.root / "other.age"
    seal(other, out, [org_recipient(world, "nfi")])
    return out.read_bytes()


CLI_MUTATIONS: dict[str, Callable[[bytes, World], bytes]] = {
    "header-byte": _flip(lambda b: 3),
    "recipient-stanza-byte": _flip(lambda b: b.index(b"-> X25519 ") + 14),
    "payload-byte": _flip(lambda b: _payload_start(b) + 40),
    "truncated": lambda b, w: b[:-7],
    "appended": lambda b, w: b + b"trailing bytes",
    "re-encrypted-to-another-key": _resealed_to(lambda w: org_recipient(w, "ofac")),
    "re-encrypted-to-the-same-key": _resealed_to(lambda w: org_recipient(w, "nfi")),
    "package-of-another-transfer": _another_transfers_package,
}


@pytest.mark.parametrize("name", sorted(CLI_MUTATIONS))
def test_a_mutated_package_is_a_signed_rejection(world: World, name: str) -> None:
    tr, package = sealed_transfer(world)
    sent = transfer_record(world, tr)["package"]["sha256"]
    mutated = CLI_MUTATIONS[name](package.read_bytes(), world)
    package.write_bytes(mutated)
    before = world.size()
    res = receive(world, tr, package, expect=1)
    assert res.json["outcome"] == "rejected"
    assert res.json["reason"] == "package-digest"
    assert res.json["package_sha256"] == hashlib.sha256(mutated).hexdigest()
    assert sent in res.json["detail"]
    assert files_in(inbox(world)) == [], "opened evidence left behind"
    assert world.size() == before + 1
    signed = signed_payload(world, res.json["log_index"])
    assert signed["outcome"] == "rejected"
    assert signed["reason"].startswith("package-digest: ")
    assert signed["package_sha256"] == hashlib.sha256(mutated).hexdigest()
    art = artefact(world)
    assert art["custodian"] == "bka"
    assert art["incidents"] == 1
    assert art["open_transfer"] is None
    assert transfer_record(world, tr)["status"] == "rejected"
    world.cli("audit", expect=0)


def test_rejection_text_names_the_reason(world: World) -> None:
    tr, package = sealed_transfer(world)
    package.write_bytes(package.read_bytes()[:-1])
    res = world.cli("receive", tr, "--package", package, "--out", inbox(world), "--seal",
                    "S-1001", "--reason", "the courier's disk was dropped", "--as",
                    "nl-custodian", expect=1)
    assert "Rejected (package-digest): package-digest: the package's SHA-256" in res.out
    assert "integrity incident recorded, custody unchanged" in res.out
    signed = signed_payload(world, world.size() - 1)
    assert signed["reason"].startswith("package-digest: ")
    assert signed["reason"].endswith("(the courier's disk was dropped)")


def _dispatch_as_sender(world: World, package_file: Path, *, tr: str,
                        sealed_sha256: str | None = None) -> None:
    """A dispatch made outside the CLI, by a sender who signs whatever package it likes
    (the rules check the key id and the claimed digests, never the package's content)."""
    home = Home(world.home).load()
    store = open_store(home)
    try:
        svc = custody_of(home, store)
        key = store.state("orgkey/nfi")
        assert key is not None
        data = package_file.read_bytes()
        svc.dispatch(home.actor("de-custodian"), artefact=world.art, to_org="nfi",
                     purpose="analysis", legal_basis=world.legal_basis(), transfer_id=tr,
                     seals=["S-1001"], package={
                         "sha256": sealed_sha256 or hashlib.sha256(data).hexdigest(),
                         "size": len(data), "format": "age-v1", "recipient": key["current"],
                         "also_to": [],
                         "digests": {"sha256": hashlib.sha256(world.data).hexdigest(),
                                     "sha512": hashlib.sha512(world.data).hexdigest()}})
    finally:
        store.close()


@pytest.mark.parametrize(("what", "reason"), [
    ("sealed-to-another-key", "wrong-recipient"),
    ("other-bytes-inside", "plaintext-digest"),
    ("trailing-bytes-signed-in", "corrupt"),
])
def test_a_dispatched_package_that_lies_is_a_signed_rejection(world: World, what: str,
                                                             reason: str) -> None:
    """The package IS the one dispatched (its digest matches), but what it holds is not
    what the dispatch claims: each layer of the check names its own reason."""
    package = world.root / "lying.age"
    if what == "sealed-to-another-key":
        seal(world.evidence, package, [org_recipient(world, "ofac")])
    elif what == "other-bytes-inside":
        seal(world.tampered(), package, [org_recipient(world, "nfi")])
    else:
        seal(world.evidence, package, [org_recipient(world, "nfi")])
        package.write_bytes(package.read_bytes() + b"appended after sealing")
    _dispatch_as_sender(world, package, tr="TR-LIE")
    res = receive(world, "TR-LIE", package, expect=1)
    assert res.json["outcome"] == "rejected"
    assert res.json["reason"] == reason, res.json
    assert files_in(inbox(world)) == []
    signed = signed_payload(world, res.json["log_index"])
    assert signed["reason"].startswith(reason + ": ")
    assert signed["package_sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert artefact(world)["incidents"] == 1
    assert artefact(world)["custodian"] == "bka"


def test_a_home_without_the_receiving_key_signs_nothing(world: World) -> None:
    tr, package = sealed_transfer(world)
    for key in (world.home / "keys" / "orgs").glob("nfi*.key"):
        key.unlink()
    before = world.size()
    res = world.cli("receive", tr, "--package", package, "--seal", "S-1001", "--as",
                    "nl-custodian")
    assert_error(res, 4, "which this home does not hold")
    assert world.size() == before
    assert files_in(world.root / "outbox") == ["disk.img.age"]


def test_receive_refuses_mixed_or_mismatched_inputs_before_anything(world: World) -> None:
    tr, package = sealed_transfer(world)
    before = world.size()
    res = world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian")
    assert_error(res, 2, "dispatched as a sealed package")
    res = world.cli("receive", tr, "--file", world.evidence, "--package", package, "--as",
                    "nl-custodian")
    assert_error(res, 2, "one of them")
    res = world.cli("receive", tr, "--as", "nl-custodian")
    assert_error(res, 2, "one of them")
    res = world.cli("receive", tr, "--package", package, "--out", world.evidence,
                    "--as", "nl-custodian")
    assert_error(res, 2, "is not a directory")
    (inbox(world) / "disk.img").write_bytes(b"an earlier file")
    res = receive(world, tr, package)
    assert_error(res, 2, "refusing to overwrite")
    assert (inbox(world) / "disk.img").read_bytes() == b"an earlier file"
    assert world.size() == before
    # A transfer without a package cannot be received from one.
    world.cli("receive", tr, "--package", package, "--seal", "S-1001", "--out",
              world.root, "--as", "nl-custodian", expect=0)
    plain = world.dispatch(world.legal_basis(), to="bka", as_="nl-custodian")
    res = world.cli("receive", plain, "--package", package, "--as", "de-custodian")
    assert_error(res, 2, "dispatched without a sealed package")


def test_receiving_a_closed_transfer_opens_nothing(world: World) -> None:
    tr, package = sealed_transfer(world)
    receive(world, tr, package, expect=0)
    shutil.rmtree(inbox(world))
    res = world.cli("receive", tr, "--package", package, "--seal", "S-1001", "--out",
                    world.root, "--as", "nl-custodian")
    assert_error(res, 3, "is not open")
    assert not (world.root / "disk.img").exists()


# ---- seals ------------------------------------------------------------------------------


def test_different_seals_are_a_signed_rejection_by_default(world: World) -> None:
    tr, package = sealed_transfer(world)
    res = receive(world, tr, package, seals=("S-2002",), expect=1)
    assert res.json["outcome"] == "rejected"
    assert res.json["reason"] == "seal-mismatch"
    assert "S-2002" in res.json["detail"]
    assert "S-1001" in res.json["detail"]
    assert files_in(inbox(world)) == []
    signed = signed_payload(world, res.json["log_index"])
    assert signed["seals"] == ["S-2002"]
    assert signed["reason"].startswith("seal-mismatch: ")
    # The bytes themselves were fine: the rejection says so by its digests.
    assert signed["recomputed"]["sha256"] == hashlib.sha256(world.data).hexdigest()
    art = artefact(world)
    assert art["custodian"] == "bka"
    assert art["incidents"] == 1


def test_seal_discrepancy_accepts_and_counts_an_incident(world: World) -> None:
    tr, package = sealed_transfer(world)
    res = receive(world, tr, package, "--seal-discrepancy",
                  "seal S-1001 cut by customs, resealed S-3003", seals=("S-3003",), expect=0)
    assert res.json["outcome"] == "accepted"
    assert res.json["seal_discrepancy"].startswith("seal S-1001 cut")
    signed = signed_payload(world, res.json["log_index"])
    assert signed["seal_discrepancy"].startswith("seal S-1001 cut")
    art = artefact(world)
    assert art["custodian"] == "nfi"
    assert art["incidents"] == 1
    assert (inbox(world) / "disk.img").read_bytes() == world.data
    # A court's verification replays the incident from the signed receipt.
    verdict = world.cli("verify", world.evidence, "--json", expect=0).json
    assert verdict["verdict"] == "authentic"
    assert verdict["incidents"] == 1
    receipt = next(i for i in verdict["custody"] if i["kind"] == "custody.receipt")
    assert receipt["seal_discrepancy"].startswith("seal S-1001 cut")
    world.cli("audit", expect=0)


def test_no_seal_given_for_a_sealed_dispatch_signs_nothing(world: World) -> None:
    tr, package = sealed_transfer(world)
    before = world.size()
    res = receive(world, tr, package, seals=())
    assert_error(res, 2, "give the seals you received with --seal")
    assert world.size() == before
    assert files_in(inbox(world)) == []


def test_seals_with_a_plain_file_receipt(world: World) -> None:
    lb = world.legal_basis()
    tr = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--legal-basis",
                   lb, "--seal", "S-1", "--as", "de-custodian", "--json", expect=0).json[
                       "transfer"]
    res = world.cli("receive", tr, "--file", world.evidence, "--seal", "S-9", "--as",
                    "nl-custodian", "--json", expect=1)
    assert res.json["reason"] == "seal-mismatch"
    # ... while a tampered file is still rejected for its digests, whatever the seals.
    tr = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--legal-basis",
                   lb, "--seal", "S-2", "--as", "de-custodian", "--json", expect=0).json[
                       "transfer"]
    res = world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian",
                    "--json", expect=1)
    assert res.json["reason"] == "digest-mismatch"
    assert res.json["mismatched"]
    tr = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--legal-basis",
                   lb, "--seal", "S-3", "--as", "de-custodian", "--json", expect=0).json[
                       "transfer"]
    world.cli("receive", tr, "--file", world.evidence, "--seal", "S-3", "--as",
              "nl-custodian", expect=0)
    assert artefact(world)["incidents"] == 2


# ---- duplicates -------------------------------------------------------------------------


def test_duplicates_are_named_and_verify_lists_every_registration(world: World) -> None:
    copy = world.evidence_copy("copy.img", world.data)
    res = world.cli("register", copy, "--case", CASE, "--as", "de-examiner")
    assert_error(res, 3, "--duplicate-of ID or --derived-from ID")
    assert world.art in res.err
    dup = world.cli("register", copy, "--case", CASE, "--exhibit", "DE-01b",
                    "--duplicate-of", world.art, "--id", "DUP-1", "--as", "de-examiner",
                    "--json", expect=0).json
    assert dup["duplicate_of"] == world.art
    world.cli("register", copy, "--case", CASE, "--derived-from", world.art, "--id",
              "DER-1", "--as", "de-examiner", expect=0)
    world.cli("case", "open", "CASE-OTHER", "--as", "de-prosecutor", expect=0)
    world.cli("register", copy, "--case", "CASE-OTHER", "--id", "OTHER-1", "--as",
              "de-examiner", expect=0)
    res = world.cli("register", world.evidence_copy("x.img", b"other bytes"), "--case", CASE,
                    "--duplicate-of", world.art, "--as", "de-examiner")
    assert_error(res, 3, "differs")

    text = world.cli("verify", copy, expect=0).out
    assert f"Artefact {world.art} of case {CASE}" in text
    assert "also registered as 3 other artefact(s)" in text
    assert f"DUP-1 authentic: case {CASE}, exhibit DE-01b" in text
    assert f"duplicate of {world.art}" in text
    assert f"DER-1 authentic: case {CASE}" in text
    assert f"derived from {world.art}" in text
    assert "OTHER-1 authentic: case CASE-OTHER" in text
    out = world.cli("verify", copy, "--json", expect=0).json
    assert out["artefact_id"] == world.art
    assert out["also_registered_as"] == ["DUP-1", "DER-1", "OTHER-1"]
    listed = {a["artefact_id"]: a for a in out["artefacts"]}
    assert list(listed) == [world.art, "DUP-1", "DER-1", "OTHER-1"]
    assert listed["DUP-1"]["duplicate_of"] == world.art
    assert listed["DER-1"]["parents"] == [world.art]
    assert listed["OTHER-1"]["case"] == "CASE-OTHER"
    assert all(a["verdict"] == "authentic" and a["complete"] for a in listed.values())
    # Naming one artefact verifies that one only.
    one = world.cli("verify", copy, "--artefact", "DUP-1", "--json", expect=0).json
    assert [a["artefact_id"] for a in one["artefacts"]] == ["DUP-1"]


def test_a_single_registration_lists_one_artefact(world: World) -> None:
    out = world.cli("verify", world.evidence, "--json", expect=0).json
    assert [a["artefact_id"] for a in out["artefacts"]] == [world.art]
    text = world.cli("verify", world.evidence, expect=0).out
    assert "also registered" not in text
    res = world.cli("verify", world.evidence_copy("never.bin", b"never registered"), "--json",
                    expect=1)
    assert res.json["verdict"] == "not-registered"
    assert res.json["artefacts"] == []
