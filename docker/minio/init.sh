#!/bin/sh
# One-shot set-up of the local S3 staging store, run by the `minio-init` service (MinIO client image,
# which has a POSIX shell and coreutils but no grep or sed: this script uses neither).
#
# 1. The staging bucket, created with object lock (which also turns versioning on): a staged
#    Parquet part cannot be overwritten or destroyed while it is retained, so what was loaded is
#    provably what was staged.
# 2. A default retention on every new object version (mode and days from the environment).
# 3. Default encryption at rest, SSE-S3 (MinIO's KMS key comes from MINIO_KMS_SECRET_KEY).
# 4. The pipeline's own user, whose policy reaches this bucket only and holds no right to delete a
#    version, bypass a governance lock or change the bucket's configuration. The root account is
#    used here and nowhere else.
#
# Idempotent. An existing bucket made without object lock is refused, since a lock cannot be
# added afterwards: the stack stops here rather than stage PHI in an unprotected bucket.
set -eu

: "${MINIO_ENDPOINT:=http://minio:9000}"
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${S3_BUCKET:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
: "${STAGING_RETENTION_MODE:?}" "${STAGING_RETENTION_DAYS:?}"

bucket="local/${S3_BUCKET}"
policy_name="cutover-staging"
policy_file="${TMPDIR:-/tmp}/${policy_name}-policy.json"

mc alias set local "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing --with-lock "$bucket"
# Fails on a bucket without object lock (see above), which fails this service and so the stack.
mc retention set --default "$STAGING_RETENTION_MODE" "${STAGING_RETENTION_DAYS}d" "$bucket"
mc encrypt set sse-s3 "$bucket"

# Object-level rights cover what cutover.staging.store.S3Store calls: put with a retention and a
# checksum, get, head, list, and delete (which, in a versioned bucket, only adds a delete marker).
cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "s3:GetBucketLocation",
        "s3:GetBucketObjectLockConfiguration",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads"
      ],
      "Resource": ["arn:aws:s3:::${S3_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:GetObjectRetention",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
        "s3:PutObjectRetention"
      ],
      "Resource": ["arn:aws:s3:::${S3_BUCKET}/*"]
    }
  ]
}
JSON
mc admin policy create local "$policy_name" "$policy_file"
mc admin user add local "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# `attach` refuses a policy that is already attached; accept that case, and only that one.
if ! mc admin policy attach local "$policy_name" --user "$S3_ACCESS_KEY" >/dev/null 2>&1; then
  case "$(mc admin user info local "$S3_ACCESS_KEY")" in
    *"$policy_name"*) ;;
    *) echo "minio-init: could not attach policy $policy_name to the pipeline user" >&2; exit 1 ;;
  esac
fi
rm -f "$policy_file"

echo "minio-init: bucket ${S3_BUCKET} ready (object lock, ${STAGING_RETENTION_MODE} ${STAGING_RETENTION_DAYS}d, SSE-S3), pipeline user has policy ${policy_name}"
