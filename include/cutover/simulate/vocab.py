"""Word lists and code tables the simulator draws from.

Everything here is invented or public reference data (CPT and ICD code numbers, US area codes and
ZIP prefixes); no real person's data. Canary values are invented so that they never occur by
chance: finding one in a log proves that patient data leaked there.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Places


@dataclass(frozen=True)
class ClinicTemplate:
    """A clinic and the towns its patients come from."""

    name: str
    address: str
    city: str
    state: str
    zip: str
    tz: str
    area_codes: tuple[int, ...]
    towns: tuple[tuple[str, str], ...]
    """(town, 3-digit ZIP prefix) for patients' addresses."""


# The first three cover a 0-prefixed ZIP state (MA), so even a small practice has lost zeros.
CLINICS: tuple[ClinicTemplate, ...] = (
    ClinicTemplate(
        "Harborview Physical Therapy",
        "120 Tremont St",
        "Boston",
        "MA",
        "02108",
        "America/New_York",
        (617, 781, 508, 978),
        (("Boston", "021"), ("Cambridge", "021"), ("Quincy", "021"), ("Newton", "024"), ("Worcester", "016")),
    ),
    ClinicTemplate(
        "Lakeshore PT & Sports Rehab",
        "455 N Michigan Ave",
        "Chicago",
        "IL",
        "60611",
        "America/Chicago",
        (312, 773, 847, 630),
        (("Chicago", "606"), ("Evanston", "602"), ("Oak Park", "603"), ("Naperville", "605")),
    ),
    ClinicTemplate(
        "Front Range Physical Therapy",
        "1600 Champa St",
        "Denver",
        "CO",
        "80202",
        "America/Denver",
        (303, 720, 719),
        (("Denver", "802"), ("Aurora", "800"), ("Lakewood", "802"), ("Boulder", "803")),
    ),
    ClinicTemplate(
        "Capitol Physical Therapy",
        "1010 K St",
        "Sacramento",
        "CA",
        "95814",
        "America/Los_Angeles",
        (916, 530),
        (("Sacramento", "958"), ("Davis", "956"), ("Roseville", "956"), ("Elk Grove", "957")),
    ),
    ClinicTemplate(
        "Garden State Rehab",
        "1 Gateway Center",
        "Newark",
        "NJ",
        "07102",
        "America/New_York",
        (973, 201, 908, 732),
        (("Newark", "071"), ("Jersey City", "073"), ("Elizabeth", "072"), ("Montclair", "070")),
    ),
    ClinicTemplate(
        "Charter Oak PT",
        "280 Trumbull St",
        "Hartford",
        "CT",
        "06103",
        "America/New_York",
        (860, 203),
        (("Hartford", "061"), ("West Hartford", "061"), ("New Britain", "060"), ("Middletown", "064")),
    ),
)

STREETS = (
    "Maple", "Oak", "Washington", "Lincoln", "Park", "Elm", "Pine", "Cedar", "Lake", "Hill",
    "Walnut", "Spring", "Church", "Highland", "Union", "Chestnut", "Franklin", "Adams", "Jefferson",
    "Madison", "Prospect", "Summit", "Willow", "River", "Sunset", "Main", "Center", "Mill", "Pleasant",
    "Ridge", "Forest", "Meadow", "Harbor", "Orchard", "Cherry", "Birch", "Grove", "Hawthorne",
)  # fmt: skip
STREET_SUFFIXES = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way", "Pl", "Ter")

# ---------------------------------------------------------------------------------------------
# People

SURNAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez",
    "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen",
    "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
    "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards",
    "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez",
    "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim",
    "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray",
    "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long",
    "Ross", "Foster", "Jimenez", "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman",
    "Butler", "Henderson", "Barnes", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson",
    "Alexander", "Hamilton", "Graham", "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole",
    "Hayes", "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray",
    "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez", "McDonald", "Woods", "Washington",
    "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman", "Webb", "Tucker", "Guzman", "Burns",
    "Crawford", "Olson", "Simpson", "Porter", "Hunter", "Gordon", "Mendez", "Silva", "Shaw", "Snyder",
    "Mason", "Dixon", "Munoz", "Hunt", "Hicks", "Holmes", "Palmer", "Wagner", "Black", "Robertson",
    "Boyd", "Rose", "Stone", "Salazar", "Fox", "Warren", "Mills", "Meyer", "Rice", "Schmidt",
    "O'Brien", "O'Connor", "McCarthy", "MacKenzie", "Fitzgerald", "Kowalski", "Nowak", "Novak",
    "Smith-Jones", "Garcia-Lopez", "De La Cruz", "Van Buren", "St. John", "Nakamura", "Okafor",
    "Haddad", "Cohen", "Goldberg", "Rossi", "Russo", "Bianchi", "Schneider", "Müller", "Peña",
    "Núñez", "Ibáñez", "Lindqvist", "Andersen", "Dubois", "Lefèvre", "Papadopoulos", "Ivanov",
)  # fmt: skip

