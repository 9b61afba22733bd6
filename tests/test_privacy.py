"""Privacy: PII scrubbing (precision/recall on a hand-labelled set), provenance manifests, `inspect`, offline runs."""

from collections import Counter

import pytest

from pii_gold import GOLD, GOLD_VAT
from tinylm.pii import ALL_KINDS, DEFAULT_KINDS, iban_valid, luhn_valid, scrub


def score(gold, kinds) -> dict[str, dict[str, float]]:
    """Per kind: true positives = gold values replaced (counted through the placeholders of that kind)."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for text, expected in gold:
        clean, counts = scrub(text, kinds)
        for kind in kinds:
            values = expected.get(kind, [])
            found = min(counts[kind], sum(v not in clean for v in values))
            tp[kind] += found
            fp[kind] += counts[kind] - found
            fn[kind] += len(values) - found
    table = {}
    for kind in [*kinds, "all"]:
        t, p, n = (sum(c.values()) if kind == "all" else c[kind] for c in (tp, fp, fn))
        table[kind] = {"precision": t / (t + p) if t + p else 1.0, "recall": t / (t + n) if t + n else 1.0,
                       "support": t + n}
    return table


def test_scrubber_precision_and_recall():
    table = score(GOLD, DEFAULT_KINDS)
    vat = score(GOLD_VAT, ALL_KINDS)["VAT"]
    for kind, row in [*table.items(), ("VAT", vat)]:
        print(f"{kind:6s} precision {row['precision']:.3f} recall {row['recall']:.3f} (n={row['support']})")
    assert table["all"]["precision"] >= 0.95 and table["all"]["recall"] >= 0.9
    for kind in DEFAULT_KINDS:
        assert table[kind]["precision"] >= 0.9 and table[kind]["recall"] >= 0.8, (kind, table[kind])
    assert vat["precision"] >= 0.9 and vat["recall"] >= 0.8


@pytest.mark.parametrize("text", [t for t, expected in GOLD if not expected])
def test_common_false_positives_are_left_alone(text):
    assert scrub(text) == (text, Counter())


def test_vat_ids_only_when_asked():
    text = "USt-IdNr.: DE122745410"
    assert scrub(text)[0] == text
    assert scrub(text, ALL_KINDS) == ("USt-IdNr.: [VAT]", Counter(VAT=1))


def test_checksums():
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
