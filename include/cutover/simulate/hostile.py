"""Hostile values: what a 20-year-old practice database holds that nobody planned for.

The simulator's defects (:mod:`cutover.simulate.defects`) are the mess the mapping is *meant* to
clean. This catalogue is the rest: values that only exist because a legacy column accepts anything
its storage accepts — a fractional or out-of-range id, text in an integer column, bytes that are not
UTF-8, a 10 MB note, bidi controls, injection text, dates and amounts no parser expects.

Each :class:`Hostile` value has a ``kind`` (a short code such as ``id_fractional_real``) that tests
and reports name instead of the value, the logical column type it is meant for (the legacy schema's
``int``, ``text`` or ``blob``), what a text column means (:data:`Meaning`) and whether a SQLite
``INTEGER PRIMARY KEY`` can hold it (``key_legal``: only integers can be a key there). Some kinds
are *derived* from the value they replace (lower case, padding, a negated id): ``derive`` makes
them, ``value`` is an example.

:func:`kinds_for` lists the kinds that fit a legacy column; :func:`corrupt` overwrites a share of a
SQLite legacy database's cells with them and returns what it replaced, by id and kind only.

>>> KINDS["id_fractional_real"].value, KINDS["id_fractional_real"].key_legal
(2431.5, False)
>>> KINDS["id_zero"].key_legal, column_meaning("charges", "amount"), column_meaning("visits", "visit_date")
(True, 'money', 'date')
>>> "text_nul" in {h.kind for h in kinds_for("patients", "pat_name")}
True
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

from cutover.errors import ConfigError
from cutover.legacy.schema import LEGACY_TABLES, ColumnType
from cutover.simulate.practice import AS_OF

Value = int | float | str | bytes | None
"""A value as a DB-API driver hands it over (SQLite: INTEGER, REAL, TEXT, BLOB, NULL)."""

Meaning = Literal["id", "date", "money", "number", "code", "name", "phone", "identifier", "free_text", "blob"]
"""What a legacy column holds: ``id`` (the ``int`` columns), ``blob`` (binary), and for text columns
what the mapping reads them as (see :data:`COLUMN_MEANINGS`)."""
MEANINGS: tuple[Meaning, ...] = get_args(Meaning)

TEXT_MEANINGS: frozenset[Meaning] = frozenset(MEANINGS) - {"id", "blob"}

HUGE_BYTES = 10 * 1024 * 1024
"""Size of the huge text and blob values (10 MB: a pasted document in a notes field)."""

_SENTENCE = "Pt reports pain 7/10 on stairs, HEP reviewed. "
_HUGE_TEXT = (_SENTENCE * (HUGE_BYTES // len(_SENTENCE) + 1))[:HUGE_BYTES]
_HUGE_BLOB = bytes(range(256)) * (HUGE_BYTES // 256)
_NEXT_YEAR = date.fromisoformat(AS_OF).year + 1
"""The simulator's as-of date's next year: a date 'in the future' for a run as of that date."""

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


@dataclass(frozen=True, repr=False)
class Hostile:
    """One hostile value of the catalogue (its ``repr`` names the kind only, never the value)."""

    kind: str
    """Short code naming the value in tests, reports and the corrupter's record; never the value."""
    column_type: ColumnType
    """The legacy schema's logical type of the columns it is meant for."""
    meaning: Meaning | None
    """The meaning of the columns it is meant for; None: every column of ``column_type``."""
    value: Value
    """The value (for a derived kind: an example of it)."""
    key_legal: bool = False
    """A SQLite ``INTEGER PRIMARY KEY`` can hold it (an integer in int64)."""
    derive: Callable[[Value], Value] | None = None
    """Makes the value from the one it replaces (lower case, padding, negation)."""
    huge: bool = False
    """Megabytes: :func:`corrupt` plants only a few."""
    note: str = ""

    def __repr__(self) -> str:
        return f"Hostile({self.kind!r})"

    def value_for(self, current: Value) -> Value:
        """The hostile value replacing ``current``."""
        return self.derive(current) if self.derive is not None else self.value

    @property
    def valid_id(self) -> bool:
        """An ``int`` column value that is a whole number in int64 (the extract may keep it)."""
        v = self.value
        if isinstance(v, bool) or self.derive is not None:
            return self.key_legal
        if isinstance(v, int):
            return INT64_MIN <= v <= INT64_MAX
        return isinstance(v, float) and v.is_integer() and INT64_MIN <= v <= INT64_MAX