MALE_GIVEN = (
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Charles",
    "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew",
    "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason", "Jeffrey",
    "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott",
    "Brandon", "Benjamin", "Samuel", "Gregory", "Alexander", "Frank", "Patrick", "Raymond", "Jack",
    "Dennis", "Jerry", "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Douglas", "Zachary",
    "Peter", "Kyle", "Ethan", "Walter", "Noah", "Jeremy", "Christian", "Keith", "Roger", "Terry",
    "Gerald", "Harold", "Sean", "Austin", "Carl", "Arthur", "Lawrence", "Dylan", "Jesse", "Jordan",
    "Bryan", "Billy", "Joe", "Bruce", "Gabriel", "Logan", "Albert", "Willie", "Alan", "Juan", "Wayne",
    "Elijah", "Randy", "Roy", "Vincent", "Ralph", "Eugene", "Russell", "Bobby", "Mason", "Philip",
    "Louis", "Luis", "Carlos", "Miguel", "Wei", "Hiroshi", "Kwame", "Dmitri", "Rajesh", "Sean-Paul",
)  # fmt: skip

FEMALE_GIVEN = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna",
    "Michelle", "Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon",
    "Laura", "Cynthia", "Kathleen", "Amy", "Angela", "Shirley", "Anna", "Brenda", "Pamela", "Emma",
    "Nicole", "Helen", "Samantha", "Katherine", "Christine", "Debra", "Rachel", "Carolyn", "Janet",
    "Catherine", "Maria", "Heather", "Diane", "Ruth", "Julie", "Olivia", "Joyce", "Virginia",
    "Victoria", "Kelly", "Lauren", "Christina", "Joan", "Evelyn", "Judith", "Megan", "Andrea",
    "Cheryl", "Hannah", "Jacqueline", "Martha", "Gloria", "Teresa", "Ann", "Sara", "Madison",
    "Frances", "Kathryn", "Janice", "Jean", "Abigail", "Alice", "Judy", "Sophia", "Grace", "Denise",
    "Amber", "Doris", "Marilyn", "Danielle", "Beverly", "Isabella", "Theresa", "Diana", "Natalie",
    "Brittany", "Charlotte", "Marie", "Kayla", "Alexis", "Lori", "Mei", "Yuki", "Aisha", "Priya",
    "Mary-Kate", "Anne-Marie", "Zoë", "Renée", "José-Maria",
)  # fmt: skip

RELATIONS = ("Spouse", "Parent", "Child", "Sibling", "Friend", "Partner")

EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "inbox.example")

# ---------------------------------------------------------------------------------------------
# Payers: (name, type); types as the legacy system spells them.

PAYER_TYPES = ("Medicare", "Medicaid", "Commercial", "Workers Comp", "Auto/PIP", "Tricare", "VA", "Self Pay")
PAYERS: tuple[tuple[str, str], ...] = (
    ("Medicare Part B", "Medicare"),
    ("Medicare Advantage - Humana", "Medicare"),
    ("Medicaid", "Medicaid"),
    ("MassHealth", "Medicaid"),
    ("Blue Cross Blue Shield", "Commercial"),
    ("Aetna", "Commercial"),
    ("Cigna", "Commercial"),
    ("UnitedHealthcare", "Commercial"),
    ("Harvard Pilgrim Health Care", "Commercial"),
    ("Liberty Mutual Workers Comp", "Workers Comp"),
    ("Travelers Workers Comp", "Workers Comp"),
    ("GEICO PIP", "Auto/PIP"),
    ("State Farm Auto", "Auto/PIP"),
    ("TRICARE East", "Tricare"),
    ("VA Community Care", "VA"),
    ("Self Pay", "Self Pay"),
)
# Payer types that ask for a prior authorization of the visit count.
AUTH_PAYER_TYPES = frozenset({"Medicaid", "Commercial", "Workers Comp", "Auto/PIP", "Tricare", "VA"})

