"""The court report as HTML (Jinja2 templates, message catalogues) and as PDF (WeasyPrint
renders the same HTML). The content is a :class:`~ledger.court.model.Report`; this module
only lays it out: labels from ``locale/<lang>/LC_MESSAGES/report.po``, dates in UTC and in
the organisation's local time (Babel, CLDR), and an SVG picture of the custody timeline.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.core.errors import InvalidInput
from ledger.court import i18n
from ledger.court.model import Org, Report, Step, utc


def N_(message: str) -> str:
    """Mark a msgid for the catalogue; it is translated where it is shown."""
    return message


#: Labels for codes, as msgids of the ``report`` catalogue.
KIND = {"register": N_("Registration"), "dispatch": N_("Dispatch"),
        "receipt": N_("Receipt"), "access": N_("Access"), "verification": N_("Verification")}
VERDICT = {"authentic": N_("Authentic"), "verified": N_("Verified"),
           "mismatch": N_("Mismatch"), "not-registered": N_("Not registered"),
           "fault": N_("Proofs do not hold")}
INSTRUMENT = {"mlat": N_("Mutual legal assistance request (MLAT)"),
              "eio": N_("European Investigation Order (EIO)"),
              "epoc": N_("European Production Order (EPOC)"),
              "epoc-pr": N_("European Preservation Order (EPOC-PR)"),
              "warrant": N_("Domestic warrant"), "court-order": N_("Court order"),
              "jit": N_("Joint investigation team agreement (JIT)"),
              "consent": N_("Consent"), "other": N_("Other legal instrument")}
ARTEFACT_TYPE = {"disk-image": N_("Disk image"), "mobile-extraction": N_("Mobile extraction"),
                 "memory-dump": N_("Memory dump"), "file": N_("File"),
                 "cloud-export": N_("Cloud export"), "network-capture": N_("Network capture"),
                 "other": N_("Other")}
ACTION = {"view": N_("Viewing of the record"), "view-content": N_("Viewing of the content"),
          "download": N_("Download of the content"), "copy": N_("Copy"),
          "export": N_("Export"), "analysis": N_("Analysis"),
          "analysis-start": N_("Start of an analysis"), "analysis-end": N_("End of an analysis"),
          "verify": N_("Verification of the content"), "print": N_("Printing")}
OUTCOME = {"accepted": N_("accepted"), "rejected": N_("rejected"),
           "success": N_("allowed"), "denied": N_("denied")}
INCIDENT = {"rejected": N_("Receipt rejected: the evidence that arrived was not accepted"),
            "seal-discrepancy": N_("Accepted although the seals differ from those dispatched"),
            "mismatch": N_("A verification recorded a mismatch")}
FAULT = {"checkpoint": N_("The checkpoint does not verify with the log key"),
         "witness": N_("The witness policy is not met"),
         "map": N_("A state-map proof does not hold"),
         "inclusion": N_("An entry is not in the checkpointed log"),
         "leaf": N_("An entry is malformed, duplicated or from another log"),
         "incomplete": N_("The history cannot be shown to be complete"),
         "key": N_("A signer's key is unknown or not valid at that time"),
         "signature": N_("A signature does not verify"),
         "chain": N_("The events do not form a valid chain of custody"),
         "legal-basis": N_("A cited legal basis is not proven"),
         "state": N_("The signed state disagrees with the replayed events"),
         "cache": N_("The operator's tables disagree with what is proven")}
ROLE = {"examiner": N_("examiner"), "custodian": N_("custodian"), "prosecutor": N_("prosecutor"),
        "court": N_("court"), "auditor": N_("auditor"), "admin": N_("administrator")}


def zone_of(country: str, at: dt.datetime) -> zoneinfo.ZoneInfo | None:
    """The country's time zone (CLDR territory zones) if all its zones agree at ``at``;
    None for a country whose zones differ then (its local time is ambiguous)."""
    if not country:
        return None
    from babel.core import get_global

    names = get_global("territory_zones").get(country, ())
    zones = []
    for name in names:
        try:
            zones.append(zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    if not zones or len({at.astimezone(z).utcoffset() for z in zones}) != 1:
        return None
    return zones[0]


@dataclass(frozen=True)
class Fmt:
    """Locale-aware formatting for one language."""

    lang: str
    gettext: Callable[[str], str]

    def _(self, msgid: str, **kw: Any) -> str:
        text = self.gettext(msgid)
        return text % kw if kw else text

    def label(self, table: dict[str, str], code: str) -> str:
        return self.gettext(table[code]) if code in table else code

    def country(self, code: str) -> str:
        if not code:
            return ""
        from babel import Locale

        return str(Locale.parse(self.lang).territories.get(code, code))

    def org(self, org: Org | None) -> str:
        if org is None:
            return ""
        name = org.name or org.id
        return f"{name} ({self.country(org.country)})" if org.country else name

    def party(self, authority: str, country: str) -> str:
        """An authority and its country, or the country alone."""
        return f"{authority} ({self.country(country)})" if authority else self.country(country)

    def utc(self, ms: int) -> str:
        from babel.dates import format_datetime

        return format_datetime(utc(ms), "medium", tzinfo=dt.UTC, locale=self.lang) + " UTC"

    def local(self, ms: int, country: str) -> str:
        """The same instant in the country's local time, or "" when ambiguous/unknown."""
        from babel.dates import format_datetime

        at = utc(ms)
        zone = zone_of(country, at)
        if zone is None:
            return ""
        return format_datetime(at, "medium", tzinfo=zone, locale=self.lang) + " " + \
            format_datetime(at, "zzzz", tzinfo=zone, locale=self.lang)

    def date(self, ms: int) -> str:
        from babel.dates import format_date

        return format_date(utc(ms).date(), "medium", locale=self.lang)

    def number(self, n: int) -> str:
        from babel.numbers import format_decimal

        return str(format_decimal(n, locale=self.lang))

    def iso_date(self, value: str) -> str:
        from babel.dates import format_date

        try:
            return format_date(dt.date.fromisoformat(value), "long", locale=self.lang)
        except ValueError:
            return value