def _as_str(current: Value) -> str:
    if current is None:
        return ""
    if isinstance(current, bytes):
        return current.decode("utf-8", errors="replace")
    return str(current)


def _negated(current: Value) -> Value:
    # a negative id no other row has: the negation of a positive one
    return -abs(current) if isinstance(current, int) and current else -1


def _lower(current: Value) -> Value:
    return _as_str(current).lower() or "pt"


def _padded(current: Value) -> Value:
    return f"  {_as_str(current) or 'PT'}  "


def _id(kind: str, value: Value, *, key_legal: bool = False, note: str = "", **kw: Any) -> Hostile:
    return Hostile(kind, "int", "id", value, key_legal=key_legal, note=note, **kw)


def _text(kind: str, value: Value, meaning: Meaning | None = None, note: str = "", **kw: Any) -> Hostile:
    return Hostile(kind, "text", meaning, value, note=note, **kw)


CATALOGUE: tuple[Hostile, ...] = (
    # --- ids (the schema's int columns: keys and parent references) -------------------------------
    _id("id_fractional_real", 2431.5, note="REAL in an INTEGER column: truncation links the wrong parent"),
    _id("id_fractional_text", "2431.5", note="text; SQLite's INTEGER affinity stores it as REAL"),
    _id("id_int64_overflow_real", 1e20, note="REAL beyond int64"),
    _id("id_int64_overflow_text", "99999999999999999999", note="text beyond int64 (SQLite: REAL 1e20)"),
    _id("id_inf_real", float("inf"), note="REAL infinity (a division by zero in an old report tool)"),
    _id("id_nan_real", float("nan"), note="NaN: SQLite stores NULL"),
    _id("id_whole_real", 42.0, note="a whole REAL: SQLite's INTEGER affinity makes it 42"),
    _id("id_scientific_text", "1e3", note="text in exponent form (SQLite: INTEGER 1000)"),
    _id(
        "id_negative", -7, key_legal=True, derive=_negated, note="negated: a legal key, a dangling reference"
    ),
    _id("id_zero", 0, key_legal=True, note="0, the 'no parent' of many old systems"),
    _id("id_int64_max", INT64_MAX, key_legal=True),
    _id("id_int64_min", INT64_MIN, key_legal=True),
    _id("id_text", "abc", note="letters in an INTEGER column (SQLite keeps TEXT)"),
    _id("id_text_prefix", "12abc", note="digits then letters: a lenient parser reads 12"),
    _id("id_text_padded", " 42 ", note="spaces around digits"),
    _id("id_thousands_text", "1,234", note="a thousands separator"),
    _id("id_hex_text", "0x1F"),
    _id("id_blank", "", note="blank text: missing"),
    _id("id_whitespace", "   ", note="whitespace only: missing"),
    _id("id_null", None, note="NULL (a key column cannot hold it: SQLite assigns a rowid)"),
    _id("id_blob", b"\xff\xfe42", note="bytes that are not UTF-8 in an INTEGER column"),
    # --- text: any text column ---------------------------------------------------------------------
    _text("text_empty", ""),
    _text("text_whitespace", " \t  \t "),
    _text("text_nul", "Pain\x00Clinic", note="a NUL byte inside text"),
    _text("text_control", "Knee\x07 pain\x1b[31m\x7f", note="bell, escape sequence, DEL"),
    _text("text_newlines", "line one\r\nline two\rline\u2028three", note="CR, CRLF, U+2028"),
    _text("text_invalid_utf8", b"\xff\xfe\xfd not utf8 \xc3\x28", note="BLOB in a TEXT column, not UTF-8"),
    _text("text_surrogate_bytes", b"Mu\xed\xa0\x80ller", note="a UTF-8-encoded surrogate: invalid UTF-8"),
    _text("text_overlong_utf8", b"C:\xc0\xafdocs", note="an overlong UTF-8 sequence"),
    _text("text_utf16", "Schmidt".encode("utf-16"), note="UTF-16 with BOM: NUL bytes in every other place"),
    _text("text_cp1252", b"\x93O\x92Brien\x94 \x96 caf\xe9", note="cp1252 smart quotes, dash, Latin-1"),
    _text("text_latin1", b"Mu\xf1oz G\xf6\xdfler", note="Latin-1 bytes"),
    _text("text_mojibake", "MÃ¼ller-GarcÃ\xada", note="UTF-8 read as cp1252, stored again"),
    _text("text_double_mojibake", "MÃƒÂ¼ller", note="mojibake twice over"),
    _text("text_huge", _HUGE_TEXT, huge=True, note="10 MB in one cell"),
    _text("text_emoji", "Pain \U0001f62d\U0001f3e5\u2764\ufe0f", note="emoji: astral code points, ZWJ"),
    _text(
        "text_astral", "\U0001d4d9\U0001d4f8\U0001d4f1\U0001d4f7 \U0002070e", note="math letters, CJK ext B"
    ),
    _text("text_combining", "Zo\u0065\u0301 Z\u0336\u0321a\u0338l\u0337g\u0335o", note="combining marks"),
    _text("text_bidi", "\u202eTNEITAP\u202c ok", note="U+202E right-to-left override"),
    _text("text_homoglyph", "J\u043ehn Sm\u0456th", note="Cyrillic о and і among Latin letters"),
    _text("text_zero_width", "\ufeffJo\u200bhn\u200d", note="BOM, zero-width space and joiner"),
    _text("text_nbsp", "\u00a0Smith\u00a0\u3000", note="no-break and ideographic spaces"),
    _text("text_noncharacter", "Smith\uffff\ufffe", note="Unicode noncharacters"),
    _text("text_sql_injection", "Robert'); DROP TABLE patients;--", note="SQL injection"),
    _text("text_html", "<script>alert('x')</script>", note="HTML/script injection (the HTML report)"),
    _text("text_csv_injection", "=cmd|' /C calc'!A0", note="CSV/spreadsheet formula injection"),
    _text("text_format_string", "%s%n%(x)s {0} ${jndi:ldap://x}", note="printf/format/log4j templates"),
    _text("text_token_na", "N/A"),
    _text("text_token_null", "NULL"),
    _text("text_token_none", "none"),
    _text("text_token_question", "?"),
    _text("text_token_dash", "-"),
    _text("text_token_tbd", "TBD"),
    _text("text_token_unknown", "unknown"),
    _text("text_padded", "  Smith  ", derive=_padded, note="the value with leading/trailing spaces"),
    _text("text_integer", 12345, note="an INTEGER in a TEXT column (SQLite: TEXT '12345')"),
    _text("text_real", 1e20, note="a REAL in a TEXT column (SQLite: TEXT '1.0e+20')"),
    # --- dates and timestamps ------------------------------------------------------------------------
    _text("date_zero", "0000-00-00", "date", note="MySQL's zero date"),
    _text("date_feb30", "02/30/2020", "date"),
    _text("date_feb29_nonleap", "02/29/2019", "date"),
    _text("date_month13", "13/01/2020", "date", note="day-first, or a month 13"),
    _text("date_day_first", "31/12/2020", "date", note="DD/MM/YYYY"),
    _text("date_dotted", "31.12.2020", "date"),
    _text("date_1899", "1899-12-31", "date", note="the 'no date' of old Windows tools"),
    _text("date_9999", "9999-12-31", "date", note="'open-ended'"),
    _text("date_next_year", f"{_NEXT_YEAR}-03-15", "date", note="after the run's as-of date"),
    _text("date_two_digit_year", "03/01/25", "date", note="2025 or 1925"),
    _text("date_excel_serial", "43831", "date", note="an Excel serial day (2020-01-01)"),
    _text("date_epoch_seconds", "1577836800", "date"),
    _text("date_epoch_millis", "1577836800000", "date"),
    _text("date_word", "yesterday", "date"),
    _text("date_iso_tz", "2020-01-01T23:30:00+05:30", "date", note="ISO 8601 with an offset"),
    _text("date_iso_zulu", "2020-01-01T00:00:00.000Z", "date"),
    _text("date_out_of_range", "2020-99-99", "date"),
    _text("date_year_five_digits", "20200-01-01", "date"),
    _text("date_negative_year", "-0001-01-01", "date"),
    _text("date_year_only", "2020", "date"),
    _text("date_huge_number", "99999999999999999999", "date"),
    _text("date_time_only", "25:61:00", "date", note="an impossible time, no date"),
    # --- money ----------------------------------------------------------------------------------------
    _text("money_overflow_exp", "1e309", "money", note="beyond a double"),
    _text("money_nan", "NaN", "money"),
    _text("money_infinity", "Infinity", "money"),
    _text("money_negative_zero", "-0", "money"),
    _text("money_bad_grouping", "$1,2,3", "money"),
    _text("money_parenthesised", "(12.00)", "money", note="accountant's negative"),
    _text("money_three_decimals", "12.345", "money", note="a fraction of a cent"),
    _text("money_huge", "999999999999999999999999.99", "money", note="beyond int64 cents"),
    _text("money_exponent", "1.5e3", "money"),
    _text("money_decimal_comma", "12,50 €", "money"),
    _text("money_double_minus", "--5.00", "money"),
    _text("money_words", "twelve dollars", "money"),
    _text("money_float_real", 0.1 + 0.2, "money", note="a binary float in a TEXT column"),
    # --- small whole numbers (minutes, units, sequence, scores) --------------------------------------
    _text("number_negative", "-5", "number"),
    _text("number_fraction", "2.5", "number"),
    _text("number_huge", "99999999999999999999", "number", note="beyond int64"),
    _text("number_beyond_int16", "70000", "number", note="beyond a smallint target column"),
    _text("number_with_unit", "30 min", "number"),
    _text("number_words", "three", "number"),
    _text("number_nan", "nan", "number"),
    _text("number_infinity", "inf", "number"),
    # --- codes (status, types, CPT/ICD, state, sex, flags) -------------------------------------------
    _text("code_lower", "pt", "code", derive=_lower, note="the code in lower case"),
    _text("code_padded", "  PT  ", "code", derive=_padded, note="the code with spaces"),
    _text("code_unknown", "ZQX", "code", note="not in any code table"),
    _text("code_numeric", "7", "code", note="a numeric code of an older version"),
    _text("code_long", "Q" * 300, "code"),
    # --- person and organisation names ----------------------------------------------------------------
    _text("name_comma_only", ",", "name"),
    _text("name_many_commas", "SMITH,, JOHN,", "name"),
    _text("name_single_token", "Cher", "name"),
    _text("name_suffix", "SMITH JR, JOHN", "name", note="the suffix inside the family part"),
    _text("name_digits", "J0HN SM1TH", "name"),
    _text("name_title_only", "Dr.", "name"),
    _text("name_long", "Abcdefghij" * 40, "name", note="400 characters"),
    # --- phones ---------------------------------------------------------------------------------------
    _text("phone_letters", "1-800-FLOWERS", "phone"),
    _text("phone_extension_long", "555-010-0199 ext. 123456789", "phone"),
    _text("phone_too_long", "+1 555 010 0199 8901", "phone"),
    _text("phone_international", "+44 20 7946 0958", "phone"),
    _text("phone_zeros", "000-000-0000", "phone"),
    _text("phone_short", "12345", "phone"),
    # --- identifiers kept as text (SSN, NPI, MRN, member and group numbers) --------------------------
    _text("ident_excel_scientific", "1.23457E+09", "identifier", note="a spreadsheet round trip"),
    _text("ident_all_zeros", "0000000000", "identifier"),
    _text("ident_too_long", "12345678901234567890123", "identifier"),
    # --- blobs ----------------------------------------------------------------------------------------
    Hostile("blob_empty", "blob", "blob", b""),
    Hostile("blob_text", "blob", "blob", "not a PDF, just text", note="TEXT in a BLOB column"),
    Hostile("blob_nul", "blob", "blob", b"\x00" * 64),
    Hostile("blob_integer", "blob", "blob", 42, note="an INTEGER in a BLOB column"),
    Hostile("blob_real", "blob", "blob", 2.5, note="a REAL in a BLOB column"),
    Hostile("blob_huge", "blob", "blob", _HUGE_BLOB, huge=True, note="10 MB"),
)
"""Every hostile value, ids first."""

