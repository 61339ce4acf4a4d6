"""Controlled vocabularies: country codes, roles, legal instruments, artefact types, actions.

Vocabulary follows ISO/IEC 27037 (digital evidence handling) and the cross-border
instruments named in product.md (MLAT, EIO, EU e-Evidence EPOC/EPOC-PR, JIT agreements).
"""

from __future__ import annotations

from typing import Final

#: ISO 3166-1 alpha-2 officially assigned codes (249), generated once from tzdata's
#: iso3166.tab. EU shorthand such as "EL" (Greece) or "UK" is deliberately NOT accepted.
COUNTRIES: Final[frozenset[str]] = frozenset((  # noqa: SIM905 - reads as a table
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN "
    "BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ "
    "DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL "
    "GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM "
    "JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME "
    "MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP "
    "NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD "
    "SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO "
    "TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "
).split())

ROLES: Final = ("examiner", "custodian", "prosecutor", "court", "auditor", "admin")
#: Roles whose holders may physically hold evidence and so move custody (dispatch/receive).
CUSTODIAL_ROLES: Final = frozenset({"examiner", "custodian"})

INSTRUMENTS: Final = (
    "mlat", "eio", "epoc", "epoc-pr", "warrant", "court-order", "jit", "consent", "other",
)
#: A domestic warrant never authorises a transfer across a border.
DOMESTIC_ONLY_INSTRUMENTS: Final = frozenset({"warrant"})

ARTEFACT_TYPES: Final = (
    "disk-image", "mobile-extraction", "memory-dump", "file", "cloud-export",
    "network-capture", "other",
)

ACCESS_ACTIONS: Final = (
    "view", "view-content", "download", "copy", "export", "analysis", "analysis-start",
    "analysis-end", "verify", "print",
)

#: Digest algorithms that are computed by this system and compared at receipt.
STRONG_DIGESTS: Final = ("sha256", "sha512", "blake3")
#: Legacy digests accepted only as imported values from older tools (never trusted alone).
LEGACY_DIGESTS: Final = ("md5", "sha1")
DIGEST_HEX_LENGTH: Final = {"sha256": 64, "sha512": 128, "blake3": 64, "md5": 32, "sha1": 40}
