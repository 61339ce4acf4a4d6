"""The court's verification page (ledger/court/verify_page.py, assets/verify.js) in a real
headless Chromium, opened from a file:// URL with no network.

1. Its JavaScript verifier gives the verdict and the SET of fault kinds of
   ``ledger.core.bundle.verify_bundle`` on every good bundle and every mutation of
   tests/independent (plus what a hostile operator holding the log key can sign, and
   edge cases of numbers and parsing where Python's view of JSON matters).
2. A court using the page (embedded bundle, evidence file, bundle files) sees the
   verdict, the faults and the timeline; a screenshot is kept.
3. The page loads nothing but itself.
4. A 40 MiB evidence file is hashed in chunks with a progress bar.
5. Every language renders translated, and every message has a translation.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html.parser
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from babel.messages.pofile import read_po
from markupsafe import escape

from ledger.core.bundle import Bundle, verify_bundle
from ledger.core.checkpoint import add_cosignature, cosign
from ledger.core.errors import InvalidInput, VerificationError
from ledger.core.note import NoteSigner
from ledger.court.i18n import LANGUAGES, TEMPLATES, catalogue_path, translations
from ledger.court.verify_page import DOMAIN, js_messages, render_verify_page
from ledger.keys import load_seed
from tests.independent import test_independent_verifier as corpus
from tests.independent.test_independent_verifier import (
    GOOD,
    MALFORMED,
    MUTATIONS,
    WITNESSES,
    Case,
    Demo,
    _append_to_history,
    _jcs,
    _leaf_of,
    _signed_leaf,
    drop_entry,
    events,
    forge,
    proof,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: The real ledger made by ``custody demo`` (a module-scoped fixture, built once here).
demo = corpus.demo

VERIFY_JS = "async ([text, opts]) => window.CustodyVerifier.verify(text, opts)"


# ---- helpers -----------------------------------------------------------------------------


def write_page(path: Path, **kwargs: Any) -> str:
    path.write_text(render_verify_page(**kwargs), encoding="utf-8")
    return path.as_uri()


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=10_000)
    assert errors == []
    return page


def reference(case: Case) -> tuple[str, set[str]]:
    """``verify_bundle``'s verdict and fault kinds; ``malformed`` for a B1 refusal."""
    try:
        bundle = Bundle.from_json(copy.deepcopy(case.obj))
    except VerificationError:
        return "malformed", set()
    result = verify_bundle(bundle, log_key=case.log_key, evidence_sha256=case.sha256,
                           witnesses=case.witnesses, quorum=case.quorum)
    return result.verdict, {f.kind for f in result.faults}


def in_browser(page: Page, case: Case) -> dict[str, Any]:
    """The page's verifier on the bundle's JSON text (numbers keep their exact form)."""
    return page.evaluate(VERIFY_JS, [json.dumps(case.obj), {
        "logKey": case.log_key, "witnesses": list(case.witnesses), "quorum": case.quorum,
        "evidenceSha256": case.sha256}])


def assert_same(page: Page, case: Case) -> tuple[str, set[str], dict[str, Any]]:
    want = reference(case)
    result = in_browser(page, case)
    got = result["verdict"], {f["kind"] for f in result["faults"]}
    assert got == want, f"the page says {got}, verify_bundle says {want}: {result['faults']}"
    return *got, result


