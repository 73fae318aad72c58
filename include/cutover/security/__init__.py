"""Access control and transmission security for the pipeline's database connections.

``roles``: least-privilege database roles (target owner, target loader, legacy reader).
``tls``: TLS to PostgreSQL (``sslmode=verify-full``) and what a connection's transport is.
See docs/security.md for the operator's view.
"""

from __future__ import annotations

from cutover.security.roles import (
    ProvisionedRoles,
    TargetRoles,
    grant_loader,
    migrate_and_grant,
    provision_legacy_reader,
    provision_mariadb_reader,
    provision_postgres_reader,
    provision_roles,
    provision_target_roles,
    with_user,
)
from cutover.security.tls import ConnectionSecurity, connection_security, require_verified_tls, sslmode

__all__ = [
    "ConnectionSecurity",
    "ProvisionedRoles",
    "TargetRoles",
    "connection_security",
    "grant_loader",
    "migrate_and_grant",
    "provision_legacy_reader",
    "provision_mariadb_reader",
    "provision_postgres_reader",
    "provision_roles",
    "provision_target_roles",
    "require_verified_tls",
    "sslmode",
    "with_user",
]