# ---------------------------------------------------------------------------------------------
# Billing codes. Fees are the practice's charge master in cents per unit.

TIMED_CPT = ("97110", "97112", "97116", "97140", "97530", "97535")
TIMED_WEIGHTS = (0.34, 0.14, 0.06, 0.24, 0.16, 0.06)
EVAL_CPT = ("97161", "97162", "97163")
EVAL_WEIGHTS = (0.30, 0.55, 0.15)
REEVAL_CPT = "97164"
MODALITY_CPT = ("97010", "97014", "97150")
MODALITY_WEIGHTS = (0.55, 0.35, 0.10)
FEES_CENTS: dict[str, int] = {
    "97161": 18500, "97162": 18500, "97163": 18500, "97164": 12000,
    "97110": 6500, "97112": 7000, "97116": 6000, "97140": 6200, "97530": 7200, "97535": 6600,
    "97010": 2000, "97014": 2500, "97150": 3500,
}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Body regions: diagnosis codes (ICD-10-CM, with the ICD-9-CM code an older record would hold),
# the outcome measure used, and words for the notes.

BODY_REGIONS = ("Lumbar", "Cervical", "Knee", "Shoulder", "Hip", "Ankle/Foot", "Wrist/Hand")
REGION_WEIGHTS = (0.28, 0.12, 0.20, 0.17, 0.09, 0.08, 0.06)
REGION_DX: dict[str, tuple[tuple[str, str], ...]] = {
    "Lumbar": (("M54.50", "724.2"), ("M51.26", "722.10"), ("M54.16", "724.4"), ("M62.81", "728.87")),
    "Cervical": (("M54.2", "723.1"), ("M50.20", "722.0"), ("M47.812", "721.0"), ("M62.81", "728.87")),
    "Knee": (("M25.561", "719.46"), ("M17.11", "715.16"), ("S83.511A", "844.2"), ("Z96.651", "V43.65")),
    "Shoulder": (("M75.101", "726.10"), ("M25.511", "719.41"), ("M75.41", "726.2"), ("M62.81", "728.87")),
    "Hip": (("M25.551", "719.45"), ("M16.11", "715.15"), ("M70.61", "726.5"), ("R26.89", "781.2")),
    "Ankle/Foot": (("S93.401A", "845.00"), ("M25.571", "719.47"), ("M72.2", "728.71"), ("R26.2", "719.7")),
    "Wrist/Hand": (("M25.531", "719.43"), ("G56.01", "354.0"), ("S52.501A", "813.42"), ("M62.81", "728.87")),
}
REGION_MEASURE = {
    "Lumbar": "ODI",
    "Cervical": "NDI",
    "Knee": "LEFS",
    "Shoulder": "QuickDASH",
    "Hip": "LEFS",
    "Ankle/Foot": "LEFS",
    "Wrist/Hand": "QuickDASH",
}
REGION_WORDS = {
    "Lumbar": "low back",
    "Cervical": "neck",
    "Knee": "knee",
    "Shoulder": "shoulder",
    "Hip": "hip",
    "Ankle/Foot": "ankle",
    "Wrist/Hand": "wrist",
}
MEASURES = ("LEFS", "ODI", "NDI", "QuickDASH", "PSFS")
MEASURE_RANGE: dict[str, tuple[float, float]] = {
    "LEFS": (0, 80),
    "ODI": (0, 100),
    "NDI": (0, 50),
    "QuickDASH": (0, 100),
    "PSFS": (0, 10),
}

# ---------------------------------------------------------------------------------------------
# Note text. Each SOAP section is a template filled from the lists below.