@pytest.fixture(scope="module")
def page(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The page without a bundle, loaded once per module."""
    url = write_page(tmp_path_factory.mktemp("verify-page") / "verify.html")
    p = open_page(chromium, url)
    yield p
    p.close()


# ---- 1. the same verdict and fault kinds as verify_bundle --------------------------------


@pytest.mark.parametrize("name", list(GOOD))
def test_good_bundle_gets_the_reference_verdict(demo: Demo, page: Page, name: str) -> None:
    make, expected = GOOD[name]
    verdict, kinds, result = assert_same(page, make(demo))
    assert (verdict, kinds) == (expected, set())
    if verdict in ("authentic", "verified"):
        assert result["complete"] is True
        assert result["timeline"], "a verified bundle shows its timeline"
        checks = result["checks"]
        assert checks["checkpoint"] is True
        assert checks["inclusion"] == checks["entries"] > 0
        assert checks["map_proofs"] == checks["maps"] > 0
        assert checks["signatures"] == len(result["timeline"])


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_gets_the_reference_verdict_and_faults(demo: Demo, page: Page,
                                                        name: str) -> None:
    verdict, _kinds, _ = assert_same(page, MUTATIONS[name](demo))
    assert verdict in ("fault", "mismatch")


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bundle_is_refused_without_verdict(demo: Demo, page: Page,
                                                     name: str) -> None:
    case = Case(MALFORMED[name](demo), demo.log_key)
    assert reference(case) == ("malformed", set())
    result = in_browser(page, case)
    assert result["verdict"] == "malformed"
    assert result["error"].startswith("malformed bundle")


def _forged_state(d: Demo) -> Case:
    case = d.case()
    record = proof(case.obj, "art/")["value"]
    forge(d, case.obj, changes={"art/" + d.arts["demo"]: {**record, "custodian": "bka"}})
    return case


def _forged_event(d: Demo) -> Case:
    case = d.case()
    index, leaf = _leaf_of(d, "access.record", d.arts["demo"])
    leaf["event"]["event"]["payload"]["purpose"] = "something else"
    forged_leaf = _jcs(leaf)
    hist = proof(case.obj, "hist/art/")["value"]
    chain = sorted(e["index"] for e in events(case.obj)
                   if d.arts["demo"] in (e["payload"].get("artefact"), e["payload"].get("id")))
    acc = bytes(32)
    for i in chain:
        leaf_bytes = forged_leaf if i == index else d.leaves[i]
        acc = hashlib.sha256(acc + hashlib.sha256(b"\x00" + leaf_bytes).digest()).digest()
    forge(d, case.obj, leaves={index: forged_leaf},
          changes={"hist/art/" + d.arts["demo"]: {**hist, "acc": acc.hex()}})
    return case


def _forged_payload(d: Demo) -> Case:
    case = d.case()
    _, leaf = _leaf_of(d, "access.record", d.arts["demo"])
    index = len(d.leaves)
    leaf["index"] = index
    leaf["event"]["event"]["kind"] = "custody.dispatch"
    leaf["event"]["event"]["payload"] = {}
    forge(d, case.obj, leaves={index: _jcs(leaf)})
    return case


def _forged_record(prefix: str, edit: Callable[[dict[str, Any]], dict[str, Any]]
                   ) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case()
        p = proof(case.obj, prefix)
        forge(d, case.obj, changes={p["key"]: edit(p["value"])})
        return case
    return make


def _re_registered(d: Demo) -> Case:
    case = d.case(evidence="tampered")
    index = len(d.leaves)
    first = next(json.loads(x) for x in d.leaves
                 if json.loads(x)["event"]["event"]["kind"] == "artefact.register")
    assert case.evidence is not None
    payload = {**first["event"]["event"]["payload"],
               "digests": {"sha256": case.sha256,
                           "sha512": hashlib.sha512(case.evidence.read_bytes()).hexdigest()}}
    leaf = _signed_leaf(d, "de-examiner", index, "artefact.register", payload)
    forge(d, case.obj, leaves={index: leaf}, changes=_append_to_history(d, case, leaf))
    return case


def _foreign_event(d: Demo) -> Case:
    case = d.case()
    index = len(d.leaves)
    payload = {"artefact": d.arts["demo"], "action": "view", "purpose": "elsewhere",
               "authorisation": "", "outcome": "success", "source": "cli"}
    leaf = _signed_leaf(d, "nl-custodian", index, "access.record", payload,
                        origin="other.example/ledger")
    forge(d, case.obj, leaves={index: leaf}, changes=_append_to_history(d, case, leaf))
    return case


def _hidden_access(d: Demo) -> Case:
    case = d.case()
    last = max(events(case.obj), key=lambda e: e["index"])
    drop_entry(case.obj, last["pos"])
    hist = proof(case.obj, "hist/art/")["value"]
    chain = sorted(e["index"] for e in events(case.obj)
                   if d.arts["demo"] in (e["payload"].get("artefact"), e["payload"].get("id")))
    acc = bytes(32)
    for i in chain:
        acc = hashlib.sha256(acc + hashlib.sha256(b"\x00" + d.leaves[i]).digest()).digest()
    forged = {**hist, "n": hist["n"] - 1, "last": chain[-1], "acc": acc.hex()}
    forge(d, case.obj, changes={"hist/art/" + d.arts["demo"]: forged})
    return case


def _edit(edit: Callable[[dict[str, Any]], None], evidence: str | None = "demo"
          ) -> Callable[[Demo], Case]:
    def make(d: Demo) -> Case:
        case = d.case(evidence=evidence)
        edit(case.obj)
        return case
    return make


def _map_value(prefix: str, name: str, value: Callable[[Any], Any]
               ) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        p = proof(obj, prefix)
        p["value"] = {**p["value"], name: value(p["value"][name])}
    return edit


def _first_inclusion(change: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        entry = next(e for e in obj["entries"] if e["inclusion"])
        entry["inclusion"][0] = change(entry["inclusion"][0])
    return edit


def _map_field(prefix: str, name: str, change: Callable[[Any], Any]
               ) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        p = proof(obj, prefix)
        p[name] = change(p[name])
    return edit


def _set_member(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj[name] = value
    return edit


def _first_index(change: Callable[[int], Any]) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj["entries"][0]["index"] = change(obj["entries"][0]["index"])
    return edit


def _reverse(obj: dict[str, Any]) -> None:
    obj["entries"].reverse()
    obj["maps"].reverse()


def _leaf_base64(change: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj["entries"][0]["leaf"] = change(obj["entries"][0]["leaf"])
    return edit


#: What an operator holding the log key can sign (tests/independent), and edge cases
#: where the page must read JSON and proofs exactly as Python does.
MORE: dict[str, Callable[[Demo], Case]] = {
    "operator-wrong-state-record": _forged_state,
    "operator-forged-event": _forged_event,
    "operator-malformed-payload": _forged_payload,
    "operator-malformed-actor-record": _forged_record(
        "actor/de-custodian", lambda v: {**v, "revoked_at": "never"}),
    "operator-malformed-legal-basis-record": _forged_record(
        "lb/", lambda v: {**v, "recorded_at": [v["recorded_at"]]}),
    "operator-actor-revoked-before-use": _forged_record(
        "actor/de-custodian", lambda v: {**v, "revoked_at": v["enrolled_at"]}),
    "operator-re-registration": _re_registered,
    "operator-foreign-ledger-event": _foreign_event,
    "operator-hides-an-access": _hidden_access,
    "entries-and-maps-reversed": _edit(_reverse),
    "quorum-without-witness-keys": lambda d: replace(d.witnessed(), witnesses=(), quorum=1),
    "witness-quorum-one-of-two": lambda d: replace(d.witnessed(), quorum=1),
    # A float with an integral value has the JCS bytes of the integer: the proof holds.
    "hist-count-written-as-float": _edit(_map_value("hist/art/", "n", float)),
    "state-incidents-written-as-float": _edit(_map_value("art/", "incidents", float)),
    "actor-enrolled-at-written-as-float": _edit(_map_value("actor/de-custodian",
                                                           "enrolled_at", float)),
    "legal-basis-recorded-at-written-as-float": _edit(_map_value("lb/", "recorded_at",
                                                                 float)),
    "hist-count-beyond-2-53": _edit(_map_value("hist/art/", "n", lambda n: 2**53 + n)),
    "inclusion-hash-upper-case": _edit(_first_inclusion(str.upper)),
    "inclusion-hash-with-spaces": _edit(_first_inclusion(lambda h: h[:2] + " " + h[2:63])),
    "map-bucket-as-empty-object": _edit(_map_field("hist/art/", "bucket",
                                                   lambda b: b or {})),
    "map-path-as-object": _edit(_map_field("hist/art/", "path",
                                           lambda p: dict.fromkeys(p, 0))),
    "map-path-hex-upper-case": _edit(_map_field("hist/art/", "path",
                                                lambda p: [h.upper() for h in p])),
    "log-key-member-null": _edit(_set_member("log_key", None)),
    "unknown-members-ignored": _edit(_set_member("comment", {"x": [1, 2.5]})),
    "index-written-as-float": _edit(_first_index(float)),
    "index-beyond-2-53": _edit(_first_index(lambda i: 2**60 + i)),
    "leaf-base64-extra-padding": _edit(_leaf_base64(lambda s: s + "=")),
    "evidence-in-upper-case": lambda d: _upper_evidence(d.case()),
}


def _upper_evidence(case: Case) -> Case:
    assert case.evidence is not None
    digest = hashlib.sha256(case.evidence.read_bytes()).hexdigest().upper()

    class Upper(Case):
        @property
        def sha256(self) -> str | None:
            return digest

    return Upper(case.obj, case.log_key, case.evidence)


@pytest.mark.parametrize("name", list(MORE))
def test_operator_and_edge_cases_get_the_reference_verdict(demo: Demo, page: Page,
                                                            name: str) -> None:
    assert_same(page, MORE[name](demo))


def test_the_corpus_exercises_every_fault_kind(demo: Demo) -> None:
    """The cases above make verify_bundle report every fault kind a bundle can produce
    (all but ``cache``), so every branch of the page's verifier is compared."""
    kinds: set[str] = set()
    verdicts: set[str] = set()
    for make in [*MUTATIONS.values(), *MORE.values(), *(m for m, _ in GOOD.values())]:
        verdict, found = reference(make(demo))
        kinds |= found
        verdicts.add(verdict)
    assert kinds == {"checkpoint", "witness", "map", "inclusion", "leaf", "incomplete",
                     "key", "signature", "chain", "legal-basis", "state"}
    assert verdicts == {"authentic", "mismatch", "verified", "not-registered", "fault",
                        "malformed"}


#: Values a random mutation puts anywhere: every JSON type, Python's int/float and
#: 2^53 edges, and strings near the formats of docs/bundle.md §2.
FUZZ_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 1.0, 1.5, 2**53, 2**53 - 1, 10**21, "", "x", "a\n", "DE",
    "eio", "2026-02-30", "2024-02-29", "0" * 64, "A" * 43 + "=", [], [1], ["x"], {},
    {"sha256": "0" * 64}, "view", "accepted", "rejected", "success", "age-v1", "é" * 201,
    "x" * 2001, "nfi", "bka", "?"]