KINDS: dict[str, Hostile] = {h.kind: h for h in CATALOGUE}
if len(KINDS) != len(CATALOGUE):  # pragma: no cover - a duplicated kind is a typo
    raise ValueError("hostile: duplicate kind")


def _meaning(meaning: Meaning, columns: str) -> dict[str, Meaning]:
    return dict.fromkeys(columns.split(), meaning)


COLUMN_MEANINGS: dict[str, Meaning] = {
    **_meaning(
        "date",
        "dob created modified eff_date term_date referral_date start_date discharge_date end_date"
        " cert_date recert_date appt_time visit_date signed_date measured_on posted paid_on noted stop_date",
    ),
    "amount": "money",
    **_meaning(
        "number", "priority visits_authorized visits_used duration_weeks frequency minutes units seq score"
    ),
    **_meaning(
        "code",
        "state zip sex credential payer_type status note_type kind doc_type mime dx_code icd_code"
        " dx_codes cpt_code cpt_text modifiers measure tz active reopened severity med_status prec_code",
    ),
    **_meaning("name", "clinic_name prov_name phys_name payer_name pat_name emerg_contact"),
    **_meaning("phone", "phone fax home_phone cell_phone emerg_phone"),
    **_meaning("identifier", "npi ssn mrn member_id group_no certified_by"),
}
"""Text columns by what the mapping reads them as (:mod:`cutover.mapping.specs`); any other text
column is free text."""


