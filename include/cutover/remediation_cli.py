"""``cutover remediation``: the worklist, corrections and acceptances of :mod:`cutover.remediation`.

A corrected value is read from standard input (never the command line, which a shell's history
keeps), without echo at a terminal; what is printed is ids, column names, codes and people only.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from cutover.config import configured_url
from cutover.errors import ConfigError


def _store(url: str) -> Any:
    from cutover.staging.store import open_store

    return open_store(url)


def _urls() -> tuple[str, str]:
    from cutover.embedded import default_url

    target = configured_url("target_db") or default_url("target_db")
    store = configured_url("staging_store") or default_url("staging_store")
    return target, store


def _value(args: argparse.Namespace) -> str | None:
    if args.null:
        return None
    if sys.stdin.isatty():
        return getpass.getpass(f"corrected value of {args.table}.{args.column} for {args.legacy_id}: ")
    line = sys.stdin.readline()
    if not line:
        raise ConfigError("no corrected value on standard input (or pass --null for NULL)")
    return line.rstrip("\r\n")


def cmd_worklist(args: argparse.Namespace) -> int:
    from cutover import remediation

    target, _ = _urls()
    rows = remediation.worklist(target)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'table':<16} {'legacy id':<12} {'field':<22} {'reason':<24} {'dependants':>10}  status     since run"
    )
    for r in rows:
        print(
            f"{r['legacy_table']:<16} {r['legacy_id']:<12} {r['field'] or '-':<22} {r['reason']:<24} "
            f"{r['dependants']:>10}  {r['status']:<10} {r['opened_run'] or '-'}"
            + (f" (by {r['decided_by']})" if r["decided_by"] else "")
        )
    print(f"{sum(r['status'] == 'open' for r in rows)} open, {len(rows)} listed")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    from cutover import remediation
    from cutover.audit import os_user

    target, store_url = _urls()
    entries = [(args.table, args.legacy_id, args.column, _value(args))]
    remediation.correct(target, _store(store_url), entries, actor=os_user())
    print(f"corrected {args.table} {args.legacy_id} {args.column}; run pt_remediate to carry it")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from cutover import remediation
    from cutover.audit import os_user

    target, store_url = _urls()
    entries = remediation.read_corrections_csv(Path(args.file))
    done = remediation.correct(target, _store(store_url), entries, actor=os_user())
    print(f"recorded {len(done)} correction(s) from {args.file}; run pt_remediate to carry them")
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from cutover import remediation
    from cutover.audit import os_user

    target, _ = _urls()
    remediation.accept(target, args.table, args.legacy_id, note=args.note, actor=os_user())
    print(f"accepted {args.table} {args.legacy_id} as not carried ({args.note}), by {os_user()}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from cutover import remediation
    from cutover.audit import os_user

    target, _ = _urls()
    remediation.decide(target, args.table, args.left_id, args.right_id, args.decision, actor=os_user())
    print(f"decided {args.table} {args.left_id} and {args.right_id}: {args.decision}, by {os_user()}")
    return 0


def cmd_corrections(args: argparse.Namespace) -> int:
    from cutover import remediation

    _, store_url = _urls()
    rows = [
        {"legacy_table": c.legacy_table, "legacy_id": c.legacy_id, "column": c.column, "by": c.by, "at": c.at}
        for c in remediation.load_corrections(_store(store_url))
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['legacy_table']:<16} {r['legacy_id']:<12} {r['column']:<22} {r['by']:<16} {r['at']}")
    print(f"{len(rows)} correction(s) (values are sealed in the staging store)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    rm = sub.add_parser("remediation", help="rejected rows: the worklist, corrections, acceptances")
    rsub = rm.add_subparsers(dest="remediation_command", required=True)
    w = rsub.add_parser("worklist", help="root rejects not yet closed, the most costly first (ids only)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_worklist)
    c = rsub.add_parser(
        "correct", help="correct one legacy value of a rejected row (the value is read from stdin)"
    )
    c.add_argument("table", help="legacy table")
    c.add_argument("legacy_id")
    c.add_argument("column", help="legacy column")
    c.add_argument("--null", action="store_true", help="correct the value to NULL")
    c.set_defaults(func=cmd_correct)
    i = rsub.add_parser("import", help="record corrections from a CSV: legacy_table,legacy_id,column,value")
    i.add_argument("file")
    i.set_defaults(func=cmd_import)
    a = rsub.add_parser("accept", help="accept a rejected row as not carried, with a reason code")
    a.add_argument("table", help="legacy table")
    a.add_argument("legacy_id")
    a.add_argument("--note", required=True, help="why, as a lower-case code (e.g. test_patient)")
    a.set_defaults(func=cmd_accept)
    dd = rsub.add_parser(
        "decide", help="decide an ambiguous duplicate pair (duplicate_review.csv): same or different"
    )
    dd.add_argument("table", help="legacy table (the patients)")
    dd.add_argument("left_id")
    dd.add_argument("right_id")
    dd.add_argument("decision", choices=("same", "different"))
    dd.set_defaults(func=cmd_decide)
    ls = rsub.add_parser("corrections", help="the recorded corrections: ids, columns, who and when")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_corrections)
    for command in rsub.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