def fuzz(rng: random.Random, value: Any) -> Any:
    """A mutated deep copy of a JSON value: one member or item removed, added or changed,
    a character of a string changed, or the value replaced."""
    v = copy.deepcopy(value)
    if isinstance(v, dict) and v and rng.random() < 0.85:
        k = rng.choice(list(v))
        r = rng.random()
        if r < 0.15:
            del v[k]
        elif r < 0.25:
            v[rng.choice(["extra", "exhibit", "rules", "seal_discrepancy", k + "x"])] = \
                rng.choice(FUZZ_VALUES)
        else:
            v[k] = fuzz(rng, v[k])
        return v
    if isinstance(v, list) and v and rng.random() < 0.8:
        i = rng.randrange(len(v))
        if rng.random() < 0.2:
            del v[i]
        else:
            v[i] = fuzz(rng, v[i])
        return v
    if isinstance(v, str) and v and rng.random() < 0.5:
        i = rng.randrange(len(v))
        return v[:i] + rng.choice(["", "A", "0", "\n", " ", "+", "é", v[i].upper()]) + v[i + 1:]
    return rng.choice(FUZZ_VALUES)


def _fuzz_leaf(d: Demo, rng: random.Random) -> Case:
    """An operator signs a log with one leaf changed (mostly in its payload)."""
    case = d.case()
    index = rng.choice([e["index"] for e in case.obj["entries"]])
    leaf = json.loads(d.leaves[index])
    if rng.random() < 0.75:
        leaf["event"]["event"]["payload"] = fuzz(rng, leaf["event"]["event"]["payload"])
    else:
        leaf = fuzz(rng, leaf)
    try:
        raw = _jcs(leaf) if rng.random() < 0.9 else json.dumps(leaf).encode()
    except Exception:  # no JCS encoding: the operator logs other bytes
        raw = json.dumps(leaf).encode()
    forge(d, case.obj, leaves={index: raw})
    return case


