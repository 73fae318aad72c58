#!/usr/bin/env bash
# One-shot initialisation of the Airflow metadata database and the cutover roles, run by the `airflow-init` service
# before any other Airflow component starts (they wait for it with service_completed_successfully).
#
# Idempotent: `airflow db migrate` applies only missing migrations, and `airflow users create`
# leaves an existing user as it is. Prints names and outcomes, never a secret.
set -euo pipefail

# A malformed Fernet key would surface much later, as a failure to read a connection or a
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

airflow db migrate

# The cutover roles (DataEngineer triggers, Operator clears and retries, Auditor reads), exactly as
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
