#!/usr/bin/env python3
"""Deterministic generator for the synthetic tinylm invoice data set.

Writes, next to this script:

* corpus.jsonl  - unlabelled pretraining corpus, one {"text": ...} per line
* train.csv     - labelled invoices (columns: text,label)
* test.csv      - labelled invoices (columns: text,label)

Standard library only. Every random choice goes through ``random.Random``
instances with fixed seeds, so two runs produce byte-identical files.

Everything here is invented: company names, people, addresses, VAT IDs,
IBANs (checksum-valid but fictitious), BICs, phone numbers and e-mail
addresses. Any resemblance to real entities is coincidental.

Usage:  python data/generate.py
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
from decimal import ROUND_HALF_UP, Decimal

# --------------------------------------------------------------------------
# Output sizes and seeds
# --------------------------------------------------------------------------

OUT_DIR = os.path.dirname(os.path.abspath(__file__))

N_CORPUS = 3000
N_TRAIN = 1600
N_TEST = 400

SEED_WORLD = 20240101   # vendors, customers (shared by all splits)
SEED_CORPUS = 1001
SEED_TRAIN = 2002
SEED_TEST = 3003

CATEGORIES = [
    "software", "office_supplies", "travel", "utilities",
    "consulting", "logistics", "marketing", "facilities",
]

# --------------------------------------------------------------------------
# Difficulty knobs (tuned so that simple baselines land well below 100 %)
# --------------------------------------------------------------------------

SHARED_SCALE = 2.4      # multiplier on the weight of shared (cross-category) item pools
P_MIXED = 0.34          # invoice also contains items from a related category
P_AMBIGUOUS = 0.20      # of those: secondary items get comparable amounts (label = majority amount)
P_INCIDENTAL = 0.35     # small extra line (shipping, travel expenses, setup fee ...)
P_GENERIC_VENDOR = 0.60  # vendor name carries no category word
P_MULTI_VENDOR = 0.60   # vendor sells in a second (related) category
P_CONTEXT_LINE = 0.5    # subject / project / property / shipment line
P_OCR = 0.25            # fraction of documents with OCR-like noise
OCR_RATE = (0.003, 0.015)  # per-character noise rate range for noisy docs
P_LANG_SWITCH_ITEMS = 0.15  # German invoice with English item names (IT, agencies)

# --------------------------------------------------------------------------
# Geography
# --------------------------------------------------------------------------

# (city_de, city_en, plz_lo, plz_hi)
DE_CITIES = [
    ("München", "Munich", 80331, 81929), ("Berlin", "Berlin", 10115, 14199),
    ("Hamburg", "Hamburg", 20095, 22769), ("Köln", "Cologne", 50667, 51149),
    ("Frankfurt am Main", "Frankfurt", 60306, 60599), ("Stuttgart", "Stuttgart", 70173, 70629),
    ("Düsseldorf", "Düsseldorf", 40210, 40629), ("Leipzig", "Leipzig", 4103, 4357),
    ("Dresden", "Dresden", 1067, 1328), ("Hannover", "Hanover", 30159, 30669),
    ("Nürnberg", "Nuremberg", 90402, 90491), ("Bremen", "Bremen", 28195, 28779),
    ("Essen", "Essen", 45127, 45359), ("Dortmund", "Dortmund", 44135, 44388),
    ("Mannheim", "Mannheim", 68159, 68309), ("Augsburg", "Augsburg", 86150, 86199),
    ("Regensburg", "Regensburg", 93047, 93059), ("Freiburg im Breisgau", "Freiburg", 79098, 79117),
    ("Bielefeld", "Bielefeld", 33602, 33739), ("Münster", "Münster", 48143, 48167),
    ("Kassel", "Kassel", 34117, 34134), ("Würzburg", "Würzburg", 97070, 97084),
    ("Ulm", "Ulm", 89073, 89081), ("Kiel", "Kiel", 24103, 24159),
    ("Karlsruhe", "Karlsruhe", 76131, 76229), ("Mainz", "Mainz", 55116, 55131),
]
AT_CITIES = [
    ("Wien", "Vienna", 1010, 1230), ("Graz", "Graz", 8010, 8063), ("Linz", "Linz", 4020, 4040),
    ("Salzburg", "Salzburg", 5020, 5026), ("Innsbruck", "Innsbruck", 6020, 6080),
    ("Klagenfurt", "Klagenfurt", 9020, 9020),
]
# (city, postcode areas)
GB_CITIES = [
    ("London", ["EC1A", "EC2A", "EC4M", "SE1", "SW1A", "N1", "E14", "W1D", "WC2H"]),
    ("Manchester", ["M1", "M2", "M4", "M15"]), ("Birmingham", ["B1", "B2", "B3", "B5"]),
    ("Leeds", ["LS1", "LS2", "LS11"]), ("Bristol", ["BS1", "BS2", "BS8"]),
    ("Edinburgh", ["EH1", "EH2", "EH3"]), ("Glasgow", ["G1", "G2", "G3"]),
    ("Cambridge", ["CB1", "CB2", "CB4"]), ("Reading", ["RG1", "RG2"]),
    ("Oxford", ["OX1", "OX2", "OX4"]), ("Nottingham", ["NG1", "NG7"]), ("Cardiff", ["CF10", "CF11"]),
]
US_CITIES = [
    ("Chicago", "IL", 60601, 60661), ("Austin", "TX", 78701, 78759), ("Boston", "MA", 2108, 2136),
    ("Seattle", "WA", 98101, 98199), ("Denver", "CO", 80202, 80239), ("New York", "NY", 10001, 10282),
    ("Atlanta", "GA", 30303, 30363), ("Columbus", "OH", 43085, 43235), ("Portland", "OR", 97201, 97239),
    ("Raleigh", "NC", 27601, 27617), ("Minneapolis", "MN", 55401, 55488),
]
IE_CITIES = [("Dublin 2", "D02"), ("Dublin 4", "D04"), ("Dublin 18", "D18"), ("Cork", "T12"),
             ("Galway", "H91"), ("Limerick", "V94")]
NL_CITIES = [("Amsterdam", 1011, 1109), ("Rotterdam", 3011, 3089), ("Utrecht", 3511, 3585),
             ("Eindhoven", 5611, 5658), ("Den Haag", 2511, 2597)]

DE_AREA = {"München": "89", "Berlin": "30", "Hamburg": "40", "Köln": "221", "Frankfurt am Main": "69",
           "Stuttgart": "711", "Düsseldorf": "211", "Leipzig": "341", "Dresden": "351", "Hannover": "511",
           "Nürnberg": "911", "Bremen": "421", "Essen": "201", "Dortmund": "231", "Mannheim": "621",
           "Augsburg": "821", "Regensburg": "941", "Freiburg im Breisgau": "761", "Bielefeld": "521",
           "Münster": "251", "Kassel": "561", "Würzburg": "931", "Ulm": "731", "Kiel": "431",
           "Karlsruhe": "721", "Mainz": "6131"}
DE_STREETS = ["Hauptstraße", "Bahnhofstraße", "Industriestraße", "Lindenallee", "Am Hafen",
              "Schillerstraße", "Goethestraße", "Mühlweg", "Dieselstraße", "Carl-Benz-Straße",
              "Robert-Bosch-Str.", "Max-Planck-Ring", "Kaiserstraße", "Friedrichstraße",
              "Marktplatz", "Ringstraße", "Gartenstraße", "Im Gewerbepark", "Otto-Hahn-Straße",
              "Siemensstraße", "Rosenweg", "Am Stadtpark", "Wilhelmstraße", "Eichendorffweg",
              "Lessingstraße", "Hafenstraße", "Kastanienallee", "Gutenbergstraße"]
AT_STREETS = ["Mariahilfer Straße", "Landstraßer Hauptstraße", "Herrengasse", "Industriezeile",
              "Wiener Straße", "Linzer Straße", "Bahnhofplatz", "Kärntner Ring", "Grabenweg"]
GB_STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Street", "Mill Lane",
              "Park Road", "Queen Street", "Commercial Road", "Riverside Way", "Albert Road",
              "Canal Street", "Market Place", "Chapel Street", "Kingsway", "Northgate"]
US_STREETS = ["Main Street", "Oak Avenue", "Lakeview Drive", "Commerce Blvd", "Elm Street",
              "Industrial Parkway", "Market Street", "Cedar Lane", "Washington Ave", "Harbor Road"]
IE_STREETS = ["Harcourt Road", "Baggot Street", "Grand Canal Quay", "Patrick Street",
              "Sandyford Business Park", "Eyre Square", "O'Connell Avenue"]
NL_STREETS = ["Keizersgracht", "Stationsplein", "Industrieweg", "Coolsingel", "Lange Voorhout",
              "Stratumseind", "Oudegracht", "Havenstraat"]

COUNTRY_NAME = {
    "DE": ("Germany", "Deutschland"), "AT": ("Austria", "Österreich"),
    "GB": ("United Kingdom", "Vereinigtes Königreich"), "US": ("USA", "USA"),
    "IE": ("Ireland", "Irland"), "NL": ("Netherlands", "Niederlande"),
}

DE_FIRST = ["Anna", "Thomas", "Stefan", "Julia", "Katrin", "Markus", "Sabine", "Michael", "Lena",
            "Jan", "Petra", "Andreas", "Claudia", "Tobias", "Miriam", "Florian", "Jana", "Lukas",
            "Birgit", "Sebastian", "Nadine", "Felix", "Sandra", "Matthias"]
DE_LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
           "Schwarz", "Zimmermann", "Braun", "Krüger", "Hartmann", "Lange", "Werner", "Krause",
           "Lehmann", "Huber", "Gruber", "Bauer", "Steiner", "Moser", "Vogel", "Kaiser", "Brandt",
           "Seidel", "Kühn", "Voß", "Engel", "Pohl", "Sauer", "Jäger"]
EN_FIRST = ["Oliver", "Emma", "James", "Sophie", "Daniel", "Charlotte", "Liam", "Grace", "Ethan",
            "Hannah", "Ryan", "Chloe", "Aisha", "Priya", "Tom", "Megan", "Connor", "Isla", "Noah",
            "Olivia", "Marcus", "Rachel", "Sean", "Niamh"]
EN_LAST = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Roberts", "Walker",
           "Wright", "Robinson", "Thompson", "Hughes", "Patel", "Clarke", "Murphy", "O'Brien",
           "Kelly", "Johnson", "Miller", "Garcia", "Davis", "Bennett", "Fletcher", "Holloway",
           "Lambert", "Doyle", "Carver"]
NL_LAST = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "de Boer", "Mulder", "Vermeulen"]

DE_PREFIX = ["Nordlicht", "Alpenblick", "Rheinland", "Isartal", "Elbufer", "Sonnenhof", "Blautal",
             "Lindenhof", "Weserland", "Donautal", "Spreewerk", "Taunus", "Eifel", "Harzer",
             "Mainufer", "Brückner", "Neckar", "Bodensee", "Altmühl", "Ostsee", "Schwarzwald",
             "Kranich", "Falkenstein", "Adlerhorst"]
EN_PREFIX = ["Northwind", "Bluebridge", "Ashford", "Redwood", "Silverline", "Harbourside", "Kestrel",
             "Meridian", "Granite", "Oakfield", "Brightwater", "Copperleaf", "Summit", "Thistle",
             "Ironbark", "Lakeshore", "Pinecrest", "Westgate", "Foxglove", "Larkspur", "Cobalt",
             "Halcyon", "Bramble", "Quayside", "Evergreen", "Stonebridge", "Wexford", "Blackwater"]

VENDOR_WORDS = {
    "software": (["Software", "IT-Systeme", "Datentechnik", "Cloud Services", "Digital",
                  "Informatik", "EDV-Service", "Systemhaus"],
                 ["Software", "Systems", "Cloud", "Data", "Analytics", "Digital", "Tech",
                  "IT Solutions"]),
    "consulting": (["Consulting", "Unternehmensberatung", "Beratung", "Advisory",
                    "Management Consulting", "Steuerberatung"],
                   ["Consulting", "Advisory", "Partners", "Associates", "Strategy Group",
                    "Management Consultants"]),
    "marketing": (["Werbeagentur", "Media", "Kommunikation", "Marketing", "Design",
                   "Druck & Medien", "Messebau"],
                  ["Media", "Creative", "Marketing", "Communications", "Brand Studio",
                   "Print & Design", "Events"]),
    "office_supplies": (["Bürobedarf", "Büroversand", "Papier & Schreibwaren", "Office Shop",
                         "Bürotechnik"],
                        ["Office Supplies", "Stationery", "Office Direct", "Paper Co.",
                         "Workplace Supplies"]),
    "facilities": (["Gebäudeservice", "Facility Services", "Gebäudereinigung", "Hausmeisterdienste",
                    "Gebäudetechnik", "Sicherheitsdienst"],
                   ["Facilities Management", "Cleaning Services", "Property Services",
                    "Maintenance", "Security Services"]),
    "utilities": (["Energie", "Energieversorgung", "Wasserversorgung", "Netz", "Entsorgung",
                   "Telekommunikation"],
                  ["Energy", "Power", "Water", "Utilities", "Telecom", "Waste Management",
                   "Gas & Electric"]),
    "logistics": (["Logistik", "Spedition", "Transporte", "Cargo", "Fracht", "Kurierdienst",
                   "Lagerlogistik"],
                  ["Logistics", "Freight", "Haulage", "Shipping", "Cargo", "Couriers",
                   "Forwarding"]),
    "travel": (["Reisen", "Reisebüro", "Hotel", "Travel Management", "Tours", "Mietwagen",
                "Business Travel"],
               ["Travel", "Hotels", "Journeys", "Travel Management", "Car Hire", "Voyages"]),
}
GENERIC_WORDS = (["Services", "Dienstleistungen", "Handels-", "Group", "& Partner", "Solutions",
                  "Service", "Versorgung & Service", "Technik"],
                 ["Services", "Group", "Solutions", "Holdings", "& Co", "Enterprises", "Works",
                  "Supply"])

CUSTOMER_WORDS = (["Maschinenbau", "Präzisionstechnik", "Kunststofftechnik", "Lebensmittel",
                   "Textil", "Automotive", "Pharma", "Elektronik", "Medizintechnik", "Verpackung",
                   "Anlagenbau", "Möbelwerke"],
                  ["Engineering", "Components", "Foods", "Pharma", "Manufacturing", "Electronics",
                   "Instruments", "Plastics", "Medical", "Robotics", "Materials", "Textiles"])

RELATED = {
    "software": [("consulting", 5), ("utilities", 1), ("office_supplies", 2)],
    "consulting": [("software", 4), ("marketing", 4), ("travel", 1)],
    "marketing": [("consulting", 4), ("office_supplies", 2), ("travel", 1)],
    "office_supplies": [("facilities", 4), ("marketing", 2), ("logistics", 2)],
    "facilities": [("utilities", 4), ("office_supplies", 3), ("logistics", 1)],
    "utilities": [("facilities", 5), ("software", 2)],
    "logistics": [("travel", 4), ("office_supplies", 2), ("facilities", 1)],
    "travel": [("logistics", 4), ("marketing", 1), ("consulting", 1)],
}

# --------------------------------------------------------------------------
# Line item pools: (english, german, kind, unit_price_lo, unit_price_hi)
# Placeholders: {c1} {c2} cities, {mon} month, {proj} project, {n} number
# --------------------------------------------------------------------------

P = {}
P["sw"] = [
    ("Annual subscription – project management platform (per user)", "Jahresabonnement Projektmanagement-Plattform (pro Nutzer)", "user", 60, 240),
    ("CRM software licence, 12 months", "CRM-Softwarelizenz, 12 Monate", "user", 300, 900),
    ("ERP module Finance – named user licence", "ERP-Modul Finanzen – Named-User-Lizenz", "user", 400, 1500),
    ("Cloud hosting – virtual machines {mon}", "Cloud-Hosting – virtuelle Maschinen {mon}", "month", 180, 2400),
    ("Cloud storage 1 TB", "Cloud-Speicher 1 TB", "month", 20, 90),
    ("Software maintenance and updates", "Softwarewartung und Updates", "month", 150, 1800),
    ("Endpoint protection licence, per device", "Endpoint-Protection-Lizenz pro Gerät", "user", 18, 60),
    ("Backup as a Service, 500 GB", "Backup as a Service, 500 GB", "month", 45, 260),
    ("Database licence (per core)", "Datenbanklizenz (pro Core)", "pcs", 900, 4200),
    ("SaaS subscription – accounting package", "SaaS-Abonnement Buchhaltungssoftware", "month", 39, 490),
    ("Helpdesk ticketing tool, team plan", "Helpdesk-Ticketsystem, Team-Tarif", "user", 15, 69),
    ("Developer seats – code repository hosting", "Entwickler-Lizenzen Code-Repository", "user", 8, 45),
    ("E-mail and collaboration suite, per mailbox", "E-Mail- und Collaboration-Suite pro Postfach", "user", 5, 22),
    ("Wildcard SSL certificate, 1 year", "Wildcard-SSL-Zertifikat, 1 Jahr", "pcs", 89, 480),
    ("Domain renewal .com / .de", "Domainverlängerung .com / .de", "pcs", 12, 40),
    ("API usage (per 10,000 calls)", "API-Nutzung (je 10.000 Aufrufe)", "pcs", 4, 25),
    ("Monitoring tool subscription", "Abonnement Monitoring-Tool", "month", 49, 600),
    ("Password manager business licence", "Passwortmanager Business-Lizenz", "user", 3, 9),
    ("Video conferencing licence", "Videokonferenz-Lizenz", "user", 10, 25),
    ("Design software seat, annual", "Designsoftware-Lizenz, jährlich", "user", 250, 800),
    ("Data analytics platform – professional tier", "Datenanalyse-Plattform – Professional", "month", 290, 3500),
    ("Premium support contract (annual)", "Premium-Supportvertrag (jährlich)", "lump", 1200, 9800),
    ("Additional user licences", "Zusätzliche Benutzerlizenzen", "user", 25, 120),
    ("Licence upgrade to Enterprise edition", "Lizenz-Upgrade auf Enterprise Edition", "lump", 800, 12000),
    ("Virtual desktop licences", "Lizenzen virtueller Desktop", "user", 12, 40),
    ("Firewall subscription incl. threat updates", "Firewall-Subskription inkl. Threat-Updates", "month", 60, 450),
    ("E-signature service, 500 envelopes", "E-Signatur-Dienst, 500 Umschläge", "pcs", 190, 450),
    ("HR software module, per employee", "HR-Softwaremodul, pro Mitarbeiter", "user", 3, 12),
    ("Document management system licence", "Lizenz Dokumentenmanagementsystem", "user", 40, 180),
    ("Mobile device management, per device", "Mobile Device Management pro Gerät", "user", 2, 8),
    ("Software licence renewal {mon}", "Verlängerung Softwarelizenz {mon}", "lump", 400, 8000),
    ("Source code escrow fee", "Gebühr Quellcode-Hinterlegung", "lump", 500, 2500),
]
P["it_services"] = [
    ("Implementation services", "Implementierungsleistungen", "hour", 95, 180),
    ("Configuration and system setup", "Konfiguration und Systemeinrichtung", "hour", 90, 165),
    ("Data migration from legacy system", "Datenmigration aus Altsystem", "day", 800, 1400),
    ("Integration with existing ERP", "Integration in bestehendes ERP", "day", 850, 1500),
    ("User training session", "Anwenderschulung", "day", 700, 1600),
    ("Technical support hours", "Technische Supportstunden", "hour", 85, 150),
    ("Requirements analysis", "Anforderungsanalyse", "day", 900, 1500),
    ("Project management", "Projektmanagement", "hour", 100, 175),
    ("Onboarding package", "Onboarding-Paket", "lump", 900, 4800),
    ("Custom report development", "Entwicklung individueller Reports", "hour", 95, 160),
    ("Go-live support {proj}", "Go-Live-Begleitung {proj}", "day", 900, 1400),
    ("System architecture review", "Review der Systemarchitektur", "day", 1000, 1800),
    ("Process documentation", "Prozessdokumentation", "hour", 80, 140),
    ("Licence and implementation advisory", "Beratung zu Lizenzierung und Einführung", "hour", 110, 190),
    ("Remote support package (10 hours)", "Remote-Support-Kontingent (10 Stunden)", "pcs", 850, 1500),
]
P["consult"] = [
    ("Strategy consulting (daily rate)", "Strategieberatung (Tagessatz)", "day", 1200, 2600),
    ("Management consulting – senior consultant", "Managementberatung – Senior Consultant", "day", 1100, 2200),
    ("Process analysis and optimisation", "Prozessanalyse und -optimierung", "day", 950, 1800),
    ("Organisational development advisory", "Beratung Organisationsentwicklung", "hour", 140, 260),
    ("Tax advisory services", "Steuerberatungsleistungen", "hour", 120, 280),
    ("Legal review of supplier contracts", "Rechtliche Prüfung von Lieferantenverträgen", "hour", 180, 420),
    ("Financial due diligence", "Financial Due Diligence", "day", 1500, 3200),
    ("Interim management {mon}", "Interim-Management {mon}", "day", 1100, 1900),
    ("Market entry analysis", "Analyse Markteintritt", "lump", 4000, 18000),
    ("Audit support", "Unterstützung Jahresabschlussprüfung", "hour", 120, 240),
    ("GDPR compliance assessment", "DSGVO-Compliance-Assessment", "day", 1000, 1800),
    ("Change management coaching", "Coaching Change Management", "hour", 150, 280),
    ("Business plan review", "Prüfung Businessplan", "lump", 1500, 6000),
    ("Cost reduction programme – phase {n}", "Kostensenkungsprogramm – Phase {n}", "lump", 6000, 30000),
    ("Expert opinion and written report", "Gutachten mit schriftlichem Bericht", "lump", 2500, 12000),
    ("Partner hours", "Partnerstunden", "hour", 250, 450),
    ("Junior consultant hours", "Stunden Junior Consultant", "hour", 85, 140),
    ("Steering committee preparation", "Vorbereitung Lenkungsausschuss", "hour", 140, 240),
    ("Benchmarking study", "Benchmarking-Studie", "lump", 3000, 14000),
    ("M&A advisory retainer {mon}", "M&A-Beratung Retainer {mon}", "month", 5000, 20000),
    ("Risk assessment", "Risikobewertung", "day", 1000, 1900),
    ("Supply chain advisory", "Beratung Supply Chain", "day", 1100, 2000),
    ("Energy efficiency consulting", "Energieeffizienzberatung", "day", 800, 1500),
    ("Procurement advisory", "Einkaufsberatung", "day", 950, 1700),
    ("Pricing strategy review", "Überprüfung der Preisstrategie", "day", 1100, 2100),
    ("Payroll advisory", "Lohnbuchhaltung Beratung", "hour", 90, 160),
    ("Consulting services {mon} as per contract", "Beratungsleistungen {mon} gemäß Vertrag", "lump", 2000, 15000),
    ("IT strategy advisory", "IT-Strategieberatung", "day", 1100, 2000),
    ("Software selection advisory", "Beratung Softwareauswahl", "day", 1000, 1800),
]
P["workshop"] = [
    ("Workshop facilitation (full day)", "Workshop-Moderation (ganztägig)", "day", 1200, 2800),
    ("Strategy workshop with management team", "Strategieworkshop mit Geschäftsleitung", "lump", 2000, 7500),
    ("Campaign strategy session", "Strategiesitzung Kampagne", "hour", 120, 220),
    ("Brand positioning workshop", "Workshop Markenpositionierung", "lump", 1800, 6500),
    ("Stakeholder interviews", "Stakeholder-Interviews", "hour", 110, 200),
    ("Customer survey and analysis", "Kundenbefragung und Auswertung", "lump", 2500, 12000),
    ("Kick-off meeting {proj}", "Kick-off-Meeting {proj}", "hour", 100, 200),
    ("Final presentation and report", "Abschlusspräsentation und Bericht", "lump", 1500, 6000),
    ("Market research report", "Marktforschungsbericht", "lump", 2000, 15000),
    ("Competitor analysis", "Wettbewerbsanalyse", "lump", 1500, 8000),
    ("Concept development", "Konzeptentwicklung", "hour", 100, 190),
    ("Go-to-market strategy", "Go-to-Market-Strategie", "day", 1100, 2200),
]
P["mkt"] = [
    ("Search engine advertising – media budget {mon}", "Suchmaschinenwerbung – Mediabudget {mon}", "lump", 800, 15000),
    ("Social media campaign management", "Betreuung Social-Media-Kampagne", "month", 900, 4500),
    ("Content creation – blog articles", "Content-Erstellung – Blogartikel", "pcs", 180, 650),
    ("Print advertisement, half page", "Printanzeige, halbe Seite", "pcs", 900, 6500),
    ("Trade fair booth rental (sqm)", "Messestandmiete (m²)", "sqm", 120, 380),
    ("Booth construction and dismantling", "Messestandbau inkl. Abbau", "lump", 3500, 25000),
    ("Promotional pens with logo", "Werbekugelschreiber mit Logo", "pcs", 0.6, 2.5),
    ("Newsletter design and dispatch", "Newsletter-Gestaltung und Versand", "lump", 400, 2200),
    ("SEO optimisation {mon}", "SEO-Optimierung {mon}", "month", 600, 3000),
    ("Image video production", "Produktion Imagefilm", "lump", 4000, 28000),
    ("Photo shoot (half day)", "Fotoshooting (halber Tag)", "lump", 600, 2400),
    ("Logo redesign", "Logo-Redesign", "lump", 1500, 9000),
    ("Corporate design manual", "Corporate-Design-Handbuch", "lump", 2500, 12000),
    ("Influencer collaboration", "Influencer-Kooperation", "lump", 1000, 15000),
    ("Radio spot, 30 seconds", "Radiospot, 30 Sekunden", "pcs", 300, 2500),
    ("Billboard placement, 10 days", "Plakatierung, 10 Tage", "pcs", 250, 900),
    ("Press release distribution", "Versand Pressemitteilung", "pcs", 200, 900),
    ("Landing page design", "Gestaltung Landingpage", "lump", 1200, 6000),
    ("Display banner campaign", "Display-Banner-Kampagne", "lump", 1500, 12000),
    ("Agency fee (retainer) {mon}", "Agenturhonorar (Retainer) {mon}", "month", 2000, 12000),
    ("Copywriting", "Texterstellung", "hour", 70, 140),
    ("Graphic design", "Grafikdesign", "hour", 65, 130),
    ("Customer event – event management", "Kundenevent – Eventmanagement", "lump", 3000, 20000),
    ("Catering for product launch", "Catering Produktlaunch", "pcs", 25, 85),
    ("Sponsoring package", "Sponsoring-Paket", "lump", 2000, 25000),
    ("Media planning and buying", "Mediaplanung und -einkauf", "hour", 90, 160),
    ("Online ad campaign {proj}", "Online-Werbekampagne {proj}", "lump", 1500, 20000),
]
P["print"] = [
    ("Business cards, 250 pcs", "Visitenkarten, 250 Stück", "pack", 25, 90),
    ("Flyers A5, 5,000 pcs", "Flyer A5, 5.000 Stück", "pack", 120, 480),
    ("Printed letterhead, 1,000 sheets", "Briefbogen bedruckt, 1.000 Blatt", "pack", 90, 260),
    ("Brochure printing, 16 pages", "Broschürendruck, 16 Seiten", "pcs", 1.2, 4.5),
    ("Roll-up banner incl. bag", "Roll-up-Banner inkl. Tasche", "pcs", 70, 220),
    ("Envelopes with logo print", "Briefumschläge mit Logodruck", "pack", 40, 150),
    ("Posters A1", "Plakate A1", "pcs", 6, 25),
    ("Catalogue printing", "Katalogdruck", "pcs", 2.5, 9),
    ("Stickers with company logo", "Aufkleber mit Firmenlogo", "pack", 30, 140),
]
P["office"] = [
    ("Copy paper A4, 80 g/m², 500 sheets", "Kopierpapier A4, 80 g/m², 500 Blatt", "pack", 3.5, 7.5),
    ("Toner cartridge black", "Tonerkartusche schwarz", "pcs", 45, 160),
    ("Ink cartridge colour", "Tintenpatrone farbig", "pcs", 18, 65),
    ("Ballpoint pens, blue (pack of 10)", "Kugelschreiber blau (10er-Pack)", "pack", 4, 14),
    ("Lever arch files A4", "Ordner A4, breit", "pcs", 2.2, 5.5),
    ("Sticky notes 76 x 76 mm", "Haftnotizen 76 x 76 mm", "pack", 3, 12),
    ("Stapler", "Heftgerät", "pcs", 8, 35),
    ("Staples 24/6, 1,000 pcs", "Heftklammern 24/6, 1.000 Stück", "pack", 0.8, 2.5),
    ("Hole punch", "Locher", "pcs", 7, 30),
    ("Envelopes DL with window", "Briefumschläge DL mit Fenster", "pack", 6, 22),
    ("Desk organiser", "Schreibtisch-Organizer", "pcs", 9, 35),
    ("Whiteboard markers, set of 4", "Whiteboard-Marker, 4er-Set", "pack", 5, 15),
    ("Notebooks A5, ruled", "Notizbücher A5, liniert", "pcs", 2, 9),
    ("Copy paper A3, 500 sheets", "Kopierpapier A3, 500 Blatt", "pack", 8, 16),
    ("Ergonomic office chair", "Ergonomischer Bürostuhl", "pcs", 180, 650),
    ("LED desk lamp", "LED-Schreibtischleuchte", "pcs", 25, 90),
    ("Desktop calculator", "Tischrechner", "pcs", 12, 45),
    ("Scissors, 21 cm", "Schere, 21 cm", "pcs", 3, 9),
    ("Laser printer labels", "Etiketten für Laserdrucker", "pack", 9, 30),
    ("Highlighters, assorted", "Textmarker, sortiert", "pack", 4, 12),
    ("Document wallets", "Dokumentenmappen", "pack", 5, 18),
    ("Archive boxes", "Archivboxen", "pack", 12, 40),
    ("Coffee beans 1 kg", "Kaffeebohnen 1 kg", "pcs", 12, 28),
    ("Tea assortment", "Teesortiment", "pcs", 4, 12),
    ("Mineral water, crate", "Mineralwasser, Kiste", "pcs", 5, 9),
    ("Filing trays", "Briefablagen", "pcs", 3, 12),
    ("Correction tape", "Korrekturroller", "pcs", 1.5, 4),
    ("Suspension files", "Hängemappen", "pack", 10, 28),
    ("Flipchart pad", "Flipchartblock", "pcs", 9, 24),
    ("Office supplies as per order", "Büromaterial lt. Bestellung", "lump", 60, 900),
]
P["it_hw"] = [
    ("Keyboard and mouse set", "Tastatur-Maus-Set", "pcs", 25, 90),
    ("USB flash drive 64 GB", "USB-Stick 64 GB", "pcs", 8, 25),
    ("Monitor 27 inch", "Monitor 27 Zoll", "pcs", 180, 480),
    ("Docking station USB-C", "Dockingstation USB-C", "pcs", 120, 290),
    ("Headset with microphone", "Headset mit Mikrofon", "pcs", 35, 190),
    ("HDMI cable 2 m", "HDMI-Kabel 2 m", "pcs", 6, 20),
    ("Laptop backpack", "Laptop-Rucksack", "pcs", 30, 90),
    ("Webcam full HD", "Webcam Full HD", "pcs", 45, 140),
]
P["cleaning"] = [
    ("Paper towels, case", "Papierhandtücher, Karton", "box", 18, 45),
    ("Hand soap refill 5 l", "Handseife Nachfüllpack 5 l", "pcs", 9, 28),
    ("Toilet paper, 3-ply (pack)", "Toilettenpapier, 3-lagig (Pack)", "pack", 6, 22),
    ("All-purpose cleaner 5 l", "Allzweckreiniger 5 l", "pcs", 8, 26),
    ("Trash bags 120 l", "Müllbeutel 120 l", "pack", 5, 18),
    ("Disinfectant wipes", "Desinfektionstücher", "pack", 4, 14),
    ("Microfibre cloths", "Mikrofasertücher", "pack", 5, 19),
    ("Dishwasher tablets", "Spülmaschinentabs", "pack", 7, 24),
    ("Floor cleaner concentrate", "Bodenreiniger Konzentrat", "pcs", 9, 30),
    ("Glass cleaner", "Glasreiniger", "pcs", 3, 9),
    ("Cleaning supplies as per delivery note", "Reinigungsmittel lt. Lieferschein", "lump", 80, 600),
]
P["packaging"] = [
    ("Cardboard boxes, double wall", "Versandkartons, zweiwellig", "pack", 18, 65),
    ("Packing tape, brown", "Packband, braun", "pack", 8, 25),
    ("Stretch film roll", "Stretchfolie Rolle", "pcs", 9, 30),
    ("Bubble wrap roll", "Luftpolsterfolie Rolle", "pcs", 15, 45),
    ("Shipping labels", "Versandetiketten", "pack", 10, 35),
    ("Euro pallets (exchange)", "Europaletten (Tausch)", "pallet", 12, 24),
    ("Void fill paper", "Füllmaterial Papier", "pack", 20, 60),
]
P["fac"] = [
    ("Office cleaning – monthly contract {mon}", "Unterhaltsreinigung Büro {mon}", "month", 600, 4800),
    ("Window cleaning", "Glas- und Fensterreinigung", "sqm", 1.2, 3.5),
    ("Carpet deep cleaning", "Teppichgrundreinigung", "sqm", 2, 6),
    ("Security guard service", "Objektschutz / Wachdienst", "hour", 24, 42),
    ("Reception service", "Empfangsdienst", "hour", 28, 45),
    ("Pest control inspection", "Schädlingsbekämpfung – Kontrolle", "visit", 90, 320),
    ("Landscaping and grounds maintenance", "Grünflächenpflege", "visit", 180, 900),
    ("Snow clearing and gritting", "Winterdienst (Räumen und Streuen)", "visit", 90, 380),
    ("Elevator maintenance (quarterly)", "Aufzugswartung (quartalsweise)", "visit", 250, 900),
    ("Fire extinguisher inspection", "Prüfung Feuerlöscher", "pcs", 8, 22),
    ("Sanitary repair", "Sanitärreparatur", "hour", 55, 95),
    ("Door lock replacement", "Austausch Schließzylinder", "pcs", 60, 220),
    ("Painting works, meeting room", "Malerarbeiten Besprechungsraum", "sqm", 8, 22),
    ("Waste container rental", "Containermiete Abfall", "pcs", 150, 480),
    ("Caretaker service {mon}", "Hausmeisterservice {mon}", "month", 400, 2200),
    ("Furniture assembly", "Möbelmontage", "hour", 45, 80),
    ("Access control maintenance", "Wartung Zutrittskontrolle", "visit", 200, 750),
    ("Indoor plant care", "Pflanzenpflege", "month", 60, 320),
    ("Washroom hygiene service", "Waschraumhygiene-Service", "month", 80, 420),
    ("Gutter cleaning", "Dachrinnenreinigung", "lump", 180, 650),
    ("Car park sweeping", "Parkplatzreinigung", "visit", 90, 280),
    ("Facility management fee {mon}", "Facility-Management-Pauschale {mon}", "month", 900, 6500),
    ("Building cleaning (stairwell)", "Treppenhausreinigung", "visit", 40, 140),
    ("Intruder alarm monitoring", "Aufschaltung Einbruchmeldeanlage", "month", 35, 180),
    ("Replacement of ceiling tiles", "Austausch Deckenplatten", "sqm", 18, 45),
    ("Building services on-call {mon}", "Rufbereitschaft Haustechnik {mon}", "month", 250, 1200),
]
P["building"] = [
    ("HVAC maintenance", "Wartung Heizungs-, Lüftungs- und Klimaanlage", "visit", 250, 1400),
    ("Electrical inspection of portable equipment", "Prüfung ortsveränderlicher elektrischer Geräte", "pcs", 4, 9),
    ("Boiler servicing", "Kesselwartung", "lump", 180, 750),
    ("Meter replacement", "Zählerwechsel", "pcs", 60, 240),
    ("Emergency call-out – power failure", "Notdiensteinsatz – Stromausfall", "lump", 150, 650),
    ("Heating system maintenance", "Wartung Heizungsanlage", "lump", 220, 1100),
    ("Water pipe repair", "Reparatur Wasserleitung", "hour", 55, 95),
    ("Emergency lighting check", "Prüfung Sicherheitsbeleuchtung", "lump", 150, 600),
    ("LED light bulbs", "LED-Leuchtmittel", "pcs", 4, 18),
    ("Electrician hours", "Elektrikerstunden", "hour", 55, 95),
    ("Call-out fee building services", "Anfahrtspauschale Haustechnik", "lump", 35, 90),
    ("Backflow preventer testing", "Prüfung Rohrtrenner", "pcs", 60, 160),
    ("Electricity meter reading service", "Ablesung Stromzähler", "pcs", 12, 45),
    ("Maintenance of building electrical system", "Wartung Elektroanlage Gebäude", "lump", 300, 1600),
]
P["util"] = [
    ("Electricity consumption {mon}", "Stromverbrauch {mon}", "kwh", 0.19, 0.42),
    ("Electricity standing charge", "Grundpreis Strom", "month", 9, 45),
    ("Natural gas consumption", "Erdgasverbrauch", "kwh", 0.07, 0.16),
    ("Gas standing charge", "Grundpreis Gas", "month", 8, 35),
    ("Water supply", "Trinkwasser", "m3", 1.6, 3.4),
    ("Wastewater charge", "Abwassergebühr", "m3", 1.8, 4.2),
    ("District heating {mon}", "Fernwärme {mon}", "kwh", 0.09, 0.19),
    ("Grid usage fee", "Netznutzungsentgelt", "kwh", 0.05, 0.11),
    ("Metering point operation", "Messstellenbetrieb", "month", 5, 30),
    ("Electricity tax", "Stromsteuer", "kwh", 0.0205, 0.0205),
    ("Renewable energy surcharge", "Umlage erneuerbare Energien", "kwh", 0.01, 0.04),
    ("Concession fee", "Konzessionsabgabe", "kwh", 0.011, 0.024),
    ("Residual waste collection (1,100 l bin)", "Restmüllabfuhr (1.100-l-Behälter)", "visit", 25, 60),
    ("Recycling collection", "Wertstoffabholung", "visit", 12, 40),
    ("Stormwater fee", "Niederschlagswassergebühr", "sqm", 0.4, 1.3),
    ("Capacity charge (kW)", "Leistungspreis (kW)", "pcs", 60, 140),
    ("Green electricity certificate", "Ökostrom-Zertifikat", "lump", 25, 180),
    ("Advance payment electricity {mon}", "Abschlagszahlung Strom {mon}", "month", 250, 5000),
    ("Advance payment gas {mon}", "Abschlagszahlung Gas {mon}", "month", 150, 3200),
    ("Annual reconciliation electricity", "Jahresabrechnung Strom", "lump", 200, 4800),
    ("CO2 levy", "CO2-Abgabe", "kwh", 0.005, 0.012),
    ("Heating oil delivery", "Heizöllieferung", "pcs", 0.9, 1.3),
    ("Water meter rental", "Wasserzählermiete", "month", 2, 9),
    ("Peak load charge", "Spitzenlastentgelt", "lump", 80, 900),
]
P["telecom"] = [
    ("Broadband internet, 500 Mbit/s {mon}", "Internetanschluss 500 Mbit/s {mon}", "month", 49, 180),
    ("Business phone line", "Geschäftskunden-Telefonanschluss", "month", 25, 70),
    ("Mobile phone plan", "Mobilfunktarif", "user", 15, 55),
    ("SIP trunk channels", "SIP-Trunk-Kanäle", "pcs", 5, 15),
    ("Static IP address", "Feste IP-Adresse", "month", 5, 25),
    ("Dedicated fibre line", "Standleitung Glasfaser", "month", 250, 1200),
    ("Cloud telephony licence", "Cloud-Telefonie-Lizenz", "user", 6, 24),
    ("Colocation rack incl. power", "Colocation-Rack inkl. Strom", "month", 350, 1500),
]
P["travel"] = [
    ("Hotel accommodation {c1}", "Hotelübernachtung {c1}", "night", 85, 260),
    ("Breakfast", "Frühstück", "pcs", 12, 28),
    ("Flight {c1} – {c2}, economy", "Flug {c1} – {c2}, Economy", "trip", 90, 650),
    ("Flight {c1} – {c2}, business class", "Flug {c1} – {c2}, Business Class", "trip", 450, 2400),
    ("Train ticket {c1} – {c2}, 1st class", "Bahnticket {c1} – {c2}, 1. Klasse", "trip", 60, 240),
    ("Train ticket {c1} – {c2}, 2nd class", "Bahnfahrkarte {c1} – {c2}, 2. Klasse", "trip", 25, 140),
    ("Rental car, compact class", "Mietwagen Kompaktklasse", "day", 35, 95),
    ("Travel insurance", "Reiseversicherung", "trip", 15, 60),
    ("Seat reservation", "Sitzplatzreservierung", "trip", 4, 9),
    ("Checked baggage", "Aufgabegepäck", "pcs", 25, 70),
    ("Travel agency booking fee", "Buchungsgebühr Reisebüro", "pcs", 15, 45),
    ("Per diem allowance", "Verpflegungspauschale", "day", 14, 28),
    ("Airport parking", "Parken am Flughafen", "day", 12, 35),
    ("City tax", "City-Tax / Beherbergungsabgabe", "night", 2, 6),
    ("Meeting room at hotel", "Tagungsraum im Hotel", "day", 250, 900),
    ("Group travel package {c1}", "Gruppenreise-Paket {c1}", "trip", 400, 1600),
    ("Visa service fee", "Visaservice-Gebühr", "pcs", 60, 180),
    ("Airport lounge access", "Lounge-Zugang Flughafen", "pcs", 30, 60),
    ("Fuel for rental car", "Tankfüllung Mietwagen", "lump", 40, 110),
    ("Rail pass, monthly", "Monatskarte Bahn", "pcs", 90, 400),
    ("Ferry crossing", "Fährüberfahrt", "trip", 40, 220),
    ("Business dinner", "Geschäftsessen", "pcs", 35, 95),
    ("Late check-out", "Late Check-out", "pcs", 20, 60),
    ("Flight change fee", "Umbuchungsgebühr Flug", "pcs", 40, 150),
    ("Business trip package {c1} incl. hotel", "Geschäftsreise-Paket {c1} inkl. Hotel", "trip", 450, 1900),
    ("Conference accommodation {c1}", "Übernachtung Konferenz {c1}", "night", 110, 280),
]
P["transport"] = [
    ("Transport {c1} – {c2}", "Transport {c1} – {c2}", "lump", 120, 1800),
    ("Fuel surcharge", "Treibstoffzuschlag", "lump", 15, 240),
    ("Toll charges", "Mautgebühren", "lump", 12, 180),
    ("Airport transfer / pick-up", "Flughafentransfer / Abholung", "trip", 45, 160),
    ("Courier service, same day", "Kurierdienst, Same Day", "pcs", 35, 180),
    ("Additional luggage / cargo", "Zusätzliches Gepäck / Fracht", "kg", 1.5, 6),
    ("Handling fee", "Bearbeitungsgebühr", "lump", 10, 60),
    ("Cancellation fee", "Stornogebühr", "lump", 25, 350),
    ("Waiting time", "Wartezeit", "hour", 35, 70),
    ("Vehicle with driver", "Fahrzeug mit Fahrer", "day", 280, 650),
    ("Shipping", "Versand", "lump", 6, 45),
    ("Mileage", "Kilometerpauschale", "km", 0.3, 1.9),
    ("Shuttle bus {c1}", "Shuttlebus {c1}", "trip", 20, 90),
]
P["log"] = [
    ("Freight charges LTL", "Frachtkosten Stückgut", "pallet", 45, 190),
    ("FTL truck {c1} – {c2}", "Komplettladung LKW {c1} – {c2}", "lump", 650, 3800),
    ("Sea freight 20' container", "Seefracht 20'-Container", "pcs", 900, 3800),
    ("Air freight", "Luftfracht", "kg", 2.8, 7.5),
    ("Customs clearance", "Zollabfertigung", "pcs", 45, 180),
    ("Warehousing – pallet space {mon}", "Lagerung – Palettenstellplatz {mon}", "pallet", 6, 18),
    ("Pick & pack", "Kommissionierung (Pick & Pack)", "order", 0.9, 3.5),
    ("Inbound handling", "Wareneingang Handling", "pallet", 4, 12),
    ("Outbound handling", "Warenausgang Handling", "pallet", 4, 12),
    ("Parcel shipping, national", "Paketversand national", "pcs", 4.5, 12),
    ("Express delivery, international", "Expresszustellung international", "pcs", 35, 140),
    ("Demurrage charges", "Standgeld", "day", 60, 180),
    ("Terminal handling charges", "Terminal Handling Charges", "pcs", 120, 380),
    ("Cargo insurance", "Transportversicherung", "lump", 25, 480),
    ("Dangerous goods surcharge", "Gefahrgutzuschlag", "lump", 40, 250),
    ("Forklift unloading", "Entladung mit Stapler", "lump", 30, 120),
    ("Tail-lift delivery", "Zustellung mit Hebebühne", "pcs", 25, 75),
    ("Returns processing", "Retourenbearbeitung", "order", 1.5, 5),
    ("Cross-docking", "Cross-Docking", "pallet", 5, 15),
    ("Container drayage", "Containervorlauf / Nachlauf", "pcs", 250, 800),
    ("Bill of lading fee", "B/L-Gebühr", "pcs", 35, 90),
    ("Export documentation", "Erstellung Ausfuhrdokumente", "pcs", 25, 95),
    ("Shipment tracking service", "Sendungsverfolgung", "month", 20, 120),
    ("Cold chain transport", "Kühltransport", "pallet", 80, 260),
    ("Groupage shipment {c1} – {c2}", "Sammelgut {c1} – {c2}", "kg", 0.15, 0.6),
    ("Freight forwarding fee", "Speditionsgebühr", "lump", 50, 300),
]
P["relocation"] = [
    ("Office move – removal van with crew", "Büroumzug – Möbelwagen mit Team", "hour", 90, 220),
    ("Furniture transport", "Möbeltransport", "lump", 250, 1800),
    ("Moving boxes", "Umzugskartons", "pcs", 1.5, 4),
    ("Packing service", "Einpackservice", "hour", 35, 60),
    ("Disassembly and reassembly of furniture", "Demontage und Montage von Möbeln", "hour", 40, 75),
    ("Storage of furniture", "Einlagerung Möbel", "month", 90, 600),
    ("Disposal of old furniture", "Entsorgung Altmöbel", "lump", 120, 900),
]

# category -> [(pool, weight, shared?)]
CAT_POOLS = {
    "software": [("sw", 0.62, False), ("it_services", 0.28, True), ("it_hw", 0.05, True), ("telecom", 0.05, True)],
    "consulting": [("consult", 0.6, False), ("it_services", 0.2, True), ("workshop", 0.2, True)],
    "marketing": [("mkt", 0.6, False), ("workshop", 0.2, True), ("print", 0.2, True)],
    "office_supplies": [("office", 0.6, False), ("cleaning", 0.15, True), ("print", 0.08, True),
                        ("packaging", 0.09, True), ("it_hw", 0.08, True)],
    "facilities": [("fac", 0.6, False), ("building", 0.22, True), ("cleaning", 0.12, True),
                   ("relocation", 0.06, True)],
    "utilities": [("util", 0.72, False), ("building", 0.14, True), ("telecom", 0.14, True)],
    "logistics": [("log", 0.62, False), ("transport", 0.25, True), ("packaging", 0.08, True),
                  ("relocation", 0.05, True)],
    "travel": [("travel", 0.7, False), ("transport", 0.3, True)],
}

# small extra lines typical for each category (tagged with the invoice's label)
INCIDENTALS = {
    "software": [("Setup fee", "Einrichtungsgebühr", 49, 490), ("Travel expenses", "Reisekosten", 60, 450)],
    "consulting": [("Travel expenses", "Reisekosten", 80, 900), ("Expenses (flat rate)", "Auslagenpauschale", 30, 250),
                   ("Hotel costs as per receipt", "Hotelkosten lt. Beleg", 90, 480)],
    "marketing": [("Shipping of printed material", "Versand Druckerzeugnisse", 12, 90), ("Travel expenses", "Reisekosten", 50, 400),
                  ("Data set-up fee", "Datencheck / Einrichtung", 15, 80)],
    "office_supplies": [("Shipping & handling", "Versandkosten", 4.9, 19.9), ("Small-quantity surcharge", "Mindermengenzuschlag", 5, 15),
                        ("Express delivery", "Expresszustellung", 9, 35)],
    "facilities": [("Call-out fee", "Anfahrtspauschale", 25, 90), ("Materials", "Material", 15, 250),
                   ("Disposal fee", "Entsorgungspauschale", 20, 120)],
    "utilities": [("Reminder fee", "Mahngebühr", 2.5, 10), ("Administrative fee", "Verwaltungsgebühr", 3, 20)],
    "logistics": [("Administrative fee", "Verwaltungsgebühr", 5, 35), ("Waiting time", "Wartezeit", 30, 140)],
    "travel": [("Service fee", "Servicegebühr", 8, 45), ("Cancellation insurance", "Reiserücktrittsversicherung", 15, 90)],
}

# context lines; several are shared between related categories
CONTEXT = {
    "software": [("Project: {proj}", "Projekt: {proj}"), ("Service period: {period}", "Leistungszeitraum: {period}"),
                 ("Subscription ID: SUB-{n6}", "Abonnement-Nr.: SUB-{n6}"), ("Contract no. {n6}", "Vertragsnummer {n6}")],
    "consulting": [("Project: {proj}", "Projekt: {proj}"), ("Service period: {period}", "Leistungszeitraum: {period}"),
                   ("Engagement: {proj}", "Mandat: {proj}"), ("As per our proposal dated {date}", "Gemäß unserem Angebot vom {date}")],
    "marketing": [("Project: {proj}", "Projekt: {proj}"), ("Campaign: {proj}", "Kampagne: {proj}"),
                  ("As per our proposal dated {date}", "Gemäß unserem Angebot vom {date}")],
    "office_supplies": [("Delivery note no. LS-{n6}", "Lieferschein-Nr. LS-{n6}"), ("Delivered to: {site}", "Lieferadresse: {site}"),
                        ("Delivery date: {date}", "Lieferdatum: {date}")],
    "facilities": [("Property: {site}", "Objekt: {site}"), ("Service period: {period}", "Leistungszeitraum: {period}"),
                   ("Contract no. {n6}", "Vertragsnummer {n6}"), ("Work order WO-{n5}", "Auftrag Nr. {n5}")],
    "utilities": [("Property: {site}", "Objekt: {site}"), ("Billing period: {period}", "Abrechnungszeitraum: {period}"),
                  ("Meter no. {meter}", "Zählernummer {meter}"), ("Contract account {n6}", "Vertragskonto {n6}")],
    "logistics": [("Shipment no. {ship}", "Sendungsnummer {ship}"), ("Delivery date: {date}", "Lieferdatum: {date}"),
                  ("Route: {c1} – {c2}", "Strecke: {c1} – {c2}"), ("Booking ref. {bref}", "Buchungsnummer {bref}")],
    "travel": [("Traveller: {person}", "Reisender: {person}"), ("Booking ref. {bref}", "Buchungsnummer {bref}"),
               ("Route: {c1} – {c2}", "Strecke: {c1} – {c2}"), ("Travel date: {date}", "Reisedatum: {date}")],
}

PROJECTS = ["Phoenix", "Atlas", "Horizon", "Nova", "Falcon", "Everest", "Polaris", "Aurora",
            "Kompass", "Leuchtturm", "Rollout 2024", "Digital Workplace", "S/4 Migration",
            "Q3 Launch", "Relaunch Website", "Expansion DACH", "Lean Ops", "Vertriebsoffensive"]

MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"]
MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
             "September", "Oktober", "November", "Dezember"]

KIND_UNITS = {
    "pcs": ("pcs", "Stk."), "pack": ("packs", "Pck."), "box": ("boxes", "Kart."),
    "hour": ("hrs", "Std."), "day": ("days", "Tage"), "month": ("mo.", "Mon."),
    "user": ("users", "Nutzer"), "lump": ("flat", "psch."), "kwh": ("kWh", "kWh"),
    "m3": ("m³", "m³"), "night": ("nights", "Nächte"), "trip": ("pers.", "Pers."),
    "km": ("km", "km"), "pallet": ("pallets", "Pal."), "kg": ("kg", "kg"),
    "order": ("orders", "Aufträge"), "visit": ("visits", "Einsätze"), "sqm": ("m²", "m²"),
}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

TWO = Decimal("0.01")


def money(x) -> Decimal:
    return Decimal(str(x)).quantize(TWO, rounding=ROUND_HALF_UP)


def wchoice(rng, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


def iban_checksum(country: str, bban: str) -> str:
    s = bban + country + "00"
    num = "".join(str(int(ch, 36)) for ch in s)
    return f"{98 - int(num) % 97:02d}"


def make_iban(rng, country):
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    letters = lambda n: "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))
    bank = letters(4)
    if country == "DE":
        bban = digits(8) + digits(10)
    elif country == "AT":
        bban = digits(5) + digits(11)
    elif country in ("GB", "IE"):
        bban = bank + digits(6) + digits(8)
    elif country == "NL":
        bban = bank + digits(10)
    else:
        raise ValueError(country)
    iban = country + iban_checksum(country, bban) + bban
    bic = (bank if country not in ("DE", "AT") else letters(4)) + country + rng.choice(
        ["2X", "MM", "FF", "HH", "22", "33", "W1", "D1", "BB"])
    if rng.random() < 0.35:
        bic += rng.choice(["XXX", "100", "200", "MUC", "BER", "VIE"])
    return iban, bic


def iban_is_valid(iban: str) -> bool:
    s = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in s)) % 97 == 1


def aba_routing(rng):
    while True:
        d = [rng.randrange(10) for _ in range(8)]
        d[0] = rng.choice([0, 1, 2])
        for c in range(10):
            digs = d + [c]
            if (3 * (digs[0] + digs[3] + digs[6]) + 7 * (digs[1] + digs[4] + digs[7])
                    + (digs[2] + digs[5] + digs[8])) % 10 == 0:
                return "".join(map(str, digs))


def fmt_num(d: Decimal, style: str, decimals: int = 2) -> str:
    q = Decimal(1).scaleb(-decimals)
    d = d.quantize(q, rounding=ROUND_HALF_UP)
    neg = d < 0
    s = f"{abs(d):,.{decimals}f}"  # 1,234.56
    if style == "en":
        out = s
    elif style == "de":
        out = s.replace(",", "X").replace(".", ",").replace("X", ".")
    elif style == "plain_en":
        out = s.replace(",", "")
    elif style == "plain_de":
        out = s.replace(",", "").replace(".", ",")
    elif style == "space_de":
        out = s.replace(",", " ").replace(".", ",")
    else:
        raise ValueError(style)
    return ("-" if neg else "") + out


def fmt_qty(q: Decimal, style: str) -> str:
    if q == q.to_integral_value():
        n = int(q)
        if n >= 1000:
            return fmt_num(Decimal(n), style, 0)
        return str(n)
    s = f"{q.normalize():f}"
    if style.endswith("de"):
        s = s.replace(".", ",")
    return s


def fmt_date(d: dt.date, fmt: str) -> str:
    if fmt == "iso":
        return d.isoformat()
    if fmt == "de":
        return d.strftime("%d.%m.%Y")
    if fmt == "de_short":
        return d.strftime("%d.%m.%y")
    if fmt == "de_long":
        return f"{d.day}. {MONTHS_DE[d.month - 1]} {d.year}"
    if fmt == "gb":
        return d.strftime("%d/%m/%Y")
    if fmt == "gb_long":
        return f"{d.day} {MONTHS_EN[d.month - 1]} {d.year}"
    if fmt == "gb_abbr":
        return f"{d.day:02d}-{MONTHS_EN[d.month - 1][:3]}-{d.year}"
    if fmt == "us":
        return d.strftime("%m/%d/%Y")
    if fmt == "us_long":
        return f"{MONTHS_EN[d.month - 1]} {d.day}, {d.year}"
    if fmt == "us_abbr":
        return f"{MONTHS_EN[d.month - 1][:3]} {d.day}, {d.year}"
    raise ValueError(fmt)


def person(rng, country):
    if country in ("DE", "AT"):
        return f"{rng.choice(DE_FIRST)} {rng.choice(DE_LAST)}"
    if country == "NL":
        return f"{rng.choice(['Sanne', 'Daan', 'Lotte', 'Bram', 'Femke', 'Joost'])} {rng.choice(NL_LAST)}"
    return f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"


def slug(name: str) -> str:
    trans = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue", "&": "",
             "'": ""}
    out = "".join(trans.get(c, c) for c in name.lower())
    for legal in [" gmbh & co. kg", " gmbh", " ag", " kg", " e.k.", " ug (haftungsbeschraenkt)", " ohg",
                  " e.u.", " ltd", " limited", " llp", " plc", " llc", " inc.", " corp.", " b.v.",
                  " dac", " co."]:
        out = out.replace(legal, "")
    words = [w for w in "".join(c if c.isalnum() else " " for c in out).split() if w]
    return "-".join(words[:2]) if words else "company"


def make_address(rng, country):
    """Returns (street_line, city_line, city_en, city_de)."""
    if country == "DE":
        cde, cen, lo, hi = rng.choice(DE_CITIES)
        return (f"{rng.choice(DE_STREETS)} {rng.randint(1, 180)}{rng.choice(['', '', '', 'a', 'b'])}",
                f"{rng.randint(lo, hi):05d} {cde}", cen, cde)
    if country == "AT":
        cde, cen, lo, hi = rng.choice(AT_CITIES)
        plz = lo + 10 * rng.randint(0, (hi - lo) // 10) if cde == "Wien" else rng.randint(lo, hi)
        return f"{rng.choice(AT_STREETS)} {rng.randint(1, 120)}", f"{plz} {cde}", cen, cde
    if country == "GB":
        city, areas = rng.choice(GB_CITIES)
        pc = f"{rng.choice(areas)} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        street = f"{rng.randint(1, 240)} {rng.choice(GB_STREETS)}"
        if rng.random() < 0.25:
            street = f"Unit {rng.randint(1, 30)}, {rng.choice(EN_PREFIX)} Business Park"
        return street, f"{city} {pc}", city, city
    if country == "US":
        city, st, lo, hi = rng.choice(US_CITIES)
        street = f"{rng.randint(100, 9800)} {rng.choice(US_STREETS)}"
        if rng.random() < 0.4:
            street += f", Suite {rng.randint(100, 1900)}"
        return street, f"{city}, {st} {rng.randint(lo, hi):05d}", city, city
    if country == "IE":
        city, routing = rng.choice(IE_CITIES)
        code = routing + " " + "".join(rng.choice("ACDEFHKNPRTVWXY0123456789") for _ in range(4))
        return f"{rng.randint(1, 90)} {rng.choice(IE_STREETS)}", f"{city}, {code}", city.split()[0], city.split()[0]
    if country == "NL":
        city, lo, hi = rng.choice(NL_CITIES)
        return (f"{rng.choice(NL_STREETS)} {rng.randint(1, 400)}",
                f"{rng.randint(lo, hi)} {rng.choice('ABCEGHJKLMNPRSTVWXZ')}{rng.choice('ABCEGHJKLMNPRSTVWXZ')} {city}",
                city, city)
    raise ValueError(country)


def vat_id(rng, country):
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    if country == "DE":
        return "DE" + rng.choice("123") + d(8)
    if country == "AT":
        return "ATU" + d(8)
    if country == "GB":
        return "GB" + d(9)
    if country == "IE":
        return "IE" + d(7) + rng.choice("ABCDEFHKLMNPTW")
    if country == "NL":
        return "NL" + d(9) + "B0" + rng.choice("123")
    if country == "US":
        return f"{d(2)}-{d(7)}"  # EIN
    raise ValueError(country)


def fmt_vat_id(rng, vid):
    if vid.startswith("GB") and rng.random() < 0.5:
        return f"GB {vid[2:5]} {vid[5:9]} {vid[9:]}"
    if vid.startswith("DE") and rng.random() < 0.2:
        return f"DE {vid[2:]}"
    return vid


# --------------------------------------------------------------------------
# World: vendors and customers (fixed, shared by all splits)
# --------------------------------------------------------------------------

VENDOR_COUNTRIES = [("DE", 8), ("AT", 2), ("GB", 6), ("US", 3), ("IE", 1), ("NL", 1)]
LEGAL = {
    "DE": [("GmbH", 10), ("GmbH & Co. KG", 4), ("AG", 2), ("KG", 1), ("e.K.", 1), ("UG (haftungsbeschränkt)", 1), ("OHG", 1)],
    "AT": [("GmbH", 6), ("KG", 1), ("e.U.", 1)],
    "GB": [("Ltd", 8), ("Limited", 3), ("LLP", 1), ("PLC", 1)],
    "US": [("LLC", 5), ("Inc.", 5), ("Corp.", 1)],
    "IE": [("Ltd", 5), ("DAC", 1)],
    "NL": [("B.V.", 1)],
}
DE_BANKS = ["Sparkasse {city}", "Volksbank {pre} eG", "Raiffeisenbank {pre} eG", "Stadtsparkasse {city}",
            "{pre} Bank AG", "Kreissparkasse {city}"]
EN_BANKS = {"GB": ["Albion Bank plc", "Crown & County Bank", "Northbank plc", "{pre} Savings Bank",
                   "Thames Mercantile Bank"],
            "IE": ["Liffey Commercial Bank", "Shannon Bank DAC", "{pre} Savings Bank"],
            "NL": ["Polder Bank N.V.", "Grachten Bank N.V.", "{pre} Bank N.V."]}
US_BANKS = ["First Lakeshore Bank", "Harbor National Bank", "{pre} Federal Credit Union",
            "Prairie Trust Bank", "Cascade Commerce Bank"]


def build_vendors(rng, n=168):
    vendors = []
    seen = []
    per_cat_min = {c: 0 for c in CATEGORIES}
    # every category gets the same country mix (keeps the language share stable)
    country_cycle = [c for c, w in VENDOR_COUNTRIES for _ in range(w)]
    rng.shuffle(country_cycle)
    while len(vendors) < n:
        # cycle primary categories; each category cycles through the same country mix
        idx = len(vendors)
        primary = CATEGORIES[idx % len(CATEGORIES)]
        country = country_cycle[(idx // len(CATEGORIES)) % len(country_cycle)]
        german = country in ("DE", "AT")
        cats = [(primary, 1.0)]
        if rng.random() < P_MULTI_VENDOR:
            rel = wchoice(rng, [r for r, _ in RELATED[primary]], [w for _, w in RELATED[primary]])
            cats.append((rel, rng.uniform(0.3, 0.9)))
            if rng.random() < 0.15:
                others = [c for c in CATEGORIES if c not in (primary, rel)]
                cats.append((rng.choice(others), rng.uniform(0.1, 0.4)))
        generic = rng.random() < P_GENERIC_VENDOR
        # naming
        legal = wchoice(rng, [l for l, _ in LEGAL[country]], [w for _, w in LEGAL[country]])
        if german:
            base = rng.choice(DE_LAST) if rng.random() < 0.5 else rng.choice(DE_PREFIX)
            if generic:
                word = rng.choice(GENERIC_WORDS[0])
                if word == "& Partner":
                    name = f"{base} & Partner {legal}"
                elif word.endswith("-"):
                    name = f"{base} {word}{legal}"
                elif rng.random() < 0.3:
                    name = f"{base} & {rng.choice(DE_LAST)} {legal}"
                else:
                    name = f"{base} {word} {legal}"
            else:
                # name hints the primary category (or, sometimes, the secondary one)
                hint_cat = primary if len(cats) == 1 or rng.random() < 0.7 else cats[1][0]
                word = rng.choice(VENDOR_WORDS[hint_cat][0])
                if hint_cat == "utilities" and rng.random() < 0.4:
                    name = f"Stadtwerke {rng.choice(DE_CITIES if country == 'DE' else AT_CITIES)[0]}"
                    if rng.random() < 0.6:
                        name += f" {legal}"
                else:
                    name = f"{base} {word} {legal}"
        else:
            base = rng.choice(EN_PREFIX) if rng.random() < 0.6 else (
                rng.choice(NL_LAST).title() if country == "NL" else rng.choice(EN_LAST))
            if generic:
                word = rng.choice(GENERIC_WORDS[1])
                if rng.random() < 0.25 and country != "NL":
                    name = f"{base} & {rng.choice(EN_LAST)} {legal}"
                else:
                    name = f"{base} {word} {legal}"
            else:
                hint_cat = primary if len(cats) == 1 or rng.random() < 0.7 else cats[1][0]
                name = f"{base} {rng.choice(VENDOR_WORDS[hint_cat][1])} {legal}"
        if name in seen:
            continue
        seen.append(name)
        street, cityline, city_en, city_de = make_address(rng, country)
        v = {
            "name": name, "country": country, "cats": cats, "street": street, "cityline": cityline,
            "city_en": city_en, "city_de": city_de, "vat": vat_id(rng, country),
            "domain": slug(name) + {"DE": ".de", "AT": ".at", "GB": ".co.uk", "US": ".com",
                                    "IE": ".ie", "NL": ".nl"}[country],
            "inv_fmt": rng.randrange(12), "inv_seq": rng.randint(100, 90000),
            "phone": make_phone(rng, country, city_de), "contact": person(rng, country),
            "director": person(rng, country),
        }
        if country == "US":
            v["routing"] = aba_routing(rng)
            v["account"] = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 10, 12])))
            v["bank"] = rng.choice(US_BANKS).format(pre=rng.choice(EN_PREFIX))
        else:
            v["iban"], v["bic"] = make_iban(rng, country)
            assert iban_is_valid(v["iban"])
            if country in ("DE", "AT"):
                v["bank"] = rng.choice(DE_BANKS).format(city=city_de, pre=rng.choice(DE_PREFIX))
            else:
                v["bank"] = rng.choice(EN_BANKS[country]).format(pre=rng.choice(EN_PREFIX))
        if country == "DE":
            v["registry"] = f"Amtsgericht {rng.choice(DE_CITIES)[0]}, HRB {rng.randint(1000, 260000)}"
            v["taxno"] = f"{rng.randint(100, 999)}/{rng.randint(100, 999)}/{rng.randint(10000, 99999)}"
        elif country == "AT":
            v["registry"] = f"FN {rng.randint(10000, 599999)}{rng.choice('abdfghiklmpstvwxyz')}, Handelsgericht {city_de}"
        elif country == "GB":
            v["registry"] = f"Registered in England and Wales No. {rng.randint(1000000, 14999999):08d}"
        elif country == "IE":
            v["registry"] = f"Registered in Ireland No. {rng.randint(100000, 799999)}"
        elif country == "NL":
            v["registry"] = f"KvK {rng.randint(10000000, 99999999)}"
        else:
            v["registry"] = f"{rng.choice(['Delaware', 'Illinois', 'Texas', 'Washington'])} corporation"
        vendors.append(v)
        for c, _ in cats:
            per_cat_min[c] += 1
    return vendors


def make_phone(rng, country, city=None):
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    if country == "DE":
        area = DE_AREA.get(city, rng.choice(["30", "40", "89", "221", "69", "711"]))
        return rng.choice([f"+49 {area} {d(7)}", f"0{area} / {d(3)} {d(2)}-{d(2)}", f"+49 ({area}) {d(6)}-{d(2)}"])
    if country == "AT":
        area = {"Wien": "1", "Graz": "316", "Linz": "732", "Salzburg": "662", "Innsbruck": "512",
                "Klagenfurt": "463"}.get(city, "1")
        return rng.choice([f"+43 {area} {d(6)}", f"0{area} {d(3)} {d(3)}"])
    if country == "GB":
        # Ofcom ranges reserved for drama / fictional use
        area, local = {"London": ("20", "7946 0"), "Manchester": ("161", "496 0"), "Birmingham": ("121", "496 0"),
                       "Leeds": ("113", "496 0"), "Bristol": ("117", "496 0"), "Edinburgh": ("131", "496 0"),
                       "Glasgow": ("141", "496 0"), "Nottingham": ("115", "496 0"),
                       "Cardiff": ("29", "2018 0")}.get(city, ("1632", "960 "))
        return rng.choice([f"+44 {area} {local}{d(3)}", f"0{area} {local}{d(3)}"])
    if country == "US":
        area = rng.choice(["312", "512", "617", "206", "303", "212", "404", "614", "503"])
        return rng.choice([f"+1 ({area}) 555-01{d(2)}", f"({area}) 555-01{d(2)}", f"{area}-555-01{d(2)}"])
    if country == "IE":
        return rng.choice([f"+353 1 {d(3)} {d(4)}", f"01 {d(3)} {d(4)}", f"+353 21 {d(3)} {d(4)}"])
    if country == "NL":
        return rng.choice([f"+31 20 {d(3)} {d(4)}", f"010 {d(3)} {d(4)}"])
    raise ValueError(country)


def build_customers(rng, n=45):
    customers = []
    names = []
    countries = [("DE", 50), ("AT", 10), ("GB", 18), ("US", 12), ("NL", 5), ("IE", 5)]
    while len(customers) < n:
        country = wchoice(rng, [c for c, _ in countries], [w for _, w in countries])
        legal = wchoice(rng, [l for l, _ in LEGAL[country]], [w for _, w in LEGAL[country]])
        if country in ("DE", "AT"):
            base = rng.choice(DE_LAST + DE_PREFIX)
            name = f"{base} {rng.choice(CUSTOMER_WORDS[0])} {legal}"
        else:
            base = rng.choice(EN_PREFIX + EN_LAST)
            name = f"{base} {rng.choice(CUSTOMER_WORDS[1])} {legal}"
        if name in names:
            continue
        names.append(name)
        street, cityline, city_en, city_de = make_address(rng, country)
        customers.append({
            "name": name, "country": country, "street": street, "cityline": cityline,
            "city_en": city_en, "city_de": city_de, "vat": vat_id(rng, country),
            "attn": person(rng, country),
            "dept": rng.choice(["Accounts Payable", "Finance", "Kreditorenbuchhaltung", "Buchhaltung",
                                "Einkauf", "Procurement", None, None]),
        })
    return customers


# --------------------------------------------------------------------------
# Document generation
# --------------------------------------------------------------------------

EU = ("DE", "AT", "IE", "NL")


class Doc:
    pass


def draw_qty(rng, kind, price_hi=0):
    if kind == "pcs":
        q = rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 20, 25, 50])
    elif kind == "pack":
        q = rng.choice([1, 2, 3, 4, 5, 10, 15, 20])
    elif kind == "box":
        q = rng.randint(1, 10)
    elif kind == "hour":
        q = Decimal(rng.randint(2, 120)) / 2
    elif kind == "day" and price_hi >= 500:  # consultant / trainer days may be half days
        q = Decimal(rng.randint(1, 24)) / 2
    elif kind == "day":  # rental car, per diem, parking ...
        q = rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10])
    elif kind == "month":
        q = rng.choice([1, 1, 1, 1, 1, 3, 3, 6, 12])
    elif kind == "user":
        q = rng.choice([1, 2, 3, 5, 5, 10, 10, 15, 20, 25, 30, 50, 75, 100, 150])
    elif kind == "lump":
        q = 1
    elif kind == "kwh":
        q = rng.randint(8, 600) * 100 + rng.randint(0, 99)
    elif kind == "m3":
        q = rng.randint(15, 2200)
    elif kind == "night":
        q = rng.randint(1, 6)
    elif kind == "trip":
        q = rng.choice([1, 1, 1, 2, 2, 3, 4, 6])
    elif kind == "km":
        q = rng.randint(20, 950)
    elif kind == "pallet":
        q = rng.randint(1, 33)
    elif kind == "kg":
        q = rng.randint(5, 2500)
    elif kind == "order":
        q = rng.randint(40, 3000)
    elif kind == "visit":
        q = rng.choice([1, 1, 1, 2, 3, 4, 4, 8, 12])
    elif kind == "sqm":
        q = rng.randint(40, 4800)
    else:
        raise ValueError(kind)
    return Decimal(q)


def draw_price(rng, kind, lo, hi):
    if lo == hi:
        return Decimal(str(lo)), 4
    x = rng.uniform(lo, hi)
    if kind in ("kwh",) or hi < 1:
        return Decimal(f"{x:.4f}"), 4
    if hi >= 200 and rng.random() < 0.7:
        step = 5 if hi < 1000 else 50
        return Decimal(max(step, int(round(x / step)) * step)), 2
    return money(x), 2


def fill(rng, text, ctx):
    if "{" not in text:
        return text
    c1, c2 = rng.sample(ctx["cities"], 2)
    return text.format(c1=c1, c2=c2, mon=ctx["mon"], proj=rng.choice(PROJECTS),
                       n=rng.randint(1, 4))


def draw_item(rng, cat, ctx, pool_override=None):
    if pool_override is not None:
        pool = pool_override
    else:
        pools = CAT_POOLS[cat]
        weights = [w * (SHARED_SCALE if shared else 1.0) for _, w, shared in pools]
        pool = wchoice(rng, [p for p, _, _ in pools], weights)
    en, de, kind, lo, hi = rng.choice(P[pool])
    name = de if (ctx["lang"] == "de" and not ctx["items_en"]) else en
    name = fill(rng, name, ctx)
    qty = draw_qty(rng, kind, hi)
    price, dec = draw_price(rng, kind, lo, hi)
    return {"name": name, "kind": kind, "qty": qty, "price": price, "pdec": dec, "cat": cat,
            "key": en}


def build_items(rng, label_cat, ctx):
    r = rng.random()
    if r < 0.14:
        n = 1
    elif r < 0.32:
        n = 2
    elif r < 0.50:
        n = 3
    elif r < 0.64:
        n = 4
    elif r < 0.75:
        n = 5
    elif r < 0.84:
        n = 6
    elif r < 0.95:
        n = rng.randint(7, 10)
    elif r < 0.99:
        n = rng.randint(11, 16)
    else:
        n = rng.randint(18, 26)
    items = []
    keys = []
    tries = 0
    while len(items) < n and tries < n * 6:
        tries += 1
        it = draw_item(rng, label_cat, ctx)
        if it["key"] in keys and it["kind"] not in ("kwh",):
            continue
        keys.append(it["key"])
        items.append(it)
    mixed = False
    if rng.random() < P_MIXED:
        mixed = True
        rel = wchoice(rng, [c for c, _ in RELATED[label_cat]], [w for _, w in RELATED[label_cat]])
        k = max(1, min(len(items), rng.choice([1, 1, 2, 2, 3])))
        extra = [draw_item(rng, rel, ctx) for _ in range(k)]
        main_total = sum(i["qty"] * i["price"] for i in items)
        ex_total = sum(i["qty"] * i["price"] for i in extra)
        factor = None
        if rng.random() < P_AMBIGUOUS:
            # genuinely ambiguous: comparable amounts, the label follows the larger share
            if ex_total > 0:
                factor = (main_total * Decimal(str(rng.uniform(0.6, 1.5)))) / ex_total
        elif ex_total > main_total * Decimal("0.6") and ex_total > 0:
            # secondary items are minor: cap their value well below the main part
            factor = (main_total * Decimal(str(rng.uniform(0.1, 0.5)))) / ex_total
        if factor is not None:
            if True:
                for e in extra:
                    if e["kind"] in ("lump",) or e["qty"] <= 1:
                        e["price"] = max(Decimal("1"), (e["price"] * factor)).quantize(
                            TWO, rounding=ROUND_HALF_UP)
                    else:
                        newq = (e["qty"] * factor).to_integral_value(rounding=ROUND_HALF_UP)
                        if newq < 1:
                            newq = Decimal(1)
                            e["price"] = max(Decimal("1"), e["price"] * factor * e["qty"]).quantize(
                                TWO, rounding=ROUND_HALF_UP)
                        e["qty"] = newq
        for e in extra:
            items.insert(rng.randrange(len(items) + 1), e)
    if rng.random() < P_INCIDENTAL:
        en, de, lo, hi = rng.choice(INCIDENTALS[label_cat])
        items.append({"name": de if ctx["lang"] == "de" and not ctx["items_en"] else en,
                      "kind": "lump", "qty": Decimal(1), "price": money(rng.uniform(lo, hi)),
                      "pdec": 2, "cat": label_cat, "key": en})
    for it in items:
        it["total"] = money(it["qty"] * it["price"])
    # label = category with the largest share of the net amount
    sums = {}
    for it in items:
        sums[it["cat"]] = sums.get(it["cat"], Decimal(0)) + it["total"]
    label = max(sums.items(), key=lambda kv: (kv[1], kv[0] == label_cat))[0]
    net = sum(sums.values())
    share = float(sums[label] / net) if net else 1.0
    return items, label, mixed, share


def pick_vendor(rng, vendors, cat):
    cands = [v for v in vendors if any(c == cat for c, _ in v["cats"])]
    weights = [dict(v["cats"])[cat] for v in cands]
    return wchoice(rng, cands, weights)


def customer_number(v, cust):
    """Stable customer number per (vendor, customer) pair."""
    r = random.Random(f"{v['name']}|{cust['name']}")
    return [f"K-{r.randint(10000, 99999)}", f"CUST-{r.randint(100, 9999):05d}", f"{r.randint(10000, 999999)}",
            f"D{r.randint(1000, 9999)}", f"{r.randint(1, 9)}{r.randint(0, 9999999):07d}"][v["inv_fmt"] % 5]


def invoice_number(rng, v, date):
    seq = v["inv_seq"] + rng.randint(0, 5000)
    y, m, d = date.year, date.month, date.day
    f = v["inv_fmt"]
    return [
        f"INV-{y}-{seq:05d}", f"RE-{seq % 10000}/{y % 100:02d}", f"{y}-{seq:04d}",
        f"R{y % 100:02d}{m:02d}{d:02d}-{rng.randint(1, 40):02d}", f"RG{y}{seq:05d}",
        f"INV/{y % 100}/{seq:06d}", f"{seq + 1000000:07d}", f"F-{y}-{seq}", f"#{seq}",
        f"SI-{seq:06d}", f"{y}{m:02d}-{seq % 1000:03d}", f"RE{y % 100:02d}-{seq:05d}",
    ][f]


LABELS = {
    "title": (["INVOICE", "Invoice", "TAX INVOICE", "Invoice", "INVOICE"],
              ["RECHNUNG", "Rechnung", "Rechnung", "RECHNUNG"]),
    "no": (["Invoice No.", "Invoice Number", "Invoice #", "Inv #", "Invoice no:", "Document No.", "Invoice"],
           ["Rechnungsnummer", "Rechnungs-Nr.", "Rechnung Nr.", "Re.-Nr.", "Beleg-Nr.", "Rechnungsnr."]),
    "date": (["Invoice Date", "Date", "Date of issue", "Invoice date", "Dated"],
             ["Rechnungsdatum", "Datum", "Rechnungsdatum", "Ausstellungsdatum"]),
    "due": (["Due Date", "Payment due", "Due", "Pay by", "Due date"],
            ["Fällig am", "Fälligkeitsdatum", "Zahlbar bis", "Fällig"]),
    "custno": (["Customer No.", "Account No.", "Customer ID", "Client ref.", "Account"],
               ["Kundennummer", "Kunden-Nr.", "Kd.-Nr.", "Debitor"]),
    "order": (["PO Number", "Your order", "Order ref.", "Purchase Order", "PO #", "Your reference"],
              ["Ihre Bestellung", "Bestellnummer", "Auftragsnummer", "Ihr Zeichen", "Bestell-Nr."]),
    "contact": (["Contact", "Your contact", "Account manager", "Questions?"],
                ["Ansprechpartner", "Bearbeiter", "Ihr Ansprechpartner", "Sachbearbeiter"]),
    "billto": (["Bill to:", "Invoice to:", "Customer:", "Billed to:", "To:", ""],
               ["Rechnungsempfänger:", "An:", "Kunde:", "Rechnungsadresse:", ""]),
    "subtotal": (["Subtotal", "Net amount", "Total net", "Sub-total", "Net total"],
                 ["Zwischensumme", "Nettobetrag", "Summe netto", "Gesamt netto", "Netto"]),
    "total": (["Total", "Total due", "Amount due", "Balance due", "Grand total", "TOTAL", "Invoice total"],
              ["Gesamtbetrag", "Rechnungsbetrag", "Endbetrag", "Bruttobetrag", "Zu zahlen", "Gesamtsumme"]),
    "desc": (["Description", "Item", "Service", "Description of services", "Details"],
             ["Bezeichnung", "Beschreibung", "Leistung", "Artikel", "Position"]),
    "qty": (["Qty", "Quantity", "Units", "Hrs/Qty"], ["Menge", "Anz.", "Anzahl", "Menge"]),
    "unit": (["Unit price", "Rate", "Price", "Unit cost"], ["Einzelpreis", "EP", "Preis/Einh.", "Einzelpr."]),
    "amount": (["Amount", "Total", "Line total", "Net"], ["Gesamtpreis", "Betrag", "Summe", "GP"]),
}


def L(rng, key, lang):
    return rng.choice(LABELS[key][0 if lang == "en" else 1])


def payment_terms(rng, lang, cat):
    if lang == "en":
        opts = [("Net 30", 30), ("Net 14", 14), ("Net 60", 60), ("Payment terms: 30 days net", 30),
                ("Due on receipt", 0), ("2% 10, Net 30", 30), ("Please pay within 14 days of the invoice date.", 14),
                ("Payable within 30 days without deduction.", 30), ("Terms: 45 days end of month", 45),
                ("Payment due within 7 days.", 7)]
        if cat in ("utilities", "software") or rng.random() < 0.05:
            opts.append(("The amount will be collected by direct debit.", 10))
    else:
        opts = [("Zahlbar innerhalb von 14 Tagen ohne Abzug.", 14), ("Zahlungsziel: 30 Tage netto", 30),
                ("Zahlbar sofort ohne Abzug.", 0), ("Bei Zahlung innerhalb von 8 Tagen 2 % Skonto, 30 Tage netto.", 30),
                ("Zahlbar innerhalb von 30 Tagen nach Rechnungsdatum.", 30), ("Zahlungsbedingungen: 10 Tage netto", 10),
                ("Zahlbar innerhalb von 21 Tagen ohne Abzug.", 21)]
        if cat in ("utilities", "software") or rng.random() < 0.05:
            opts.append(("Der Rechnungsbetrag wird per SEPA-Lastschrift eingezogen.", 10))
    return rng.choice(opts)


def vat_treatment(rng, v, cust, items, lang, cat):
    """Returns (rate Decimal, tax label, note or None)."""
    vc, cc = v["country"], cust["country"]
    if vc == cc:
        if vc == "DE":
            hotel = sum(1 for it in items if "Hotel" in it["name"] or "Übernachtung" in it["name"])
            rate = Decimal(7) if hotel and hotel * 2 >= len(items) else Decimal(19)
        elif vc == "AT":
            rate = Decimal(20)
        elif vc == "GB":
            rate = Decimal(20)
        elif vc == "IE":
            rate = Decimal(23)
        elif vc == "NL":
            rate = Decimal(21)
        else:  # US sales tax
            rate = Decimal(rng.choice(["0", "6.25", "7", "8.25", "8.875", "6"]))
        return rate, None
    if vc in EU and cc in EU:
        note = rng.choice(["Reverse charge: VAT to be accounted for by the recipient (Art. 196 VAT Directive).",
                           "Reverse charge – 0% VAT, intra-community supply."]) if lang == "en" else rng.choice(
            ["Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge).",
             "Innergemeinschaftliche Leistung – Steuerschuldnerschaft des Leistungsempfängers gem. § 13b UStG."])
        return Decimal(0), note
    note = ("Not subject to VAT in the country of the supplier." if lang == "en"
            else "Nicht im Inland steuerbare Leistung.")
    if vc == "GB":
        note = "Outside the scope of UK VAT."
    if vc == "US":
        note = "No sales tax – export of services."
    return Decimal(0), note


def make_doc(rng, vendors, customers, target_cat):
    d = Doc()
    v = pick_vendor(rng, vendors, target_cat)
    vc = v["country"]
    if vc in ("DE", "AT"):
        lang = "de" if rng.random() < 0.86 else "en"
    else:
        lang = "en"
    # customers: mostly domestic, always domestic for local services
    domestic = [c for c in customers if c["country"] == vc]
    if target_cat in ("utilities", "facilities") or rng.random() < 0.8:
        pool = domestic or customers
    else:
        pool = customers
    cust = rng.choice(pool)
    # number / date styles
    if lang == "de":
        num_style = wchoice(rng, ["de", "plain_de", "space_de"], [85, 12, 3])
        date_fmt = wchoice(rng, ["de", "de_long", "iso", "de_short"], [65, 12, 15, 8])
    else:
        if vc in ("DE", "AT", "NL"):
            num_style = wchoice(rng, ["en", "de"], [55, 45])
        else:
            num_style = wchoice(rng, ["en", "plain_en"], [88, 12])
        if vc == "US":
            date_fmt = wchoice(rng, ["us", "us_long", "us_abbr", "iso"], [45, 30, 15, 10])
        else:
            date_fmt = wchoice(rng, ["gb", "gb_long", "gb_abbr", "iso", "us_long"], [35, 25, 10, 15, 15])
    currency = {"DE": "EUR", "AT": "EUR", "IE": "EUR", "NL": "EUR", "GB": "GBP", "US": "USD"}[vc]
    if vc == "GB" and cust["country"] in EU and rng.random() < 0.5:
        currency = "EUR"
    if vc in EU and cust["country"] == "US" and rng.random() < 0.4:
        currency = "USD"
    sym = {"EUR": "€", "GBP": "£", "USD": "$"}[currency]
    if num_style.endswith("de"):
        cur_style = rng.choice(["code_pre", "code_post", "sym_pre", "sym_post", "sym_post", "none_items"])
    else:
        cur_style = rng.choice(["code_pre", "code_post", "sym_pre", "sym_pre", "none_items"])

    def amt(x, dec=2):
        s = fmt_num(x, num_style, dec)
        if cur_style == "code_pre":
            return f"{currency} {s}"
        if cur_style == "code_post":
            return f"{s} {currency}"
        if cur_style == "sym_pre":
            return f"{sym}{s}" if lang == "en" else f"{sym} {s}"
        if cur_style == "sym_post":
            return f"{s} {sym}"
        return s

    def amt_tot(x):
        s = fmt_num(x, num_style)
        return f"{currency} {s}" if cur_style in ("code_pre", "none_items") else amt(x)

    inv_date = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 910))
    terms_text, days = payment_terms(rng, lang, target_cat)
    due = inv_date + dt.timedelta(days=days)
    mon_date = inv_date.replace(day=1) - dt.timedelta(days=rng.choice([1, 1, 1, 20]))
    mon = (f"{MONTHS_DE[mon_date.month - 1]} {mon_date.year}" if lang == "de"
           else f"{MONTHS_EN[mon_date.month - 1]} {mon_date.year}")
    cities = [c[0 if lang == "de" else 1] for c in DE_CITIES[:14]] + [
        "London", "Manchester", "Wien" if lang == "de" else "Vienna", "Amsterdam", "Dublin",
        "Mailand" if lang == "de" else "Milan", "Paris", "Chicago", "New York",
        "Zürich" if lang == "de" else "Zurich", "Warschau" if lang == "de" else "Warsaw"]
    items_en = lang == "de" and target_cat in ("software", "consulting", "marketing") and rng.random() < P_LANG_SWITCH_ITEMS
    ctx = {"lang": lang, "mon": mon, "cities": cities, "items_en": items_en}
    items, label, mixed, share = build_items(rng, target_cat, ctx)

    rate, vat_note = vat_treatment(rng, v, cust, items, lang, label)
    subtotal = sum((it["total"] for it in items), Decimal(0))
    discount = None
    if rng.random() < 0.06 and subtotal > 200:
        pct = Decimal(rng.choice([2, 3, 5, 10]))
        discount = (pct, -money(subtotal * pct / 100))
        subtotal = subtotal + discount[1]
    tax = money(subtotal * rate / 100)
    total = subtotal + tax

    # ---------------- blocks ----------------
    de = lang == "de"
    blocks = {}
    # header
    h = []
    if rng.random() < 0.35:
        h.append(f"{v['name']} · {v['street']} · {v['cityline']}")
    else:
        h.append(v["name"])
        h.append(v["street"])
        h.append(v["cityline"] + ("" if vc == cust["country"] and rng.random() < 0.7
                                  else f", {COUNTRY_NAME[vc][1 if de else 0]}"))
    contact_bits = []
    if rng.random() < 0.8:
        contact_bits.append(("Tel.: " if de else rng.choice(["Tel: ", "Phone: ", "T "])) + v["phone"])
    if rng.random() < 0.85:
        mailbox = rng.choice(["rechnung", "buchhaltung", "info", "billing"] if de else
                             ["accounts", "billing", "invoices", "info", "finance"])
        contact_bits.append(("E-Mail: " if de else rng.choice(["Email: ", "E: ", "e-mail: "])) + f"{mailbox}@{v['domain']}")
    if rng.random() < 0.35:
        contact_bits.append(f"www.{v['domain']}")
    if contact_bits:
        if rng.random() < 0.5:
            h.append(" | ".join(contact_bits))
        else:
            h.extend(contact_bits)
    blocks["header"] = h

    # customer
    c = []
    lab = L(rng, "billto", lang)
    if lab:
        c.append(lab)
    c.append(cust["name"])
    if cust["dept"] and rng.random() < 0.5:
        c.append(cust["dept"])
    if rng.random() < 0.4:
        c.append(("z. Hd. " if de else "Attn: ") + cust["attn"])
    c.append(cust["street"])
    c.append(cust["cityline"])
    if cust["country"] != vc:
        c.append(COUNTRY_NAME[cust["country"]][1 if de else 0])
    blocks["customer"] = c

    # meta
    m = []
    sep = rng.choice([": ", ": ", " ", "  "])
    inv_no = invoice_number(rng, v, inv_date)
    m.append(f"{L(rng, 'no', lang)}{sep}{inv_no}")
    m.append(f"{L(rng, 'date', lang)}{sep}{fmt_date(inv_date, date_fmt)}")
    if rng.random() < 0.6:
        m.append(f"{L(rng, 'due', lang)}{sep}{fmt_date(due, date_fmt)}")
    if rng.random() < 0.6:
        m.append(f"{L(rng, 'custno', lang)}{sep}{customer_number(v, cust)}")
    if rng.random() < 0.55:
        po = rng.choice([f"PO-{rng.randint(10000, 99999)}", f"45{rng.randint(10000000, 99999999)}",
                         f"BE-{inv_date.year}-{rng.randint(1, 9999):04d}", f"{rng.randint(1000, 99999)}",
                         f"ORD{rng.randint(100000, 999999)}"])
        m.append(f"{L(rng, 'order', lang)}{sep}{po}")
    if rng.random() < 0.35:
        m.append(f"{L(rng, 'contact', lang)}{sep}{v['contact']}")
    if vat_note and rng.random() < 0.8:
        m.append(("USt-IdNr. des Leistungsempfängers" if de else "Customer VAT ID") + sep + cust["vat"])
    rng.shuffle(m) if rng.random() < 0.25 else None
    if rng.random() < 0.5:
        m = [" | ".join(m[i:i + 2]) for i in range(0, len(m), 2)] if rng.random() < 0.4 else m
    blocks["meta"] = m

    # title / context
    title = L(rng, "title", lang)
    if rng.random() < 0.3:
        title = f"{title} {inv_no}" if rng.random() < 0.5 else title
    blocks["title"] = [title]
    ctxl = []
    if rng.random() < P_CONTEXT_LINE:
        tmpl = rng.choice(CONTEXT[label if rng.random() < 0.85 else target_cat])[1 if de else 0]
        p_start = mon_date.replace(day=1)
        period = f"{fmt_date(p_start, date_fmt)} – {fmt_date(mon_date, date_fmt)}"
        site_street, site_city, _, _ = make_address(rng, cust["country"])
        c1, c2 = rng.sample(cities, 2)
        ctxl.append(tmpl.format(
            proj=rng.choice(PROJECTS), period=period, n6=rng.randint(100000, 999999), n5=rng.randint(10000, 99999),
            date=fmt_date(inv_date - dt.timedelta(days=rng.randint(10, 90)), date_fmt),
            site=f"{site_street}, {site_city}", meter=f"{rng.randint(1, 9)}{rng.choice('ABEHKLMN')}{rng.randint(10000000, 99999999)}",
            ship=rng.choice([f"{rng.randint(10 ** 11, 10 ** 12 - 1)}", f"JD{rng.randint(10 ** 15, 10 ** 16 - 1)}",
                             f"1Z{rng.randint(10 ** 9, 10 ** 10 - 1)}"]),
            bref="".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
            c1=c1, c2=c2, person=person(rng, cust["country"])))
    if rng.random() < 0.3:
        intro = rng.choice(["Dear Sir or Madam,", "Thank you for your order. We invoice the following:",
                            "For services rendered we charge:", "Please find below our invoice."]) if not de else rng.choice(
            ["Sehr geehrte Damen und Herren,", "vielen Dank für Ihren Auftrag. Wir berechnen Ihnen:",
             "für die erbrachten Leistungen erlauben wir uns zu berechnen:", "wir stellen Ihnen folgende Leistungen in Rechnung:"])
        ctxl.append(intro)
    blocks["context"] = ctxl

    # items
    style = rng.choice(["table", "table", "table_nounit", "inline", "twoline", "semicolon"])
    unit_i = 1 if de else 0
    rows = []
    if style.startswith("table"):
        with_unit = style == "table"
        hdr = ["Pos", L(rng, "desc", lang), L(rng, "qty", lang)]
        if with_unit:
            hdr.append("Einh." if de else "Unit")
        hdr += [L(rng, "unit", lang), L(rng, "amount", lang)]
        gap = rng.choice(["  ", "  ", "   ", " | "])
        table = [hdr]
        pos_step = 10 if rng.random() < 0.1 else 1
        for i, it in enumerate(items, 1):
            cols = [str(i * pos_step), it["name"][:70], fmt_qty(it["qty"], num_style)]
            if with_unit:
                cols.append(KIND_UNITS[it["kind"]][unit_i])
            cols += [amt(it["price"], it["pdec"]) if cur_style != "none_items" else fmt_num(it["price"], num_style, it["pdec"]),
                     amt(it["total"]) if cur_style != "none_items" else fmt_num(it["total"], num_style)]
            table.append(cols)
        widths = [max(len(r[j]) for r in table) for j in range(len(hdr))]
        aligned = rng.random() < 0.8
        for r_ in table:
            cells = []
            for j, cell in enumerate(r_):
                if not aligned:
                    cells.append(cell)
                elif j <= 1 or (with_unit and j == 3):
                    cells.append(cell.ljust(widths[j]))
                else:
                    cells.append(cell.rjust(widths[j]))
            rows.append(gap.join(cells).rstrip())
    elif style == "inline":
        for i, it in enumerate(items, 1):
            rows.append(f"{i}. {it['name']} — {fmt_qty(it['qty'], num_style)} {KIND_UNITS[it['kind']][unit_i]} x "
                        f"{fmt_num(it['price'], num_style, it['pdec'])} = {amt(it['total'])}")
    elif style == "twoline":
        for it in items:
            rows.append(it["name"])
            if de:
                rows.append(f"   Menge: {fmt_qty(it['qty'], num_style)} {KIND_UNITS[it['kind']][1]}   "
                            f"EP: {fmt_num(it['price'], num_style, it['pdec'])}   Betrag: {amt(it['total'])}")
            else:
                rows.append(f"   Qty: {fmt_qty(it['qty'], num_style)} {KIND_UNITS[it['kind']][0]}   "
                            f"Unit price: {fmt_num(it['price'], num_style, it['pdec'])}   Amount: {amt(it['total'])}")
    else:  # semicolon
        rows.append(";".join([L(rng, "desc", lang), L(rng, "qty", lang), L(rng, "unit", lang), L(rng, "amount", lang)]))
        for it in items:
            rows.append(f"{it['name']};{fmt_qty(it['qty'], num_style)};{fmt_num(it['price'], num_style, it['pdec'])};"
                        f"{fmt_num(it['total'], num_style)}")
    blocks["items"] = rows

    # totals
    t = []
    if discount:
        t.append((f"Rabatt {discount[0]} %" if de else f"Discount {discount[0]}%") + f": {amt(discount[1])}")
    if rate == rate.to_integral_value():
        pct = str(int(rate))
    else:
        pct = fmt_num(rate, "de" if num_style.endswith("de") else "en", 3).rstrip("0")
    if vc == "US" and cust["country"] == "US":
        taxlab = f"Sales tax ({pct}%)"
    elif de:
        taxlab = rng.choice([f"zzgl. {pct} % MwSt.", f"USt. {pct} %", f"Umsatzsteuer {pct}%", f"MwSt. {pct}%"])
    else:
        taxlab = rng.choice([f"VAT {pct}%", f"VAT ({pct}%)", f"Tax {pct}%", f"plus VAT @ {pct}%"])
    t.append(f"{L(rng, 'subtotal', lang)}: {amt(subtotal)}")
    t.append(f"{taxlab}: {amt(tax)}")
    t.append(f"{L(rng, 'total', lang)}: {amt_tot(total)}")
    if vat_note:
        t.append(vat_note)
    blocks["totals"] = t

    # payment
    pay = [terms_text]
    if vc == "US":
        pay.append(f"Wire/ACH: {v['bank']}, ABA {v['routing']}, Acct. {v['account']}")
    else:
        iban = v["iban"]
        if rng.random() < 0.65:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        if rng.random() < 0.5:
            pay.append(("Bankverbindung: " if de else "Bank details: ") + f"{v['bank']}")
            pay.append(f"IBAN: {iban}")
            pay.append(f"BIC: {v['bic']}")
        else:
            pay.append(f"{v['bank']} · IBAN {iban} · BIC {v['bic']}")
    if rng.random() < 0.35:
        pay.append(rng.choice(["Bitte geben Sie bei Zahlung die Rechnungsnummer an.",
                               "Verwendungszweck: " + inv_no]) if de else rng.choice(
            ["Please quote the invoice number with your payment.", "Payment reference: " + inv_no]))
    blocks["payment"] = pay

    # footer
    f = []
    vid = fmt_vat_id(rng, v["vat"])
    if vc == "US":
        f.append(f"EIN {v['vat']}")
    else:
        f.append(("USt-IdNr.: " if de else rng.choice(["VAT ID: ", "VAT Reg. No. ", "VAT No.: "])) + vid)
    if rng.random() < 0.6:
        f.append(v["registry"])
    if vc in ("DE", "AT") and rng.random() < 0.5:
        f.append(("Geschäftsführer: " if de else "Managing Director: ") + v["director"])
    if vc == "DE" and de and rng.random() < 0.3:
        f.append(f"Steuernummer: {v['taxno']}")
    if rng.random() < 0.5:
        f = [" · ".join(f)]
    blocks["footer"] = f
    closing = []
    if rng.random() < 0.35:
        closing.append(rng.choice(["Vielen Dank für Ihren Auftrag!", "Mit freundlichen Grüßen", "Wir danken für Ihr Vertrauen."])
                       if de else rng.choice(["Thank you for your business!", "Kind regards", "Thank you for choosing us."]))
    blocks["closing"] = closing

    # layout order
    top = rng.choice([["header", "customer", "title", "meta"], ["header", "title", "meta", "customer"],
                      ["header", "customer", "meta", "title"], ["title", "header", "customer", "meta"],
                      ["header", "meta", "customer", "title"]])
    bottom = rng.choice([["payment", "closing", "footer"], ["closing", "payment", "footer"],
                         ["payment", "footer", "closing"], ["footer", "payment", "closing"]])
    order = top + ["context", "items", "totals"] + bottom
    parts = []
    for b in order:
        if blocks[b]:
            parts.append("\n".join(blocks[b]))
    joiner = rng.choice(["\n\n", "\n\n", "\n"])
    text = joiner.join(parts)
    if rng.random() < P_OCR:
        text = ocr_noise(rng, text)
    d.text = text
    d.label = label
    d.lang = lang
    d.mixed = mixed
    d.share = share
    return d


CONFUSIONS = {
    "0": ["O"], "O": ["0"], "o": ["0"], "1": ["l", "I"], "l": ["1", "I"], "I": ["l", "1"],
    "5": ["S"], "S": ["5"], "8": ["B"], "B": ["8"], "e": ["c"], "c": ["e"], ",": ["."], ".": [","],
    "ü": ["u", "ii"], "ä": ["a"], "ö": ["o"], "ß": ["B"], "i": ["l"], "n": ["h"], "h": ["b"],
}
STRAY = [".", ",", "'", "|", "`", "~", "°", "^", ":", "_"]


def ocr_noise(rng, text):
    rate = rng.uniform(*OCR_RATE)
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        r = rng.random()
        if r >= rate or ch == "\n":
            out.append(ch)
            i += 1
            continue
        op = rng.random()
        if text.startswith("rn", i) and op < 0.5:
            out.append("m")
            i += 2
            continue
        if ch == "m" and op < 0.4:
            out.append("rn")
        elif ch == " ":
            if op < 0.45:
                pass  # dropped space
            elif op < 0.85:
                out.append("  ")
            else:
                out.append("\n")  # broken line
        elif ch in CONFUSIONS and op < 0.7:
            out.append(rng.choice(CONFUSIONS[ch]))
        elif op < 0.85:
            out.append(ch)
            out.append(rng.choice(STRAY))
        else:
            out.append(ch)
            out.append(ch)
        i += 1
    return "".join(out)


def generate_split(seed, n, vendors, customers, seen, balanced):
    rng = random.Random(seed)
    docs = []
    if balanced:
        quota = {c: n // len(CATEGORIES) for c in CATEGORIES}
        for c in CATEGORIES[: n % len(CATEGORIES)]:
            quota[c] += 1
        counts = {c: 0 for c in CATEGORIES}
        i = 0
        while len(docs) < n:
            open_cats = [c for c in CATEGORIES if counts[c] < quota[c]]
            target = open_cats[i % len(open_cats)]
            i += 1
            d = make_doc(rng, vendors, customers, target)
            if counts[d.label] >= quota[d.label] or d.text in seen:
                continue
            counts[d.label] += 1
            seen.add(d.text)
            docs.append(d)
        rng.shuffle(docs)
    else:
        while len(docs) < n:
            d = make_doc(rng, vendors, customers, rng.choice(CATEGORIES))
            if d.text in seen:
                continue
            seen.add(d.text)
            docs.append(d)
    return docs


def write_csv(path, docs):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["text", "label"])
        for d in docs:
            w.writerow([d.text, d.label])


def main():
    world = random.Random(SEED_WORLD)
    vendors = build_vendors(world)
    customers = build_customers(world)
    seen = set()
    corpus = generate_split(SEED_CORPUS, N_CORPUS, vendors, customers, seen, balanced=False)
    train = generate_split(SEED_TRAIN, N_TRAIN, vendors, customers, seen, balanced=True)
    test = generate_split(SEED_TEST, N_TEST, vendors, customers, seen, balanced=True)
    with open(os.path.join(OUT_DIR, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as fh:
        for d in corpus:
            fh.write(json.dumps({"text": d.text}, ensure_ascii=False) + "\n")
    write_csv(os.path.join(OUT_DIR, "train.csv"), train)
    write_csv(os.path.join(OUT_DIR, "test.csv"), test)
    for name, docs in (("corpus", corpus), ("train", train), ("test", test)):
        de = sum(1 for d in docs if d.lang == "de")
        mixed = sum(1 for d in docs if d.mixed)
        close = sum(1 for d in docs if d.share < 0.6)
        print(f"{name}: {len(docs)} docs, {de / len(docs):.0%} German, {mixed / len(docs):.0%} mixed-category, "
              f"{close / len(docs):.1%} with label share of net amount < 60%")


if __name__ == "__main__":
    main()