def _fuzz_map(d: Demo, rng: random.Random) -> Case:
    """An operator signs a state map with one record changed."""
    case = d.case(evidence=rng.choice(["demo", None]))
    p = rng.choice([m for m in case.obj["maps"] if m["value"] is not None])
    value = fuzz(rng, p["value"])
    try:
        forge(d, case.obj, changes={p["key"]: value if isinstance(value, dict) else {"x": value}})
    except Exception:  # a value with no JCS encoding cannot be signed into the map
        case.obj["maps"].remove(p)
    return case


def _fuzz_file(d: Demo, rng: random.Random) -> Case:
    """Anyone edits the bundle file."""
    case = d.case(evidence=rng.choice(["demo", None]))
    for _ in range(rng.choice([1, 1, 2])):
        case.obj = fuzz(rng, case.obj)
    return case


def _fuzz_note(d: Demo, rng: random.Random) -> Case:
    """An operator signs other checkpoint texts; anyone edits the signature lines or
    the witness policy."""
    case = d.witnessed() if rng.random() < 0.5 else d.case(evidence=rng.choice(["demo", None]))
    note = case.obj["checkpoint"]
    cut = note.rfind("\n\n")
    lines = note[:cut].split("\n")
    map_line = next(line for line in lines if line.startswith("custody-map/v1 "))
    r = rng.random()
    if r < 0.2:
        lines.append(rng.choice([map_line, "custody-map/v1 " + "A" * 43 + "=", "custody-map/v1 x",
                                 "ext", "custody-map/v1", map_line.replace(" ", "  ")]))
    elif r < 0.35:
        lines.remove(map_line)
        lines += rng.choice([[], [map_line + "="], [map_line.rstrip("=")]])
    elif r < 0.5:
        lines[1] = rng.choice(["0", "01", lines[1] + "0", str(2**64), str(2**64 - 1), "-1"])
    elif r < 0.6:
        lines[0] = rng.choice([lines[0] + " ", lines[0] + "\u00a0x", lines[0].upper()])
    text = "\n".join(lines) + "\n"
    signer = NoteSigner(d.origin, load_seed(d.home / "keys" / "log.key", None))
    if r < 0.7:
        try:
            note = signer.sign_note(text)
        except Exception:  # the signer refuses the text: keep the old signatures
            note = text + note[cut + 1:]
    else:
        name, seed, _ = WITNESSES[2]
        note = rng.choice([
            note + "\u2014 w1.example " + base64.b64encode(bytes(76)).decode() + "\n",
            note + "\u2014 x y AAAAAAA=\n", note[:-1] + " \n", note + "\n",
            note.replace("\n\n", "\n\n\n", 1),
            add_cosignature(note, cosign(note, name, seed, rng.choice([0, 2**63 - 1])))])
    case.obj["checkpoint"] = note
    if rng.random() < 0.3:
        keys = [w[2] for w in WITNESSES]
        case = replace(case, witnesses=tuple(rng.sample([*keys, "junk", keys[0]],
                                                        rng.randint(0, 3))),
                       quorum=rng.choice([0, 1, 2, 3]))
    return case


