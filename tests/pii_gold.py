"""A small hand-labelled set of invoice snippets (English and German) for the PII scrubber: (text, gold values by kind).

Values are synthetic: IBANs and card numbers carry valid checksums, phone numbers use fictional ranges.
"""

GOLD = [
    ("Please remit to IBAN: DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.", {"IBAN": ["DE89 3704 0044 0532 0130 00"]}),
    ("IBAN GB29NWBK60161331926819 · BIC NWBKGB2L", {"IBAN": ["GB29NWBK60161331926819"]}),
    ("Bankverbindung: Sparkasse Münster, IBAN DE02 1203 0000 0000 2020 51", {"IBAN": ["DE02 1203 0000 0000 2020 51"]}),
    ("IBAN: NL91 ABNA 0417 1643 00 - please quote INV-2024-00123", {"IBAN": ["NL91 ABNA 0417 1643 00"]}),
    ("Overmaking to FR14 2004 1010 0505 0001 3M02 606 by 15.03.2024.", {"IBAN": ["FR14 2004 1010 0505 0001 3M02 606"]}),
    ("Kontakt: buchhaltung@stadtwerke-stuttgart.de, Tel.: +49 (251) 611131-05",
     {"EMAIL": ["buchhaltung@stadtwerke-stuttgart.de"], "PHONE": ["+49 (251) 611131-05"]}),
    ("Questions? billing@acme-supplies.co.uk or call 0115 496 0104.",
     {"EMAIL": ["billing@acme-supplies.co.uk"], "PHONE": ["0115 496 0104"]}),
    ("Phone: (212) 555-0164 | Email: invoices@northwind.com",
     {"PHONE": ["(212) 555-0164"], "EMAIL": ["invoices@northwind.com"]}),
    ("Phone: +1 (206) 555-0167 | E: accounts.payable@contoso.example.org",
     {"PHONE": ["+1 (206) 555-0167"], "EMAIL": ["accounts.payable@contoso.example.org"]}),
    ("Telefon +49 251 4172506, Fax +49 251 4172599", {"PHONE": ["+49 251 4172506", "+49 251 4172599"]}),
    ("Rückfragen unter (030) 1234567 oder j.mueller+rechnung@firma.de",
     {"PHONE": ["(030) 1234567"], "EMAIL": ["j.mueller+rechnung@firma.de"]}),
    ("Mobil: 0171 2345678", {"PHONE": ["0171 2345678"]}),
    ("Tel. 089/12345-678, Zahlbar bis 2024-09-25", {"PHONE": ["089/12345-678"]}),
    ("Call us on +44 20 7946 0958 quoting RE-4711/24", {"PHONE": ["+44 20 7946 0958"]}),
    ("Paid by card 4111 1111 1111 1111 on 2024-03-15, amount 1,234.56 USD", {"CARD": ["4111 1111 1111 1111"]}),
    ("Kreditkarte: 5500-0000-0000-0004, Betrag 1.234,56 EUR", {"CARD": ["5500-0000-0000-0004"]}),
    ("Card no. 378282246310005 (Amex) charged $48.00", {"CARD": ["378282246310005"]}),
    ("Visa 4012888888881881 exp 12/27", {"CARD": ["4012888888881881"]}),
    ("Mastercard 5105 1051 0510 5100 – Rechnung Nr. RE-2024-0815", {"CARD": ["5105 1051 0510 5100"]}),
    ("Contact: Anna Smith <anna.smith@example.com>", {"EMAIL": ["anna.smith@example.com"]}),
    ("E-Mail: info@müller-gmbh.de is our old address; now info@mueller-gmbh.de",
     {"EMAIL": ["info@mueller-gmbh.de"]}),
    # Nothing to find: the false positives an invoice is full of.
    ("Rechnung Nr.: INV-2024-58235, Ausstellungsdatum: 2024-08-26, Kundennummer: K-50235", {}),
    ("Ihr Zeichen: 4575469345, Objekt: Siemensstraße 161, 93055 Regensburg", {}),
    ("4    Wartung Heizungsanlage        1  psch.     1.396,92  1.396,92", {}),
    ("5    Konzessionsabgabe         10.840  kWh         0,0204    221,14", {}),
    ("Invoice date 15.03.2024, due 14.04.2024, order PO-884213", {}),
    ("Total due: 12,345.67 GBP. Delivery to Nottingham NG7 5BS.", {}),
    ("Stadtwerke Stuttgart · Marktplatz 48 · 48165 Münster", {}),
    ("Subtotal 10.840,00 EUR, USt. 19 %: 2.059,60 EUR, Gesamt 12.899,60 EUR", {}),
    ("Order 2024-000123 shipped 03/15/2024, tracking 1Z999AA10123456784", {}),
    ("Ref: RE-4711/24 vom 01.02.2024, Seite 1 von 2", {}),
    ("Quantity 1000000 units at 0.0125 EUR each", {}),
    ("Contract 2023-11-0045-A, term 24 months", {}),
    ("Invoice number 20240315001 for account 987654", {}),
    ("Zeitraum 01.01.2024 - 31.12.2024, Zählernummer 1ESY1160512345", {}),
    ("Artikel 4006381333931 (EAN), Menge 12", {}),
    ("PLZ 01067 Dresden, Postfach 10 11 12", {}),
    ("Summe netto 1 234,56 EUR", {}),
    ("OCR-damaged IBAN DE89 3704 0044 0532 0130 01 is left alone (checksum fails)", {}),
    ("VAT Reg. No. GB 467 4537 41 and USt-IdNr.: DE122745410", {}),
]

# VAT IDs: found only when the optional kind is on.
GOLD_VAT = [
    ("USt-IdNr.: DE122745410", {"VAT": ["DE122745410"]}),
    ("UID: ATU12345678", {"VAT": ["ATU12345678"]}),
    ("VAT Reg. No. GB 467 4537 41", {"VAT": ["GB 467 4537 41"]}),
    ("VAT ID: NL622379267B02", {"VAT": ["NL622379267B02"]}),
    ("VAT number GB123456789, invoice INV-2024-00077", {"VAT": ["GB123456789"]}),
    ("Steuernummer 143/234/56789 (not a VAT ID), 2024-01-31", {}),
]
