"""The court's verification page: ONE self-contained HTML file that re-checks a court
bundle (``custody-bundle/v1``, docs/bundle.md) in the browser, offline.

The verifier (``assets/verify.js``: steps B1-B12, the same verdict and fault kinds as
:func:`ledger.core.bundle.verify_bundle`), its styles and the vendored streaming SHA-256
(``assets/vendor/noble-sha256.js``) are inlined; the page loads nothing, and its
Content-Security-Policy allows only its own inline scripts and style (by hash) and no
connection at all. A bundle may be embedded as a JSON data block; the court can still
choose another one. The log key is never taken from the bundle: a key given here is
pre-filled with a visible note telling the court to compare it with the key it
obtained out of band.

Labels are gettext messages of the ``verify`` domain (``locale/<lang>/LC_MESSAGES/
verify.po``): the template's through ``_()``, the script's (marked ``_('…')`` or
``N_('…')`` in verify.js) passed to the page as a JSON dictionary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from markupsafe import Markup

from ledger.core.errors import InvalidInput
from ledger.court.i18n import ASSETS, check_language, environment, translations

DOMAIN = "verify"
TEMPLATE = "verify.html.j2"
VERIFY_JS = ASSETS / "verify.js"
VERIFY_CSS = ASSETS / "verify.css"
NOBLE_JS = ASSETS / "vendor" / "noble-sha256.js"

#: A message of verify.js: ``_('…')`` or ``N_('…')`` with one string literal.
_JS_MESSAGE = re.compile(r"""\bN?_\(\s*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")""")
_JS_ESCAPE = re.compile(r"\\(.)")


def _unescape(literal: str) -> str:
    return _JS_ESCAPE.sub(lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                          literal)


@lru_cache(maxsize=1)
def js_messages() -> tuple[str, ...]:
    """The msgids the page's script shows, in order of appearance (no duplicates)."""
    found: dict[str, None] = {}
    for m in _JS_MESSAGE.finditer(VERIFY_JS.read_text("utf-8")):
        found.setdefault(_unescape(m.group(1) if m.group(1) is not None else m.group(2)))
    return tuple(found)


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str, str]:
    css = VERIFY_CSS.read_text("utf-8")
    scripts = NOBLE_JS.read_text("utf-8"), VERIFY_JS.read_text("utf-8")
    if "</style" in css.lower():
        raise RuntimeError("verify.css must not contain '</style'")
    for text in scripts:
        if "</script" in text.lower() or "<!--" in text:
            raise RuntimeError("an inlined script must not contain '</script' or '<!--'")
    return css, *scripts


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def script_json(value: Any, *, ascii_only: bool = False) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` are
    escaped as ``\\u003c`` … inside strings (the only place JSON allows them), so no
    ``</script>`` or ``<!--`` in the data can end the block; the parsed value is
    unchanged. Integers keep their exact digits and floats their fraction."""
    try:
        text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the bundle cannot be embedded as JSON: {exc}") from None
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)  # noqa: S704 - escaped above for a script data block


def render_verify_page(*, lang: str = "en", bundle: Mapping[str, Any] | None = None,
                       log_key: str = "", witnesses: Sequence[str] = (), quorum: int = 0,
                       title: str = "") -> str:
    """The complete verification page (HTML). ``bundle``: a court bundle to embed and
    pre-load (``Bundle.to_json()`` or the parsed file); ``log_key``, ``witnesses`` and
    ``quorum`` pre-fill the form (the court must still compare the log key with the one
    it obtained out of band; the page says so); ``title`` replaces the default heading."""
    check_language(lang)
    if isinstance(witnesses, str):
        raise InvalidInput("witnesses is a sequence of verifier keys, not one string")
    if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 0:
        raise InvalidInput("quorum must be a non-negative integer")
    css, noble_js, verify_js = _assets()
    gettext = translations(lang, DOMAIN).gettext
    messages = {msgid: gettext(msgid) for msgid in js_messages()}
    csp = "; ".join((
        "default-src 'none'",
        f"script-src {_csp_hash(noble_js)} {_csp_hash(verify_js)}",
        f"style-src {_csp_hash(css)}",
        "img-src data:",
        "connect-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ))
    env = environment(lang, DOMAIN)
    template = env.get_template(TEMPLATE)
    page: str = template.render(
        page_title=title or gettext("Court bundle verification"),
        csp=csp,
        css=Markup(css),  # noqa: S704 - our own asset, checked for '</style'
        noble_js=Markup(noble_js),  # noqa: S704 - our own asset, checked for '</script'
        verify_js=Markup(verify_js),  # noqa: S704 - idem
        i18n_json=script_json(messages),
        embedded=bundle is not None,
        bundle_json=script_json(dict(bundle), ascii_only=True) if bundle is not None else "",
        log_key=log_key,
        witnesses_text="\n".join(witnesses),
        quorum_text=str(quorum) if quorum else "",
    )
    return page