FUZZ: dict[str, Callable[[Demo, random.Random], Case]] = {
    "signed-leaf": _fuzz_leaf, "signed-map-record": _fuzz_map, "bundle-file": _fuzz_file,
    "checkpoint-note": _fuzz_note}


@pytest.mark.parametrize("kind", list(FUZZ))
def test_random_mutations_get_the_reference_verdict(demo: Demo, page: Page, kind: str) -> None:
    """Seeded random mutations (the same every run): verdict and fault kinds agree."""
    rng = random.Random(f"verify-page/{kind}")
    seen: set[str] = set()
    for i in range(100):
        case = FUZZ[kind](demo, rng)
        want = reference(case)
        result = in_browser(page, case)
        got = result["verdict"], {f["kind"] for f in result["faults"]}
        assert got == want, f"{kind} #{i}: the page says {got}, verify_bundle says {want}"
        seen |= {want[0], *want[1]}
    assert "fault" in seen, seen
    assert len(seen) > 3, f"the mutations reach more than one kind of fault: {seen}"


# ---- 2. through the user interface, like a court -----------------------------------------


@pytest.fixture(scope="module")
def court_url(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page with the demo bundle embedded and the log key pre-filled."""
    return write_page(tmp_path_factory.mktemp("court") / "court.html",
                      bundle=demo.bundles["demo"], log_key=demo.log_key)


@pytest.fixture
def court_page(chromium: Browser, court_url: str) -> Iterator[Page]:
    """A fresh tab of the court's page for each test."""
    p = open_page(chromium, court_url)
    yield p
    p.close()


def click_verify(page: Page) -> str:
    """Click "verify" and return the verdict shown ("" when only an error is shown).
    (The page's CSP forbids eval, so waiting uses selectors, not wait_for_function.)"""
    page.click("#verify")
    page.wait_for_selector('#verdict:not([data-verdict=""]), #error:not([hidden])',
                           state="attached", timeout=60_000)
    page.wait_for_selector("body:not([data-busy])", state="attached", timeout=60_000)
    return page.get_attribute("#verdict", "data-verdict") or ""


def choose_evidence(page: Page, path: Path, timeout: float = 60_000) -> str:
    page.set_input_files("#evidence-file", str(path))
    page.wait_for_selector("#evidence-sha256[data-done=true]", state="attached",
                           timeout=timeout)
    return page.text_content("#evidence-sha256") or ""


def test_court_sees_authentic_with_the_true_evidence(demo: Demo, court_page: Page,
                                                     artifacts: Path) -> None:
    page = court_page
    assert page.is_visible("#log-key-note"), "a pre-filled key carries the warning"
    assert page.input_value("#log-key") == demo.log_key
    digest = choose_evidence(page, demo.evidence["demo"])
    assert digest == hashlib.sha256(demo.evidence["demo"].read_bytes()).hexdigest()
    assert click_verify(page) == "authentic"
    assert page.is_visible("#verdict[data-verdict=authentic]")
    assert page.locator("#faults li[data-kind]").count() == 0
    ref = verify_bundle(Bundle.from_json(copy.deepcopy(demo.bundles["demo"])),
                        log_key=demo.log_key, evidence_sha256=digest)
    rows = page.locator("#timeline tbody tr")
    assert rows.count() == len(ref.timeline) > 0
    assert [rows.nth(i).get_attribute("data-index") for i in range(rows.count())] == [
        str(t.index) for t in ref.timeline]
    checks = page.locator("#checks li").all_text_contents()
    assert any("Inclusion proofs verified" in c for c in checks)
    assert any("Event signatures verified (Ed25519)" in c for c in checks)
    assert page.locator("#checks li.not-ok").count() == 0
    shot = artifacts / "verify-page-authentic.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, "the screenshot shows a rendered page"


def test_court_sees_mismatch_with_a_tampered_file(demo: Demo, court_page: Page) -> None:
    choose_evidence(court_page, demo.evidence["tampered"])
    assert click_verify(court_page) == "mismatch"
    assert court_page.locator("#faults li[data-kind]").count() == 0


@pytest.mark.parametrize("name", ["checkpoint-signature-flipped", "dispatch-dropped",
                                  "map-path-hash-flipped", "leaf-byte-flipped",
                                  "wrong-log-key"])
def test_court_sees_the_faults_of_a_tampered_bundle(demo: Demo, court_page: Page,
                                                    tmp_path: Path, name: str) -> None:
    case = MUTATIONS[name](demo)
    verdict, kinds = reference(case)
    assert verdict == "fault"
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(case.obj))
    page = court_page
    page.fill("#log-key", case.log_key)
    page.set_input_files("#bundle-file", str(path))
    assert click_verify(page) == "fault"
    shown = set(page.locator("#faults li[data-kind]").evaluate_all(
        "items => items.map(li => li.dataset.kind)"))
    assert shown == kinds
    assert not page.is_visible("#timeline"), "nothing of a faulty bundle is shown as fact"
    assert page.locator("#timeline tbody tr").count() == 0


