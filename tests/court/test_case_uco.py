"""``custody export case-uco``: CASE/UCO JSON-LD from verified bundles only.

A real ledger from ``custody demo`` (plus a second artefact of the case, with an access),
exported for one artefact and for the whole case and checked by the CASE project's own
SHACL validator (``case_validate`` from ``case-utils``, a subprocess; slow, so called four
times in all); the content is compared with what ``custody bundle verify`` proves.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.core.bundle import Bundle, verify_bundle
from ledger.core.errors import VerificationError
from ledger.court.case_uco import CaseListing, case_uco_graph, scan_case
from ledger.home import Home, open_store

BIN = Path(sys.executable).parent
CUSTODY = BIN / "custody"
CASE_VALIDATE = BIN / "case_validate"
CASE = "CASE-2026-0042"
EPOCH = "1800000000"  # SOURCE_DATE_EPOCH of the exports compared byte for byte


def custody(*args: Any, check: bool = True,
            epoch: str | None = EPOCH) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUSTODY_PASSPHRASE": "case-uco-test"}
    env.pop("CUSTODY_SERVER", None)
    env.pop("SOURCE_DATE_EPOCH", None)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    proc = subprocess.run([str(CUSTODY), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, f"custody {args} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def case_validate(path: Path) -> subprocess.CompletedProcess[str]:
    if not CASE_VALIDATE.exists():
        if os.environ.get("CI"):
            pytest.fail("case_validate is missing: pip install -e '.[dev]'")
        pytest.skip("case_validate (case-utils, the dev extra) is not installed")
    return subprocess.run([str(CASE_VALIDATE), str(path)], capture_output=True, text=True,
                          timeout=600, check=False)


@dataclass
class Ledger:
    root: Path
    home: Path
    log_key: str
    single: Path  # DE-01-disk alone
    whole: Path  # the whole case
    bundles: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    root = tmp_path_factory.mktemp("case-uco")
    home = root / "home"
    custody("demo", "--size-mib", "1", "--home", home)
    second = root / "second.bin"
    second.write_bytes(b"a USB stick image\n" * 500)
    custody("--home", home, "register", second, "--case", CASE, "--exhibit", "DE-02",
            "--type", "file", "--description", "USB stick", "--id", "DE-02-usb", "--blake3",
            "--as", "de-examiner")
    custody("--home", home, "access", "DE-02-usb", "--action", "view", "--purpose", "review",
            "--as", "nl-custodian")
    single, whole = root / "single.jsonld", root / "case.jsonld"
    custody("--home", home, "export", "case-uco", "DE-01-disk", "--out", single)
    custody("--home", home, "export", "case-uco", "--case", CASE, "--out", whole)
    bundles = {}
    for art in ("DE-01-disk", "DE-02-usb"):
        out = root / f"{art}.bundle.json"
        custody("--home", home, "bundle", "export", art, "--out", out)
        bundles[art] = json.loads(out.read_text())
    config = json.loads((home / "config.json").read_text())
    return Ledger(root, home, config["log_key"], single, whole, bundles)


def nodes(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    assert set(doc) == {"@context", "@graph"}
    return list(doc["@graph"])


def of_type(graph: list[dict[str, Any]], cls: str) -> list[dict[str, Any]]:
    return [n for n in graph if n["@type"] == cls]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def verified(ledger: Ledger, art: str) -> dict[str, Any]:
    """What ``custody bundle verify`` proves of an artefact's bundle."""
    path = ledger.root / f"{art}.bundle.json"
    out = custody("bundle", "verify", path, "--log-key", ledger.log_key, "--json")
    result = json.loads(out.stdout)
    assert result["verdict"] == "verified"
    return dict(result)


# ---- the real validator --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["single", "whole"])
def test_export_conforms_to_the_case_shapes(ledger: Ledger, which: str) -> None:
    proc = case_validate(getattr(ledger, which))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Conforms: True" in proc.stdout