def column_meaning(table: str, column: str) -> Meaning:
    """What a legacy column holds."""
    kind = LEGACY_TABLES[table].column_type(column)
    if kind == "int":
        return "id"
    if kind == "blob":
        return "blob"
    return COLUMN_MEANINGS.get(column, "free_text")


def kinds_for(table: str, column: str, *, key_legal_only: bool = False) -> tuple[Hostile, ...]:
    """The hostile values that fit a legacy column: its type's generic ones and its meaning's.

    A table's key column gets only ``key_legal`` values when ``key_legal_only``.
    """
    meaning = column_meaning(table, column)
    column_type = LEGACY_TABLES[table].column_type(column)
    return tuple(
        h
        for h in CATALOGUE
        if h.column_type == column_type
        and h.meaning in (None, meaning)
        and (h.key_legal or not key_legal_only)
    )


def _sqlite_file(url_or_path: str | Path) -> Path:
    text = str(url_or_path)
    if "://" in text:
        from cutover.simulate.writers import dialect_of, sqlite_path

        if dialect_of(text) != "sqlite":
            raise ConfigError("corrupt: only a SQLite legacy database can be corrupted")
        return sqlite_path(text)
    return Path(text)


def _quote(name: str) -> str:
    return f'"{name}"'


def corrupt(
    url_or_sqlite_path: str | Path,
    *,
    rate: float,
    seed: int,
    tables: Iterable[str] | None = None,
    columns: Iterable[str] | None = None,
    huge_limit: int = 2,
) -> list[dict[str, Any]]:
    """Overwrite a share of a SQLite legacy database's cells with hostile values that fit each column.

    For every (table, column) chosen — ``tables`` by name, ``columns`` by name or ``table.column``;
    every one by default — ``max(1, round(rate * rows))`` rows are picked (none when ``rate`` is 0)
    and each gets a kind drawn from :func:`kinds_for`. The same database, rate and seed give the same
    result. A table's key column takes only ``key_legal`` values, and only values no other row holds
    (a row is left alone when none is left), so the file stays a valid SQLite database; its key is
    replaced first, and the other columns' records name the new key. At most ``huge_limit`` cells
    get a megabyte value.

    Returns one record per replaced cell: ``table``, ``column``, ``legacy_id`` (the row's key after
    the change), ``kind``, and for a replaced key ``original_id``. Ids and kinds only, never values.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"corrupt: rate must be within 0 and 1, got {rate}")
    path = _sqlite_file(url_or_sqlite_path)
    if not path.is_file():
        raise ConfigError("corrupt: the SQLite legacy database does not exist")
    chosen_tables = list(LEGACY_TABLES) if tables is None else list(tables)
    unknown = [t for t in chosen_tables if t not in LEGACY_TABLES]
    if unknown:
        raise ConfigError(f"corrupt: unknown legacy tables {unknown}")
    wanted = None if columns is None else set(columns)
    records: list[dict[str, Any]] = []
    huge_left = huge_limit
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.text_factory = bytes
        conn.execute("BEGIN")
        try:
            for table in chosen_tables:
                spec = LEGACY_TABLES[table]
                # the key first: the other columns' records then name the key the row ends with
                names = [spec.key, *(c for c in spec.column_names if c != spec.key)]
                for column in names:
                    if wanted is not None and column not in wanted and f"{table}.{column}" not in wanted:
                        continue
                    found, huge_left = _corrupt_column(conn, table, column, rate, seed, huge_left)
                    records += found
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return records


def _corrupt_column(
    conn: sqlite3.Connection, table: str, column: str, rate: float, seed: int, huge_left: int
) -> tuple[list[dict[str, Any]], int]:
    key = LEGACY_TABLES[table].key
    is_key = column == key
    rows = conn.execute(f"SELECT {_quote(key)}, {_quote(column)} FROM {_quote(table)} ORDER BY 1").fetchall()
    if not rows or rate == 0:
        return [], huge_left
    rng = random.Random(f"{seed}:{table}:{column}")
    picked = sorted(rng.sample(range(len(rows)), max(1, round(rate * len(rows)))))
    kinds = kinds_for(table, column, key_legal_only=is_key)
    used_keys = {k for k, _ in rows} if is_key else set()
    records: list[dict[str, Any]] = []
    for i in picked:
        legacy_id, current = rows[i]
        choices = [h for h in kinds if huge_left > 0 or not h.huge]
        hostile = choices[rng.randrange(len(choices))]
        value = hostile.value_for(current)
        if is_key:
            fresh = [h for h in kinds if h.value_for(current) not in used_keys]
            if not fresh:
                continue
            if value in used_keys:
                hostile = fresh[rng.randrange(len(fresh))]
                value = hostile.value_for(current)
            used_keys.add(value)
        huge_left -= hostile.huge
        conn.execute(
            f"UPDATE {_quote(table)} SET {_quote(column)} = ? WHERE {_quote(key)} = ?", (value, legacy_id)
        )
        record = {"table": table, "column": column, "legacy_id": value if is_key else legacy_id}
        if is_key:
            record["original_id"] = legacy_id
        records.append({**record, "kind": hostile.kind})
    return records, huge_left