def test_court_sees_malformed_for_a_file_that_is_not_a_bundle(
        chromium: Browser, demo: Demo, tmp_path: Path) -> None:
    page = open_page(chromium, write_page(tmp_path / "page.html", log_key=demo.log_key))
    try:
        assert page.is_visible("#log-key-note")
        (tmp_path / "notes.txt").write_text("these are not the bundles you are looking for\n")
        page.set_input_files("#bundle-file", str(tmp_path / "notes.txt"))
        assert click_verify(page) == "malformed"
        assert page.is_visible("#error")
        (tmp_path / "list.json").write_text("[1, 2, 3]")
        page.set_input_files("#bundle-file", str(tmp_path / "list.json"))
        assert click_verify(page) == "malformed"
        (tmp_path / "latin1.json").write_bytes(json.dumps(demo.bundles["demo"]).encode()
                                               .replace(b'"format"', b'"\xe9format"'))
        page.set_input_files("#bundle-file", str(tmp_path / "latin1.json"))
        assert click_verify(page) == "malformed", "not UTF-8: not JSON, as for Python"
    finally:
        page.close()


def test_page_never_verifies_without_a_log_key(chromium: Browser, demo: Demo,
                                               tmp_path: Path) -> None:
    page = open_page(chromium, write_page(tmp_path / "page.html", bundle=demo.bundles["demo"]))
    try:
        assert page.input_value("#log-key") == ""
        assert page.locator("#log-key-note").count() == 0, "no pre-filled key, no note"
        assert click_verify(page) == ""
        assert page.is_visible("#error")
        page.fill("#log-key", demo.log_key)
        assert click_verify(page) == "verified"
    finally:
        page.close()


