#!/usr/bin/env bash
# One-shot initialisation, run by the `airflow-init` service before any other Airflow component starts
# (they wait for it with service_completed_successfully, so a failure here keeps the stack down):
#
#   1. the backup key (the `backup_key` secret) is present and well-formed
#   2. the Fernet key(s) are well-formed
#   3. the target database's least-privilege roles: the owner and the loader, with the passwords of
#      their password secrets, then a login as each through its Airflow connection
#   4. `airflow db migrate`, 5. the cutover roles in Airflow, 6. the admin user
#
# Idempotent: a second run converges the target roles (and their passwords: this is how a rotated
# secret takes effect), `airflow db migrate` applies only missing migrations, and `airflow users
# create` leaves an existing user as it is. Prints names and outcomes, never a secret; a failure is
# one line starting with "airflow-init:".
set -euo pipefail

# 1. Refuse to start without the key rather than fail the first backup of the cutover weekend: the
# same check as the first task needing it (cutover.config.key_text), so the same one line, naming
# the file and what is wrong with it.
python -c 'import sys; sys.excepthook = lambda kind, error, tb: print(f"airflow-init: {error}", file=sys.stderr); from cutover.config import key_text; key_text(); print("airflow-init: backup key present")'

# 2. A malformed Fernet key would surface much later, as a failure to read a connection or a
# variable in the middle of a run: check every key (comma-separated during a rotation) now.
python - <<'PY'
import os
import sys

from cryptography.fernet import Fernet

keys = [k.strip() for k in os.environ.get("AIRFLOW__CORE__FERNET_KEY", "").split(",") if k.strip()]
if not keys:
    sys.exit("airflow-init: AIRFLOW__CORE__FERNET_KEY is empty")
for number, key in enumerate(keys, start=1):
    try:
        Fernet(key)
    except ValueError:
        sys.exit(f"airflow-init: Fernet key {number} of {len(keys)} is not 32 url-safe base64-encoded bytes")
print(f"airflow-init: {len(keys)} Fernet key(s) valid")
PY

# 3. The target's roles: `provision_target_roles(...)` (cutover.security.roles, called by
# cutover.security.provision) as the admin of CUTOVER_TARGET_ADMIN_URL, which only this service gets;
# the roles named by the logins of target_owner_db and target_db. Each password is
# read from the file the connection's `passfile` names (a secret in libpq's password-file format), which
# is also how libpq finds it when a task connects: no password in the compose file, the environment
# or the image. Everything is checked before anything changes; the logins afterwards prove the tasks'
# connections work as configured (file readable, mode 0600, the password the server has).
python -m cutover.security provision-target --owner target_owner_db --loader target_db --label airflow-init

airflow db migrate

# 5. The cutover roles (DataEngineer triggers, Operator clears and retries, Auditor reads), exactly as
# `cutover airflow` has them; an admin gives people their role in Security → Users.
python -c "from cutover.local_airflow import sync_roles; sync_roles()"

airflow users create \
  --username "${AIRFLOW_ADMIN_USERNAME}" \
  --password "${AIRFLOW_ADMIN_PASSWORD}" \
  --email "${AIRFLOW_ADMIN_EMAIL}" \
  --firstname Cutover \
  --lastname Administrator \
  --role Admin

echo "airflow-init: metadata database migrated, admin user ${AIRFLOW_ADMIN_USERNAME} present"
