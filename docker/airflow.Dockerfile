# syntax=docker/dockerfile:1
#
# The Airflow image of the Cutover stack (docker-compose.yaml builds it; context = repository root).
#
# - FROM the official image at the apache-airflow version pinned in requirements.txt
#   (tests/unit/test_compose.py fails when the two drift apart).
# - Cutover's runtime dependencies: the part of requirements.txt above its "# test and lint" line,
#   installed with requirements.lock as constraints, so the image runs the versions the test suite ran.
# - The cutover package, installed editable from /opt/cutover, whose include/ is a link to
#   /opt/airflow/include: the image works on its own, and the compose file's ./include mount
#   replaces the baked-in code with the working tree without a rebuild.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN install -d -o airflow -g 0 -m 0775 /opt/cutover /opt/cutover/docker \
 && install -d -o airflow -g 0 -m 0770 /opt/airflow/state
USER airflow

COPY --chown=airflow:0 requirements.txt requirements.lock /opt/cutover/
RUN sed '/^# test and lint/,$d' /opt/cutover/requirements.txt > /opt/cutover/requirements-runtime.txt \
 && pip install --no-cache-dir \
      "apache-airflow==${AIRFLOW_VERSION}" \
      -r /opt/cutover/requirements-runtime.txt \
      -c /opt/cutover/requirements.lock

COPY --chown=airflow:0 pyproject.toml /opt/cutover/
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 docker/airflow-init.sh /opt/cutover/docker/airflow-init.sh
# The import check fails the build, not the cutover weekend, when the constraints broke a
# component the stack runs (Celery executor, FAB auth manager, both PostgreSQL drivers).
RUN ln -s /opt/airflow/include /opt/cutover/include \
 && pip install --no-cache-dir --no-deps -e /opt/cutover \
 && python -c "import cutover.config, airflow.providers.celery, airflow.providers.fab, psycopg2, psycopg, boto3"

ENV CUTOVER_HOME=/opt/airflow/state
