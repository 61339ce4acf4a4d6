"""Message catalogues of the court outputs: gettext ``.po`` files per language and
domain (``locale/<lang>/LC_MESSAGES/<domain>.po``), English msgids, read with Babel.

Labels are whole translated messages with named placeholders (``%(name)s``), never
concatenated fragments. A template environment per (language, domain) has Jinja2's i18n
extension installed, so templates write ``{{ _("Custody timeline") }}``.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

from ledger.core.errors import InvalidInput

LANGUAGES = ("en", "de", "fr", "nl")
HERE = Path(__file__).resolve().parent
LOCALE = HERE / "locale"
TEMPLATES = HERE / "templates"
ASSETS = HERE / "assets"


class _Catalogue(gettext.NullTranslations):
    """gettext translations from a parsed ``.po`` catalogue (no compiled ``.mo`` needed)."""

    def __init__(self, messages: dict[str, str | tuple[str, ...]], lang: str) -> None:
        super().__init__()
        self._messages = messages
        self._lang = lang

    def gettext(self, message: str) -> str:
        got = self._messages.get(message)
        return got if isinstance(got, str) and got else message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        got = self._messages.get(msgid1)
        if isinstance(got, tuple) and all(got):
            # Two forms in these languages; French counts 0 as singular (CLDR).
            one = n in (0, 1) if self._lang == "fr" else n == 1
            return got[0] if one else got[-1]
        return msgid1 if n == 1 else msgid2

    # Context-free aliases Jinja2's newstyle gettext may call.
    def pgettext(self, context: str, message: str) -> str:
        return self.gettext(message)

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        return self.ngettext(msgid1, msgid2, n)


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise InvalidInput(f"unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}")
    return lang


def catalogue_path(lang: str, domain: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{domain}.po"


@lru_cache(maxsize=64)
def translations(lang: str, domain: str) -> gettext.NullTranslations:
    """The translations of ``domain`` in ``lang`` (English: the msgids themselves)."""
    check_language(lang)
    if lang == "en":
        return gettext.NullTranslations()
    from babel.messages.pofile import read_po

    path = catalogue_path(lang, domain)
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=domain)
    messages: dict[str, str | tuple[str, ...]] = {}
    for msg in catalog:
        if not msg.id or msg.fuzzy:
            continue
        key = msg.id[0] if isinstance(msg.id, (list, tuple)) else msg.id
        value = msg.string
        messages[key] = tuple(value) if isinstance(value, (list, tuple)) else (value or "")
    return _Catalogue(messages, lang)


def environment(lang: str, domain: str):  # type: ignore[no-untyped-def]
    """A Jinja2 environment over ``templates/`` with autoescaping and the translations of
    ``domain`` in ``lang`` installed (``_``, ``gettext``, ``ngettext``)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(("html", "htm", "xml", "svg", "j2")),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(lang, domain), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = lang
    return env


def extract(domain: str) -> list[str | tuple[str, str]]:
    """Every msgid the ``domain``'s templates and Python modules use, in first-use order:
    ``_()``/``gettext``/``ngettext`` (singular and plural) in ``<domain>*.j2`` and the
    templates they include, and ``N_()`` in the modules named by :data:`SOURCES`."""
    from babel.messages.extract import extract as babel_extract

    ids: list[str | tuple[str, str]] = []
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    for path in SOURCES[domain]:
        method = "python" if path.suffix == ".py" else "jinja2.ext:babel_extract"
        with path.open("rb") as fh:
            for _lineno, message, _comments, _context in babel_extract(
                    method, fh, keywords=keywords,
                    options={"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                             "lstrip_blocks": "true"}):
                item = (message[0], message[1]) if isinstance(message, tuple) else message
                if item and item not in ids:
                    ids.append(item)
    return ids


SOURCES: dict[str, tuple[Path, ...]] = {
    "report": (TEMPLATES / "report.html.j2", TEMPLATES / "timeline.svg.j2",
               HERE / "render.py"),
}
