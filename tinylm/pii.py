"""Opt-in PII scrubbing: e-mail addresses, IBANs, card numbers, phone numbers and (optionally) VAT IDs become
typed placeholders ([EMAIL], [IBAN], ...) before a tokenizer or model ever sees the text.

Each kind is a compiled regex for candidates plus, where a checksum exists, a validator (ISO 13616 mod-97 for
IBANs, Luhn for cards), so invoice numbers, dates, amounts and postal codes are left alone. An IBAN mangled by
OCR fails its checksum and therefore stays in the text: the validator trades that recall for precision.
Only counts per kind are ever reported, never the values.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable

EMAIL, IBAN, CARD, PHONE, VAT = "EMAIL", "IBAN", "CARD", "PHONE", "VAT"
DEFAULT_KINDS = (EMAIL, IBAN, CARD, PHONE)
ALL_KINDS = (*DEFAULT_KINDS, VAT)
PLACEHOLDERS = [f"[{kind}]" for kind in ALL_KINDS]  # all added to a scrubbing tokenizer, so settings can change later

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Country code, check digits, then the BBAN, however it is spaced; the candidate may run into the next word
# ("... 0130 00 BIC"), so iban_length keeps the longest prefix that passes the checksum.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: {0,2}[A-Z0-9]){11,34}(?![A-Za-z0-9])")
# 13-19 digits, optionally grouped by spaces or dashes; issuers' first digits are 2-6. Never inside a longer token.
_CARD = re.compile(r"(?<![\w+/.,-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w/-]|[.,]\d)")
# A phone number starts with +CC, an area code in parentheses, or a national trunk 0; then digits with single
# separators. Lookarounds keep it from starting or ending inside invoice numbers, amounts and dates.
_PHONE = re.compile(r"(?<![\w+/.,-])(?:\+\d{1,3}[ ./-]?(?:\(0?\d{1,5}\)[ ./-]?)?|\(\d{2,5}\)[ ./-]?|0)"
                    r"\d(?:[ ./-]?\d){4,13}(?![\w/]|[.,]\d)")
_DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}")
_VAT = re.compile(r"(?<![A-Za-z0-9])(?:DE ?\d{9}|ATU ?\d{8}|GB ?\d{3} ?\d{4} ?\d{2}(?: ?\d{3})?|NL ?\d{9} ?B\d{2}"
                  r"|FR ?[0-9A-Z]{2} ?\d{9}|IE ?\d{7}[A-Z]{1,2}|BE ?0\d{9}|IT ?\d{11}|ES ?[0-9A-Z]\d{7}[0-9A-Z])"
                  r"(?![A-Za-z0-9])")


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35; the number mod 97 must be 1."""
    code = candidate.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in code[4:] + code[:4])
    return int(digits) % 97 == 1


# IBAN length per country (ISO 13616 registry). A 1-in-97 chance lets a following word pass the checksum
# ("GB14 WICU 2592 8779 5501 92 BIC" does), so where the country is known only its exact length counts.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}


def iban_length(candidate: str) -> int:
    """Length of the longest leading part, ending at a space or the end, that is a valid IBAN; 0 if none."""
    expected = IBAN_LENGTHS.get(candidate[:2])
    for end in range(len(candidate), 14, -1):
        if end < len(candidate) and candidate[end] != " " or candidate[end - 1] == " ":
            continue
        if expected is not None and len(candidate[:end].replace(" ", "")) != expected:
            continue
        if iban_valid(candidate[:end]):
            return end
    return 0


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def phone_valid(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 7 <= digits <= 15 and not _DATE.fullmatch(candidate.strip())


# Order matters: e-mails first (they may contain digits), VAT IDs before IBANs (NL622379267B02 is IBAN-shaped),
# IBANs and cards before phones (all are digit runs).
# Each rule gives the length of the leading part of a candidate that is a value of its kind (0: none).
def whole(valid: Callable[[str], bool]) -> Callable[[str], int]:
    return lambda s: len(s) if valid(s) else 0


RULES: tuple[tuple[str, re.Pattern, Callable[[str], int]], ...] = (
    (EMAIL, _EMAIL, len),
    (VAT, _VAT, len),
    (IBAN, _IBAN, iban_length),
    (CARD, _CARD, whole(luhn_valid)),
    (PHONE, _PHONE, whole(phone_valid)),
)


def scrub(text: str, kinds: tuple[str, ...] = DEFAULT_KINDS) -> tuple[str, Counter]:
    """(text with each found value replaced by its [KIND] placeholder, count per kind)."""
    counts: Counter = Counter()
    kept: list[str] = []

    def hold(value: str) -> str:
        # An IBAN-shaped value whose checksum failed stays as written; a private-use sentinel hides it from the
        # card and phone rules, which would otherwise claim its digit groups.
        kept.append(value)
        return f"\ue000{chr(0xE001 + len(kept) - 1)}\ue000"

    for kind, pattern, length in RULES:
        if kind not in kinds:
            continue

        def replace(match: re.Match, kind=kind, length=length) -> str:
            value = match.group()
            n = length(value)
            if not n:
                return hold(value) if kind == IBAN else value
            counts[kind] += 1
            return f"[{kind}]{value[n:]}"

        text = pattern.sub(replace, text)
    for i, value in enumerate(kept):
        text = text.replace(f"\ue000{chr(0xE001 + i)}\ue000", value)
    return text, counts


def scrub_all(texts: list[str], kinds: tuple[str, ...] = DEFAULT_KINDS) -> tuple[list[str], dict[str, int]]:
    """Scrub every document; returns the new texts and the total count per kind (all kinds, zeros included)."""
    total: Counter = Counter()
    out = []
    for text in texts:
        clean, counts = scrub(text, kinds)
        out.append(clean)
        total.update(counts)
    return out, {kind: total.get(kind, 0) for kind in kinds}


def kinds_for(scrub_vat: bool) -> tuple[str, ...]:
    return ALL_KINDS if scrub_vat else DEFAULT_KINDS