SUBJECTIVE = (
    "Pt reports {region} pain {pain}/10 {trend}. {func}.",
    "Pt states {region} is {trend}; pain {pain}/10 at worst. {func}.",
    "{func}. Reports {pain}/10 {region} pain, {trend}.",
    "Pt arrives reporting {region} soreness {pain}/10 after HEP, {trend}.",
)
TRENDS = (
    "improving since last visit",
    "unchanged",
    "slightly worse after work",
    "much better this week",
    "worse in the mornings",
    "better with ice",
)
FUNCTION = (
    "Difficulty with prolonged sitting",
    "Able to climb stairs with rail",
    "Sleeping through the night now",
    "Still unable to lift grandchild",
    "Returned to light duty at work",
    "Walking 20 minutes without rest",
    "Trouble reaching overhead shelves",
    "Driving tolerance about 30 minutes",
)
OBJECTIVE = (
    "AROM {region} {deg} deg, strength {mmt}/5. Tx: therex, manual, NMR per flowsheet.",
    "{region} ROM {deg} deg; MMT {mmt}/5; gait {gait}. Tx per flowsheet.",
    "Palpation: tenderness {region}. ROM {deg} deg. Strength {mmt}/5. Balance {gait}.",
)
GAIT = ("WNL", "antalgic", "with SPC", "with RW", "mildly antalgic", "independent")
ASSESSMENT = (
    "Pt tolerated tx well, {progress} toward goals.",
    "Good response to manual therapy; {progress}. Continues to benefit from skilled PT.",
    "Pt {progress}; limited by pain and guarding.",
    "Fair tolerance to therex; {progress}.",
)
PROGRESS = (
    "progressing",
    "making steady progress",
    "plateaued this week",
    "meeting short-term goals",
    "slow progress",
)
PLAN = (
    "Continue POC {freq}. Progress HEP.",
    "Continue per POC; add {focus}. Reassess next visit.",
    "Progress {focus} as tolerated. Continue {freq}.",
    "Update HEP, continue skilled PT {freq}.",
)
FOCUS = (
    "closed-chain strengthening",
    "core stabilisation",
    "balance training",
    "scapular stabilisation",
    "gait training",
    "joint mobilisation",
    "eccentric loading",
)
NOTE_OPENERS = {
    "IE": "Initial evaluation. ",
    "PN": "Progress note. ",
    "RE": "Re-evaluation. ",
    "DC": "Discharge summary. ",
    "DN": "",
}
DISCHARGE_PLAN = (
    "Discharge to independent HEP; goals met.",
    "Discharge; goals partially met, pt to continue HEP.",
    "Discharged per pt request; return PRN.",
)
GOALS = (
    "Independent with HEP in 4 wks; reduce pain to 2/10; return to {activity}.",
    "Improve {measure} by MCID; pain <= 3/10 with ADLs; return to {activity}.",
    "Restore full ROM; independent ambulation without device; return to {activity}.",
)
ACTIVITIES = ("work", "running", "gardening", "golf", "lifting at work", "childcare", "stairs at home")
FREQUENCIES = ("1x/wk", "2x/wk", "3x/wk")
FREQUENCY_WEIGHTS = (0.15, 0.60, 0.25)
# Visit spacing in days for each frequency: [low, high).
FREQUENCY_GAPS = ((5, 10), (2, 6), (1, 4))

# Text with accented characters that a Latin-1 front end typed into notes.
LATIN1_PHRASES = (
    "Pt works as a café barista, stands 8 hrs.",
    "Daughter interpreted (español).",
    "Résumé of HEP reviewed with pt.",
    "Pt naïve to PT.",
    "Jalapeño farmer, heavy lifting.",
    "Façade painter, overhead work.",
    "Sister Zoë present for session.",
    "Pt from Curaçao, visiting family.",
    "Crème applied before manual tx.",
)
CONTROL_CHARS = ("\x00", "\x0b", "\x1a", "\r")

# ---------------------------------------------------------------------------------------------
# Patient safety: allergies, medications, precautions. The mapping recognises exactly these
# spellings; the ``*_UNMAPPED`` / ``*_UNCODED`` / ``*_UNCLASSIFIED`` values are the ones it cannot
# code (the simulator plants them as ``safety_text_unmapped``).

