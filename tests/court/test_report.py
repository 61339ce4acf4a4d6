"""The court report (``custody report``, ``GET /v1/reports``): structure golden tests in
every language, the PDF's text, verdicts from the bundle only, and a careless or hostile
user's inputs.

The ledger is the one ``custody demo`` builds (the fixture of the independent-verifier
tests, plus a second artefact with a hostile description)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ledger.court import i18n
from tests.independent.test_independent_verifier import MUTATIONS, Demo, build_demo, custody

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("CUSTODY_UPDATE_GOLDEN") == "1"
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The independent-verifier tests' real demo ledger, built once for this module."""
    return build_demo(tmp_path_factory.mktemp("court-demo"))


class Outline(HTMLParser):
    """What a golden test compares: the document's structure, not its pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.steps: list[dict[str, str]] = []
        self.rows: dict[str, list[dict[str, str]]] = {}
        self.headings: list[str] = []
        self.svg_steps: list[str] = []
        self.meta: dict[str, str] = {}
        self.scripts = 0
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        cls = a.get("class", "").split()
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "div" and "step" in cls:
            self.steps.append({"kind": a["data-kind"], "index": a["data-index"]})
        if tag == "g" and "step" in cls:
            self.svg_steps.append(a["data-index"])
        for name in ("access", "recheck", "signature", "digest", "fault", "incident",
                     "legal-basis", "key"):
            if name in cls:
                self.rows.setdefault(name, []).append(
                    {k: v for k, v in a.items() if k.startswith("data-")})
        if tag == "meta" and a.get("name", "").startswith("custody-"):
            self.meta[a["name"]] = a.get("content", "")
        if tag == "script":
            self.scripts += 1
        self._h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._h2 and data.strip():
            self.headings.append(data.strip())
            self._h2 = False


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    return parser


def run_report(demo: Demo, out: Path, *args: Any, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
    return custody("--home", demo.home, "report", *args, "--out", out, "--json", check=check)


@pytest.fixture(scope="module")
def reports(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reports")
    made = {}
    for lang in i18n.LANGUAGES:
        out = root / f"report-{lang}.html"
        run_report(demo, out, demo.arts["demo"], "--lang", lang,
                   "--evidence", demo.evidence["demo"])
        made[lang] = out
    return made


def structure(o: Outline) -> dict[str, Any]:
    return {"sections": o.sections, "steps": o.steps, "svg_steps": o.svg_steps,
            "rows": o.rows, "verdict": o.meta.get("custody-verdict")}


def golden(name: str, value: Any) -> Any:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE and os.environ.get("CI"):
            pytest.fail(f"golden file {path} is missing")
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return json.loads(path.read_text())


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_report_structure_matches_the_golden_file_in_every_language(
        reports: dict[str, Path], lang: str) -> None:
    o = outline(reports[lang].read_text())
    got = structure(o)
    # One structure whatever the language: the same golden file for all four.
    assert got == golden("report-structure.json", got)
    assert o.headings == golden(f"report-headings-{lang}.json", o.headings)
    assert o.scripts == 0, "the report itself runs no script (the verification page does)"


def test_structure_is_the_demo_story(reports: dict[str, Path]) -> None:
    o = outline(reports["en"].read_text())
    assert o.meta["custody-verdict"] == "authentic"
    kinds = [s["kind"] for s in o.steps]
    assert kinds[0] == "register"
    assert kinds.count("dispatch") == 2
    assert kinds.count("receipt") == 2
    assert {r["data-outcome"] for r in o.rows["access"]} == {"success", "denied"}
    # The tampered copy was rejected at receipt: a recheck that differs, and an incident.
    assert {r["data-equal"] for r in o.rows["recheck"]} == {"yes", "no"}
    assert [r["data-kind"] for r in o.rows["incident"]] == ["rejected"]
    assert o.svg_steps == [s["index"] for s in o.steps]
    assert {r["data-alg"] for r in o.rows["digest"]} >= {"sha256", "sha512"}


@pytest.mark.parametrize("lang", [x for x in i18n.LANGUAGES if x != "en"])
def test_every_label_is_translated(reports: dict[str, Path], lang: str) -> None:
    english = outline(reports["en"].read_text()).headings
    translated = outline(reports[lang].read_text()).headings
    assert len(english) == len(translated)
    same = [e for e, t in zip(english, translated, strict=True) if e == t]
    assert same == [], f"{lang}: headings left in English: {same}"
    html = reports[lang].read_text()
    assert f'<html lang="{lang}">' in html
    for english_label in ("Custody timeline", "Every access", "Integrity incidents"):
        assert english_label not in html


@pytest.mark.parametrize("lang", [x for x in i18n.LANGUAGES if x != "en"])
def test_catalogues_are_complete(lang: str) -> None:
    from babel.messages.pofile import read_po

    with i18n.catalogue_path(lang, "report").open("rb") as fh:
        catalog = read_po(fh)
    placeholders = re.compile(r"%\(\w+\)[sd]")
    missing, broken = [], []
    for item in i18n.extract("report"):
        msgid = item[0] if isinstance(item, tuple) else item
        msg = catalog.get(msgid)
        strings = () if msg is None else (
            msg.string if isinstance(msg.string, tuple) else (msg.string,))
        if msg is None or not all(strings) or msg.fuzzy:
            missing.append(msgid)
            continue
        want = sorted(placeholders.findall(msgid))
        for s in strings:
            if sorted(placeholders.findall(s)) != want and not (
                    isinstance(item, tuple) and "%(num)d" in msgid):
                broken.append((msgid, s))
    assert missing == [], f"{lang}: untranslated: {missing[:5]}"
    assert broken == [], f"{lang}: placeholders differ: {broken[:3]}"


def test_local_time_is_shown_in_the_organisations_zone(reports: dict[str, Path]) -> None:
    html = reports["en"].read_text()
    assert "Local time in Germany" in html
    assert "Central European" in html
    assert "Local time in Netherlands" in html


@pytest.mark.skipif(shutil.which("pdftotext") is None and not os.environ.get("CI"),
                    reason="poppler-utils (pdftotext) not installed")
def test_pdf_text_has_the_verdict_the_digests_every_step_and_the_bundle_on_every_page(
        demo: Demo, tmp_path: Path) -> None:
    pytest.importorskip("weasyprint")
    out = tmp_path / "court.pdf"
    summary = json.loads(run_report(demo, out, demo.arts["demo"], "--evidence",
                                    demo.evidence["demo"]).stdout)
    assert out.read_bytes().startswith(b"%PDF-")
    bundle_sha = hashlib.sha256((tmp_path / "court.bundle.json").read_bytes()).hexdigest()
    assert summary["bundle_sha256"] == bundle_sha
    info = subprocess.run(["pdfinfo", out], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    assert pages >= 2
    text = subprocess.run(["pdftotext", "-layout", out, "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = "".join(text.split())
    assert "Authentic" in text
    bundle = json.loads((tmp_path / "court.bundle.json").read_text())
    registered = _registered(bundle)
    for digest in registered.values():
        assert digest in flat
    html = tmp_path / "steps.html"
    run_report(demo, html, demo.arts["demo"])
    for step in outline(html.read_text()).steps:
        assert f"logindex{step['index']}" in flat.replace(",", "")
    for kind in ("Registration", "Dispatch", "Receipt", "Access"):
        assert kind in text
    for page in range(1, pages + 1):
        one = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), out, "-"],
                             capture_output=True, text=True, check=True).stdout
        assert bundle_sha in "".join(one.split()), f"page {page} lacks the bundle SHA-256"
        assert f"Page{page}of{pages}" in "".join(one.split())


def _registered(bundle: dict[str, Any]) -> dict[str, str]:
    import base64

    for e in bundle["entries"]:
        event = json.loads(base64.b64decode(e["leaf"]))["event"]["event"]
        if event["kind"] == "artefact.register" and \
                event["payload"]["id"] == bundle["subject"]["artefact"]:
            return dict(event["payload"]["digests"])
    raise AssertionError("no registration in the bundle")


def test_tampered_file_gives_a_mismatch_report_and_exit_1(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = run_report(demo, out, demo.arts["demo"], "--evidence", demo.evidence["tampered"],
                      check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["verdict"] == "mismatch"
    o = outline(out.read_text())
    assert o.meta["custody-verdict"] == "mismatch"
    assert o.steps, "a mismatch still shows the proven history (of the registered bytes)"


@pytest.mark.parametrize("mutation", ["dispatch-dropped", "checkpoint-signature-flipped",
                                      "leaf-byte-flipped"])
def test_a_bundle_that_does_not_verify_gives_faults_and_no_timeline(
        demo: Demo, tmp_path: Path, mutation: str) -> None:
    case = MUTATIONS[mutation](demo)
    src = tmp_path / "in.json"
    src.write_text(json.dumps(case.obj))
    out = tmp_path / "r.html"
    proc = custody("report", "--bundle", src, "--log-key", case.log_key, "--out", out,
                   "--json", check=False)
    assert proc.returncode == 1, proc.stderr
    o = outline(out.read_text())
    assert o.meta["custody-verdict"] == "fault"
    assert "faults" in o.sections
    assert "timeline" not in o.sections
    assert o.rows["fault"], "every fault is listed"
    assert o.steps == []
    assert o.svg_steps == []


def test_a_court_without_a_ledger_reports_on_a_received_bundle(demo: Demo,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "received.json"
    src.write_text(json.dumps(demo.bundles["demo"]))
    out = tmp_path / "court.html"
    env_home = tmp_path / "no-home"
    proc = custody("--home", env_home, "report", "--bundle", src, "--log-key", demo.log_key,
                   "--evidence", demo.evidence["demo"], "--out", out, "--json")
    assert json.loads(proc.stdout)["verdict"] == "authentic"
    # The bundle written beside the report is byte for byte the one received... re-encoded
    # deterministically: its SHA-256 is printed in the report.
    written = (tmp_path / "court.bundle.json").read_bytes()
    assert hashlib.sha256(written).hexdigest() in out.read_text()
    assert json.loads(written) == demo.bundles["demo"] | {"log_key": demo.bundles["demo"].get(
        "log_key", "")}
    # The key must come from the caller: none given and no home → one sentence, exit 2.
    bad = custody("--home", env_home, "report", "--bundle", src, "--out", tmp_path / "x.html",
                  check=False)
    assert bad.returncode == 2
    assert "--log-key" in bad.stderr
    assert not (tmp_path / "x.html").exists()


def test_careless_inputs_end_in_one_sentence_and_nothing_written(demo: Demo,
                                                                 tmp_path: Path) -> None:
    art = demo.arts["demo"]
    cases = [
        (["report", art, "--out", tmp_path / "r.docx"], 2, ".html or .pdf"),
        (["report", art, "--out", tmp_path / "r.html", "--lang", "xx"], 2, "unknown language"),
        (["report", "no-such-artefact", "--out", tmp_path / "r.html"], 4, "unknown artefact"),
        (["report", "--out", tmp_path / "r.html"], 2, "name an artefact"),
        (["report", art, "--out", tmp_path / "r.html", "--evidence", tmp_path / "missing"],
         4, "no such file"),
    ]
    for args, code, words in cases:
        proc = custody("--home", demo.home, *args, check=False)
        assert proc.returncode == code, (args, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # An existing file is not overwritten without --force, and nothing else is written.
    (tmp_path / "r.html").write_text("keep")
    proc = custody("--home", demo.home, "report", art, "--out", tmp_path / "r.html",
                   check=False)
    assert proc.returncode == 2
    assert "--force" in proc.stderr
    assert (tmp_path / "r.html").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    custody("--home", demo.home, "report", art, "--out", tmp_path / "r.html", "--force")
    assert (tmp_path / "r.html").read_text() != "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r.bundle.json", "r.html", "r.verify.html"]


def test_hostile_text_in_signed_fields_is_escaped(demo: Demo, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.home, home)
    blob = tmp_path / "hostile.bin"
    blob.write_bytes(b"hostile description")
    out = json.loads(custody("--home", home, "register", blob, "--case", "CASE-2026-0042",
                             "--exhibit", "DE-<b>9</b>", "--description", HOSTILE,
                             "--as", "de-examiner", "--json").stdout)
    report = tmp_path / "h.html"
    custody("--home", home, "report", out["artefact_id"], "--out", report)
    html = report.read_text()
    assert HOSTILE not in html
    assert "<script>alert" not in html
    assert "<b>9</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert outline(html).scripts == 0