def test_embedded_bundle_cannot_break_out_of_its_script_block(
        chromium: Browser, demo: Demo, tmp_path: Path) -> None:
    bundle = copy.deepcopy(demo.bundles["demo"])
    bundle["comment"] = "</script><script>window.pwned = 1</script><!-- & \u2028 é"
    text = render_verify_page(bundle=bundle, log_key=demo.log_key)
    assert "</script><script>window.pwned" not in text
    page = open_page(chromium, write_page(tmp_path / "page.html", bundle=bundle,
                                          log_key=demo.log_key))
    try:
        assert page.evaluate("window.pwned") is None
        embedded = page.evaluate("JSON.parse(document.getElementById('embedded-bundle')"
                                 ".textContent)")
        assert embedded == bundle
        assert click_verify(page) == "verified"
    finally:
        page.close()


# ---- 3. offline ------------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.csp = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset")]
        values = dict(attrs)
        if tag == "meta" and values.get("http-equiv") == "Content-Security-Policy":
            self.csp = values.get("content") or ""


def test_page_loads_nothing_but_itself(chromium: Browser, demo: Demo, tmp_path: Path) -> None:
    text = render_verify_page(bundle=demo.bundles["demo"], log_key=demo.log_key)
    links = _Links()
    links.feed(text)
    assert not [u for u in links.urls if re.match(r"(?i)\s*(https?:)?//", u)]
    assert links.urls == [], "every style and script is inline"
    assert not {"link", "iframe", "object", "embed"} & set(links.tags)
    policy = dict(d.partition(" ")[::2] for d in links.csp.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'none'"
    assert policy["script-src"].count("'sha256-") == 2
    assert "unsafe" not in links.csp
    url = write_page(tmp_path / "offline.html", bundle=demo.bundles["demo"],
                     log_key=demo.log_key)
    context = chromium.new_context(offline=True)
    requests: list[str] = []
    aborted: list[str] = []
    try:
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))

        def only_the_page(route: Any) -> None:
            if route.request.url == url:
                route.continue_()
            else:
                aborted.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_page)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", state="attached")
        choose_evidence(page, demo.evidence["demo"])
        assert click_verify(page) == "authentic"
        assert set(requests) <= {url}
        assert aborted == []
    finally:
        context.close()


# ---- 4. chunked hashing ------------------------------------------------------------------


def test_vendored_sha256_is_the_recorded_build() -> None:
    vendor = TEMPLATES.parent / "assets" / "vendor"
    readme = (vendor / "README.md").read_text()
    recorded = re.search(r"SHA-256 of the built file \| `([0-9a-f]{64})`", readme)
    assert recorded, "vendor/README.md records the SHA-256 of the built file"
    built = hashlib.sha256((vendor / "noble-sha256.js").read_bytes()).hexdigest()
    assert built == recorded.group(1)
    assert "MIT" in (vendor / "LICENSE-noble-hashes").read_text()


