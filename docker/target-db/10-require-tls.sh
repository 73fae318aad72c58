#!/usr/bin/env bash
# Runs once, when the postgres image initialises an empty data folder for the target database
# (mounted into /docker-entrypoint-initdb.d; the entrypoint runs it as the postgres user).
#
# The target database holds every migrated chart, so connections to it over the network must be
# encrypted even inside the compose network: a self-signed certificate is made for this data
# folder (its key never leaves the volume), TLS is switched on, and pg_hba.conf accepts network
# logins over TLS only. Clients use sslmode=require here; against a real server, use verify-full
# with the server's CA (see docs/docker-compose.md).
set -euo pipefail

: "${PGDATA:?}"
cert_days="${TARGET_DB_CERT_DAYS:-825}"
host_name="${TARGET_DB_CERT_HOST:-target-db}"

openssl req -new -x509 -nodes -newkey rsa:3072 -sha256 -days "$cert_days" \
  -subj "/CN=${host_name}" -addext "subjectAltName=DNS:${host_name}" \
  -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" 2>/dev/null
chmod 600 "$PGDATA/server.key"

cat >> "$PGDATA/postgresql.conf" <<CONF

# Added by 10-require-tls.sh: network connections to the target database are TLS only.
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
CONF

# The image's entrypoint appended "host all all all <method>" for network logins: make it TLS-only,
# then reject every other non-TLS network login that a later line might let through.
hba="$PGDATA/pg_hba.conf"
tmp="$(mktemp)"
changed=0
while IFS= read -r line; do
  if [[ "$line" =~ ^host[[:space:]]+all[[:space:]]+all[[:space:]]+all[[:space:]] ]]; then
    line="hostssl${line#host}"
    changed=1
  fi
  printf '%s\n' "$line"
done < "$hba" > "$tmp"
if [[ "$changed" -ne 1 ]]; then
  echo "10-require-tls.sh: no 'host all all all' line in pg_hba.conf to restrict to TLS" >&2
  rm -f "$tmp"
  exit 1
fi
printf '%s\n' "hostnossl all all all reject" >> "$tmp"
cat "$tmp" > "$hba"
rm -f "$tmp"

echo "10-require-tls.sh: TLS on, network logins TLS-only, certificate for ${host_name} valid ${cert_days} days"