ALLERGENS: dict[str, tuple[str, ...]] = {
    "penicillin": ("PCN", "Penicillin", "penicillin", "PCN!!", "pcn allergy"),
    "latex": ("latex", "LATEX", "latex!!", "Latex (gloves)"),
    "sulfonamide": ("Sulfa", "sulfa drugs", "SULFA"),
    "codeine": ("codeine", "Codeine"),
    "iodine": ("iodine", "Iodine/contrast"),
    "adhesive": ("adhesive tape", "Adhesive"),
    "nsaid": ("NSAIDs", "NSAIDS"),
    "morphine": ("morphine", "MS Contin"),
}
"""Coded allergens: canonical → the spellings the legacy front desk typed."""
ALLERGEN_WEIGHTS = (0.32, 0.12, 0.18, 0.1, 0.08, 0.07, 0.08, 0.05)
"""Share of each canonical allergen, in the order of :data:`ALLERGENS`."""
NO_KNOWN_ALLERGIES = (
    "NKDA",
    "nkda",
    "N.K.D.A.",
    "NKA",
    "No known allergies",
    "no known drug allergies",
    "none known",
    "NKDA!!",
)
ALLERGENS_UNCODED = ("strawberries", "kiwi fruit", "cat dander", "ragweed")
REACTIONS = ("hives", "rash", "anaphylaxis", "SOB", "itching", "swelling", None)
REACTION_WEIGHTS = (0.22, 0.24, 0.06, 0.08, 0.1, 0.1, 0.2)
SEVERITIES = ("mild", "Mild", "MOD", "moderate", "severe", "SEVERE", None)
SEVERITY_WEIGHTS = (0.2, 0.1, 0.08, 0.15, 0.08, 0.04, 0.35)
SEVERITIES_UNMAPPED = ("see chart", "?")
ALLERGY_STATUSES = ("active", "A", "inactive", "I", "resolved", None)
ALLERGY_STATUS_WEIGHTS = (0.5, 0.2, 0.04, 0.02, 0.04, 0.2)
ALLERGY_STATUSES_UNMAPPED = ("??",)

DRUGS = (
    "Warfarin",
    "Coumadin",
    "Eliquis",
    "Xarelto",
    "metformin",
    "lisinopril",
    "ibuprofen",
    "gabapentin",
    "atorvastatin",
    "Tylenol",
    "cyclobenzaprine",
)
DRUG_WEIGHTS = (0.04, 0.04, 0.05, 0.04, 0.12, 0.14, 0.15, 0.1, 0.13, 0.12, 0.07)
DOSES = ("5 mg daily", "1 tab BID", "10mg qhs", "PRN", "500 mg TID", None)
MED_STATUSES = ("active", "current", "Y", "discontinued", "stopped", "D/C", None)
MED_STATUS_WEIGHTS = (0.4, 0.15, 0.15, 0.06, 0.04, 0.05, 0.15)
MED_STATUSES_UNMAPPED = ("?",)

PRECAUTIONS: dict[str, tuple[str, ...]] = {
    "WB": ("WBAT R LE", "NWB L LE x 6 wks", "TTWB L LE", "PWB 50% R LE"),
    "FALL": ("Fall risk", "High fall risk - use gait belt"),
    "NOESTIM": ("Pacemaker - NO E-STIM", "No electrical stim (pacemaker)"),
    "NORESIST": ("No resisted shoulder flexion x 6 weeks", "No resisted knee extension"),
    "ROM": ("ROM limited to 90 deg flexion", "No shoulder ER past neutral"),
    "BLEED": ("On Coumadin - bruises easily", "Bleeding risk (anticoagulated)"),
    "OSTEO": ("Osteoporosis - no spinal flexion",),
    "OTHER": ("Latex-free gloves only",),
}
"""Legacy precaution code (``prec_code``) → the texts written with it (code and text agree)."""
PRECAUTION_WEIGHTS = (0.3, 0.2, 0.07, 0.12, 0.12, 0.08, 0.06, 0.05)
PRECAUTION_TEXTS_UNCLASSIFIED = ("see MD note", "pt anxious with manual tx")
PRECAUTION_NOTES = ("{date} pt seen, reports {text}. Cont POC.", "Per MD: {text}")
"""How a precaution reads when it was only written into a visit note (``{date}`` is MM/DD/YYYY)."""

# ---------------------------------------------------------------------------------------------
# Canaries: invented values that cannot occur by chance.

CANARY_SURNAMES = (
    "Quillfeather-Vantrask",
    "Zorbenwick-Thrale",
    "Marrowdane-Oxleyworth",
    "Vexhollow-Pryndle",
    "Ambergloss-Kitteridge",
    "Thistlequarry-Moyne",
)
CANARY_GIVEN = ("Ysoldrine", "Caspiandor", "Merovythe", "Brindlewyn", "Oszkareth")
CANARY_PHRASES = (
    "reports quillwort spasms after zamboni polka",
    "describes a glimmering thrumble behind the left patella",
    "tolerated vantrask ladder drills with marzipan cues",
    "noted moonbrindle stiffness after heron-pose yoga",
)