def test_large_evidence_is_hashed_in_chunks_with_progress(court_page: Page,
                                                          tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = random.Random(20260921).randbytes(40 * 1024 * 1024)
    big.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    del data
    page = court_page
    page.evaluate("""() => {
        window.progressSeen = [];
        const bar = document.getElementById('hash-progress');
        new MutationObserver(() => window.progressSeen.push(bar.value))
            .observe(bar, {childList: true, characterData: true, subtree: true});
    }""")
    assert choose_evidence(page, big, timeout=120_000) == expected
    value, maximum = page.evaluate("""() => {
        const bar = document.getElementById('hash-progress');
        return [bar.value, bar.max];
    }""")
    assert maximum == 40 * 1024 * 1024
    assert value == maximum
    seen = page.evaluate("window.progressSeen")
    assert len(set(seen)) >= 5, f"the bar moved per 8 MiB chunk: {seen}"
    small = page.evaluate("""async () => window.CustodyVerifier.hashFile(
        new Blob([new TextEncoder().encode('abc')]))""")
    assert small == hashlib.sha256(b"abc").hexdigest()


# ---- 5. languages ------------------------------------------------------------------------


_TEMPLATE_MSGID = re.compile(r'_\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_PY_MSGID = re.compile(r'gettext\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


def used_msgids() -> list[str]:
    template = (TEMPLATES / "verify.html.j2").read_text()
    module = (TEMPLATES.parent / "verify_page.py").read_text()
    found: dict[str, None] = {}
    for msgid in [*_PY_MSGID.findall(module), *_TEMPLATE_MSGID.findall(template),
                  *js_messages()]:
        found.setdefault(msgid)
    return list(found)


def test_every_message_has_a_translation_in_every_catalogue() -> None:
    used = used_msgids()
    assert len(used) > 80
    assert {"Verify the bundle", "Artefact"} <= set(used)
    assert "Authentic: the evidence file is the registered one" in js_messages()
    for lang in LANGUAGES:
        if lang == "en":
            continue
        with catalogue_path(lang, DOMAIN).open("rb") as fh:
            catalog = read_po(fh, locale=lang, domain=DOMAIN)
        messages = {m.id: m for m in catalog if m.id}
        missing = [m for m in used if m not in messages]
        empty = [m for m in used if m in messages and (not messages[m].string
                                                       or messages[m].fuzzy)]
        assert (missing, empty) == ([], []), lang
        assert sorted(messages) == sorted(used), f"{lang}: stale messages"
        for msgid in used:
            wanted = sorted(re.findall(r"%\(\w+\)s", msgid))
            assert sorted(re.findall(r"%\(\w+\)s", messages[msgid].string)) == wanted, msgid


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_renders_translated(lang: str) -> None:
    text = render_verify_page(lang=lang)
    assert f'<html lang="{lang}">' in text
    gettext = translations(lang, DOMAIN).gettext
    for label in ("Verify the bundle", "Log key", "Custody timeline",
                  "Court bundle verification"):
        assert str(escape(gettext(label))) in text
        if lang != "en":
            assert gettext(label) != label
            assert label not in text, f"{lang}: the English label {label!r} is shown"
    messages = json.loads(re.search(r'<script type="application/json" id="i18n">(.*?)</script>',
                                    text, re.S).group(1))  # type: ignore[union-attr]
    assert set(messages) == set(js_messages())
    if lang != "en":
        assert all(messages[m] != m or m in ("Index", "Organisation", "Incidents")
                   for m in messages), "the script's messages are translated"


def test_german_page_shows_a_german_verdict(chromium: Browser, demo: Demo,
                                            tmp_path: Path) -> None:
    page = open_page(chromium, write_page(tmp_path / "de.html", lang="de",
                                          bundle=demo.bundles["demo"], log_key=demo.log_key))
    try:
        assert page.text_content("#verify") == "Paket prüfen"
        choose_evidence(page, demo.evidence["demo"])
        assert click_verify(page) == "authentic"
        gettext = translations("de", DOMAIN).gettext
        label = gettext("Authentic: the evidence file is the registered one")
        assert page.text_content("#verdict") == label
        assert "Inclusion proofs verified" not in (page.text_content("#checks") or "")
    finally:
        page.close()


def test_render_options_are_checked_and_prefilled(demo: Demo) -> None:
    keys = ("w1.example+01234567+BAAA", "w2.example+89abcdef+BBBB")
    text = render_verify_page(log_key=demo.log_key, witnesses=keys, quorum=2,
                              title="Exhibit DE-01 <check>")
    assert "w1.example+01234567+BAAA\nw2.example+89abcdef+BBBB</textarea>" in text
    assert re.search(r'id="quorum"[^>]*value="2"', text)
    assert "<title>Exhibit DE-01 &lt;check&gt;</title>" in text
    assert base64.b64decode(demo.log_key.split("+", 2)[2])  # the key is shown verbatim
    assert f'value="{demo.log_key}"' in text
    with pytest.raises(InvalidInput, match="unknown language"):
        render_verify_page(lang="xx")