def _bad_hash(graph: list[dict[str, Any]]) -> None:
    h = of_type(graph, "uco-types:Hash")[0]
    h["uco-types:hashValue"]["@value"] = "not-hex-" + h["uco-types:hashValue"]["@value"]


def _bad_class(graph: list[dict[str, Any]]) -> None:
    of_type(graph, "uco-observable:File")[0]["@type"] = "uco-observable:Fiel"


@pytest.mark.parametrize("break_it", [_bad_hash, _bad_class], ids=["hash-not-hex", "no-such-class"])
def test_broken_export_fails_validation(ledger: Ledger, tmp_path: Path,
                                        break_it: Any) -> None:
    doc = json.loads(ledger.single.read_text())
    break_it(doc["@graph"])
    bad = tmp_path / "bad.jsonld"
    bad.write_text(json.dumps(doc))
    proc = case_validate(bad)
    assert proc.returncode != 0
    assert "Conforms: False" in proc.stdout


# ---- content: only what the bundles prove ---------------------------------------------------


def test_every_digest_and_one_action_per_proven_event(ledger: Ledger) -> None:
    graph = nodes(ledger.whole)
    by_id = {n["@id"]: n for n in graph}
    hashes = {(h["uco-types:hashMethod"], h["uco-types:hashValue"]["@value"])
              for h in of_type(graph, "uco-types:Hash")}
    assert all(h["uco-types:hashValue"]["@type"] == "xsd:hexBinary"
               for h in of_type(graph, "uco-types:Hash"))
    files = {f["uco-core:name"]: f for f in of_type(graph, "uco-observable:File")}
    assert set(files) == {"DE-01-disk", "DE-02-usb"}
    # Each event's id, as the ExternalReference of its action.
    action_of: dict[str, dict[str, Any]] = {}
    for action in of_type(graph, "case-investigation:InvestigativeAction"):
        for ref in action.get("uco-core:externalReference", []):
            ext = by_id[ref["@id"]]
            assert ext["uco-core:externalIdentifier"] not in action_of
            action_of[ext["uco-core:externalIdentifier"]] = action
    events = 0
    for art in ("DE-01-disk", "DE-02-usb"):
        result = verified(ledger, art)
        registered = result["registered_digests"]
        # BLAKE3 is not in UCO's hash vocabulary: it is in the file's description.
        listed = {a: v for a, v in registered.items() if a != "blake3"}
        for alg, value in listed.items():
            assert (alg.upper(), value) in hashes
        if art == "DE-02-usb":
            assert "blake3" in registered
            assert any(line.startswith(f"blake3 {registered['blake3']} ")
                       for line in files[art]["uco-core:description"])
        facets = [by_id[f["@id"]] for f in files[art]["uco-core:hasFacet"]]
        content = next(f for f in facets if f["@type"] == "uco-observable:ContentDataFacet")
        assert {by_id[h["@id"]]["uco-types:hashValue"]["@value"]
                for h in content["uco-observable:hash"]} == set(listed.values())
        assert content["uco-observable:sizeInBytes"] == result["size"]
        for item in result["custody"]:
            events += 1
            action = action_of[item["event_id"]]
            assert action["uco-action:startTime"] == {"@type": "xsd:dateTime",
                                                       "@value": item["ledger_time"]}
            assert {"@id": files[art]["@id"]} in (action.get("uco-action:object", [])
                                                  + action.get("uco-action:result", []))
            performer = by_id[action["uco-action:performer"]["@id"]]
            assert performer["@type"] == "uco-identity:Person"
            assert performer["uco-core:name"] == item["signer_name"]
            (record,) = [by_id[r["@id"]] for r in action["uco-action:result"]
                         if by_id[r["@id"]]["@type"] == "case-investigation:ProvenanceRecord"]
            assert record["case-investigation:exhibitNumber"] == result["exhibit"]
    # Exactly one action per proven event, plus the export itself.
    assert len(action_of) == events
    assert len(of_type(graph, "case-investigation:InvestigativeAction")) == events + 1
    assert len(of_type(graph, "case-investigation:ProvenanceRecord")) == events


