"""``python -m cutover.security provision-target``: the target's roles from their password files.

Provisions the target's owner and loader roles as the admin of ``CUTOVER_TARGET_ADMIN_URL``, with
the passwords of the files the connections' ``passfile`` names, then logs in through each connection
(:func:`cutover.security.provision.provision_target_from_secrets`). The compose stack's init job
runs it with ``--label airflow-init``. Prints one line either way, starting with the label: on
success the two roles, on a refusal what is wrong (exit status 1). Never a password.
"""

from __future__ import annotations

import argparse
import os
import sys

from cutover.errors import CutoverError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.security", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    target = commands.add_parser(
        "provision-target",
        help="the target's owner and loader roles, passwords from their connections' password files",
    )
    target.add_argument("--owner", default="target_owner_db", help="the owner's connection id")
    target.add_argument("--loader", default="target_db", help="the loader's connection id")
    target.add_argument(
        "--label", default="provision-target", help="what each printed line starts with (the caller's name)"
    )
    args = parser.parse_args(argv)

    from cutover.security.provision import provision_target_from_secrets

    try:
        roles = provision_target_from_secrets(os.environ, owner_conn=args.owner, loader_conn=args.loader)
    except CutoverError as exc:  # one line, naming the file or connection: never a password
        sys.stderr.write(f"{args.label}: {exc}\n")
        return 1
    sys.stdout.write(
        f"{args.label}: target roles {roles.owner} (owner) and {roles.loader} (loader) provisioned,"
        " both log in\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