def fmt(lang: str) -> Fmt:
    return Fmt(lang, i18n.translations(lang, "report").gettext)


# ---- the timeline picture ------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    step: Step
    x: float
    y: float


def timeline_layout(report: Report, width: float = 1000.0) -> dict[str, Any]:
    """Coordinates of the SVG timeline: one lane per organisation, one column per step,
    custody bars on the custodian's lane, arrows from each dispatch to its receipt."""
    orgs = report.orgs
    left, right, top, lane_h = 210.0, 30.0, 40.0, 64.0
    lanes = {o.id: top + lane_h * i + lane_h / 2 for i, o in enumerate(orgs)}
    n = len(report.steps)
    span = width - left - right
    dx = span / max(n - 1, 1) if n > 1 else 0.0
    dx = min(dx, 120.0)
    markers = [Marker(s, left + dx * i + (span / 2 if n == 1 else 0.0), lanes[s.actor.org.id])
               for i, s in enumerate(report.steps)]
    # Custody: from the registration on the registering org's lane; moves at an accepted
    # receipt to the receiver's lane.
    bars: list[tuple[float, float, float]] = []
    holder: tuple[str, float] | None = None
    for m in markers:
        s = m.step
        if s.kind == "register" and holder is None:
            holder = (s.actor.org.id, m.x)
        elif s.kind == "receipt" and s.outcome == "accepted" and holder is not None:
            bars.append((lanes[holder[0]], holder[1], m.x))
            holder = (s.actor.org.id, m.x)
    if holder is not None:
        end = (markers[-1].x if markers else left) + 24.0
        bars.append((lanes[holder[0]], holder[1], end))
    arrows = []
    open_dispatch: dict[str, Marker] = {}
    for m in markers:
        if m.step.kind == "dispatch":
            open_dispatch[m.step.transfer] = m
        elif m.step.kind == "receipt" and m.step.transfer in open_dispatch:
            d = open_dispatch.pop(m.step.transfer)
            arrows.append((d.x, d.y, m.x, m.y, m.step.outcome))
    for d in open_dispatch.values():  # in transit: an arrow to the receiver's lane
        to = lanes.get(d.step.to_org.id if d.step.to_org else "", d.y)
        arrows.append((d.x, d.y, d.x + min(dx, 60.0) or 60.0, to, "open"))
    height = top + lane_h * max(len(orgs), 1) + 70.0
    return {"width": width, "height": height, "left": left, "top": top, "lane_h": lane_h,
            "lanes": [(o, lanes[o.id]) for o in orgs], "markers": markers, "bars": bars,
            "arrows": arrows, "axis_y": top + lane_h * max(len(orgs), 1) + 12.0}


# ---- documents -----------------------------------------------------------------------


def _context(report: Report, lang: str, *, for_pdf: bool) -> dict[str, Any]:
    f = fmt(lang)
    page_label = f._("Page %(page)s of %(pages)s", page="\x00page\x00", pages="\x00pages\x00")
    return {"r": report, "f": f, "layout": timeline_layout(report), "for_pdf": for_pdf,
            "KIND": KIND, "VERDICT": VERDICT, "INSTRUMENT": INSTRUMENT,
            "ARTEFACT_TYPE": ARTEFACT_TYPE, "ACTION": ACTION, "OUTCOME": OUTCOME,
            "INCIDENT": INCIDENT, "FAULT": FAULT, "ROLE": ROLE,
            "page_css": css_content(page_label),
            "bundle_css": css_content(f._("Bundle SHA-256 %(sha)s", sha=report.bundle_sha256))}


def css_content(text: str) -> str:
    """A CSS ``content`` value for a translated label whose placeholders ``\\x00page\\x00``
    and ``\\x00pages\\x00`` become page counters."""
    parts = []
    for i, piece in enumerate(text.split("\x00")):
        if i % 2:
            parts.append(f"counter({piece})")
        elif piece:
            escaped = piece.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
            parts.append(f'"{escaped}"')
    return " ".join(parts) or '""'


def render_html(report: Report, lang: str = "en", *, for_pdf: bool = False) -> str:
    i18n.check_language(lang)
    env = i18n.environment(lang, "report")
    html: str = env.get_template("report.html.j2").render(
        **_context(report, lang, for_pdf=for_pdf))
    return html


def render_pdf(report: Report, lang: str = "en") -> bytes:
    """The same HTML through WeasyPrint (a real layout engine: Pango text, CSS paged media)."""
    try:
        import weasyprint  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:
        raise InvalidInput("the PDF report needs WeasyPrint and the system's Pango: "
                           "pip install 'custody-ledger[pdf]' (Debian: apt-get install "
                           f"libpango-1.0-0 libpangoft2-1.0-0) ({exc})") from None
    html = render_html(report, lang, for_pdf=True)
    # No base URL and a fetcher that refuses everything: the report has no external parts.
    return bytes(weasyprint.HTML(string=html, url_fetcher=_no_fetch).write_pdf())


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    raise ValueError(f"the court report loads nothing from outside ({url})")