def test_receipts_legal_basis_and_identities(ledger: Ledger) -> None:
    graph = nodes(ledger.single)
    by_id = {n["@id"]: n for n in graph}
    receipts = [a for a in of_type(graph, "case-investigation:InvestigativeAction")
                if a["uco-core:name"].startswith("receipt of")]
    assert [r["uco-action:actionStatus"] for r in receipts] == ["Fail", "Success"]
    rejected = " ".join(receipts[0]["uco-core:description"])
    assert "DIFFER from the registered digests" in rejected
    assert "equal the registered digests" in " ".join(receipts[1]["uco-core:description"])
    (auth,) = of_type(graph, "case-investigation:Authorization")
    assert auth["case-investigation:authorizationType"] == "mlat"
    assert "MLA-2026-0042" in auth["case-investigation:authorizationIdentifier"]
    (inv,) = of_type(graph, "case-investigation:Investigation")
    assert inv["uco-core:name"] == CASE
    assert inv["case-investigation:relevantAuthorization"] == [{"@id": auth["@id"]}]
    cited = [r for r in of_type(graph, "uco-core:Relationship")
             if r["uco-core:kindOfRelationship"] == "Authorized_By"]
    assert len(cited) == 2
    assert all(r["uco-core:target"] == {"@id": auth["@id"]} for r in cited)
    orgs = {o["uco-core:name"] for o in of_type(graph, "uco-identity:Organization")}
    assert orgs == {"BKA", "NFI", "OFAC"}
    examiner = next(p for p in of_type(graph, "uco-identity:Person")
                    if p["uco-core:name"] == "Eva Examiner")
    refs = {by_id[r["@id"]]["uco-core:definingContext"].split(" (")[0]:
            by_id[r["@id"]]["uco-core:externalIdentifier"]
            for r in examiner["uco-core:externalReference"]}
    actor = verified(ledger, "DE-01-disk")["custody"][0]
    assert refs["custody-ledger actor id"] == "de-examiner"
    assert refs["custody-ledger event-signing key id"] == actor["key_id"]
    # Every id ends with a UUID (the UCO identifier shape), and none repeats.
    ids = [n["@id"] for n in graph]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("kb:") and len(i.rsplit("-", 5)) == 6 for i in ids)


def test_case_listing_is_proven_from_the_whole_log(ledger: Ledger) -> None:
    (inv,) = of_type(nodes(ledger.whole), "case-investigation:Investigation")
    text = " ".join(inv["uco-core:description"])
    assert "proven complete" in text
    assert "title: Ransomware intrusion" in text
    store = open_store(Home(ledger.home).load(), writable=False)
    try:
        size = store.size()
        leaves = [e.leaf for e in store.entries(0, size)]
        root = store.root(size)
    finally:
        store.close()
    origin = json.loads((ledger.home / "config.json").read_text())["origin"]
    listing = scan_case(leaves, case=CASE, origin=origin, size=size, root=root)
    assert listing is not None
    assert listing.proven
    assert listing.artefacts == ("DE-01-disk", "DE-02-usb")
    assert (listing.lead_org, listing.members) == ("bka", ("nfi",))
    assert scan_case(leaves, case="NO-SUCH-CASE", origin=origin, size=size, root=root) is None
    forged = list(leaves)
    forged[-1] = forged[-1].replace(b"review", b"reviex")  # an entry edited by the operator
    with pytest.raises(VerificationError, match="do not hash to the root"):
        scan_case(forged, case=CASE, origin=origin, size=size, root=root)
    with pytest.raises(VerificationError, match="do not hash to the root"):
        scan_case(leaves[:-1], case=CASE, origin=origin, size=size, root=root)  # one hidden


def test_an_unproven_listing_says_so_and_a_faulty_bundle_is_refused(ledger: Ledger) -> None:
    items = []
    for art in ("DE-01-disk", "DE-02-usb"):
        bundle = Bundle.from_json(copy.deepcopy(ledger.bundles[art]))
        items.append((bundle, verify_bundle(bundle, log_key=ledger.log_key)))
    size = items[0][1].checkpoint.size if items[0][1].checkpoint else 0
    listing = CaseListing(CASE, ("DE-01-disk", "DE-02-usb"), False, size)
    doc = case_uco_graph(items, generated_at_ms=0, tool="t", listing=listing)
    (inv,) = of_type(doc["@graph"], "case-investigation:Investigation")
    assert "NOT from a proof" in " ".join(inv["uco-core:description"])
    assert "operator's state (not proven complete)" in json.dumps(doc)
    with pytest.raises(ValueError, match="not exactly the artefacts"):
        case_uco_graph(items[:1], generated_at_ms=0, tool="t", listing=listing)
    # A bundle whose map proof was altered verifies as a fault: never exported.
    obj = copy.deepcopy(ledger.bundles["DE-01-disk"])
    art = next(m for m in obj["maps"] if m["key"] == "art/DE-01-disk")
    art["value"]["custodian"] = "bka"
    bundle = Bundle.from_json(obj)
    result = verify_bundle(bundle, log_key=ledger.log_key)
    assert result.verdict == "fault"
    with pytest.raises(ValueError, match="did not verify"):
        case_uco_graph([(bundle, result)], generated_at_ms=0, tool="t")


def test_an_operator_edited_cache_refuses_the_export(ledger: Ledger, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ledger.home, home)
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("UPDATE state SET value = replace(value, '\"custodian\":\"nfi\"', "
                   "'\"custodian\":\"bka\"') WHERE key = 'art/DE-01-disk'")
    out = tmp_path / "x.jsonld"
    proc = custody("--home", home, "export", "case-uco", "DE-01-disk", "--out", out,
                   check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "export refused" in proc.stderr
    assert not out.exists()


# ---- the command -----------------------------------------------------------------------------


def test_same_ledger_same_bytes(ledger: Ledger, tmp_path: Path) -> None:
    again = tmp_path / "again.jsonld"
    custody("--home", ledger.home, "export", "case-uco", "--case", CASE, "--out", again)
    assert again.read_bytes() == ledger.whole.read_bytes()
    # Only the export's own time depends on the clock (without SOURCE_DATE_EPOCH).
    now = tmp_path / "now.jsonld"
    custody("--home", ledger.home, "export", "case-uco", "--case", CASE, "--out", now,
            epoch=None)
    differ = [(a, b) for a, b in zip(now.read_text().splitlines(),
                                     ledger.whole.read_text().splitlines(), strict=True)
              if a != b]
    assert len(differ) == 1
    assert '"@value": "2027-01-15T08:00:00.000Z"' in differ[0][1]


def test_refuses_to_overwrite_without_force(ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonld"
    out.write_text("keep me")
    proc = custody("--home", ledger.home, "export", "case-uco", "DE-01-disk", "--out", out,
                   check=False)
    assert proc.returncode == 2
    assert "--force" in proc.stderr
    assert out.read_text() == "keep me"
    proc = custody("--home", ledger.home, "export", "case-uco", "DE-01-disk", "--out", out,
                   "--force", "--json")
    summary = json.loads(proc.stdout)
    assert out.read_bytes() == ledger.single.read_bytes()
    assert summary["artefacts"] == ["DE-01-disk"]
    assert summary["case"] == CASE
    assert summary["bytes"] == out.stat().st_size
    assert summary["case_listing"] is None


@pytest.mark.parametrize("args", [["NO-SUCH-ART"], ["--case", "NO-SUCH-CASE"]],
                         ids=["artefact", "case"])
def test_unknown_artefact_or_case_exits_4(ledger: Ledger, tmp_path: Path,
                                          args: list[str]) -> None:
    out = tmp_path / "x.jsonld"
    proc = custody("--home", ledger.home, "export", "case-uco", *args, "--out", out,
                   check=False)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("custody: unknown ")
    assert proc.stderr.count("\n") == 1
    assert not out.exists()
