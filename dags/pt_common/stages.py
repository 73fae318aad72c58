"""The stages a cutover and its trial run share: extract → map → load, as Airflow tasks.

``pt_cutover`` loads into ``target_db``; ``pt_sample_transfer`` into its scratch database on the
same server. Tasks pass manifests of ids, keys and counts; the rows travel through the staging store.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from airflow.sdk import get_current_context, task, task_group

from pt_common import conn_url, legacy_url, parsed_tables, run_actor

# Parse time stays light: the profile's tables are plain data; the mapping (pandas, Arrow) loads in tasks.
PARENTS = parsed_tables()
TABLES = list(PARENTS)

Target = Literal["target", "scratch"]


def target_url(target: Target, run_id: str) -> str:
    """The database a stage writes to (the scratch one is named after the run, never passed in XCom)."""
    url = conn_url("target_db")
    if target == "scratch":
        from cutover.sample import scratch_url

        return scratch_url(url, run_id)
    return url


def owner_url() -> str:
    """The target schemas' owner (connection ``target_owner_db``) for DDL — migrations, rollback
    snapshots — so ``target_db`` can be a least-privilege loader; ``target_db`` when it is not set."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return conn_url("target_owner_db")
    except AirflowNotFoundException:
        return conn_url("target_db")


def reject_rate(params: dict | None) -> float | None:
    """The run's ``max_reject_rate`` parameter, or None: the reject policy file's default."""
    limit = (params or {}).get("max_reject_rate")
    return None if limit is None else float(limit)


def as_of() -> Any:
    """The run's logical date (a run triggered without one, as Airflow 3 allows, maps as of its run_after)."""
    run = get_current_context()["dag_run"]
    return (run.logical_date or run.run_after).date()


def held(target: Target, run_id: str) -> Any:
    """The run holds the target while a task works for it; another run holding it refuses the task."""
    from cutover.runs import hold_lock

    return hold_lock(target_url(target, run_id), run_id)


@task(map_index_template="{{ table }}")
def extract_table(table: str, target: Target = "target", run_id: str | None = None) -> dict:
    from cutover.pipeline import extract_table as extract

    with held(target, str(run_id)):
        return dict(extract(legacy_url(str(run_id)), conn_url("staging_store"), str(run_id), table))


@task(map_index_template="{{ manifest['table'] }}")
def map_table(manifest: dict, target: Target = "target", run_id: str | None = None) -> dict:
    from cutover.pipeline import map_table as map_rows

    with held(target, str(run_id)):
        return dict(map_rows(conn_url("staging_store"), str(run_id), manifest["table"], as_of=as_of()))


def ddl_url(target: Target, run_id: str) -> str:
    """Who may change the schema where a stage writes: the owner of the target, and of the scratch,
    which the owner creates (``create_scratch_target``)."""
    if target == "scratch":
        from cutover.sample import scratch_url

        return scratch_url(owner_url(), run_id)
    return owner_url()


@task
def defer_constraints(target: Target = "target", run_id: str | None = None) -> dict:
    """A first load into an empty target: foreign keys and secondary indexes aside until the last batch."""
    from cutover.loading.bulk import defer_constraints as defer

    with held(target, str(run_id)):
        return dict(defer(ddl_url(target, str(run_id)), str(run_id)))


@task(trigger_rule="all_done")
def restore_constraints(target: Target = "target", run_id: str | None = None) -> dict:
    """Put every set-aside constraint back, whether the load succeeded or not (all_done)."""
    from cutover.loading.bulk import restore_constraints as restore

    return dict(restore(ddl_url(target, str(run_id)), str(run_id)))


class LoadStage(NamedTuple):
    """``start`` → ``tables`` → ``done``: what follows a load waits for ``tables`` *and* ``done``, since
    ``done`` (the constraints' restore) also runs after a failed batch."""

    start: Any
    tables: Any
    done: Any


def load_tables(target: Target) -> LoadStage:
    """Constraints aside on a first load; one group per table, parents before children, within a
    table one mapped task per staged batch; the constraints back."""

    @task_group(group_id="load")
    def load() -> None:
        groups: dict[str, Any] = {}
        for table in TABLES:

            @task_group(group_id=table)
            def load_table(table: str = table) -> None:
                @task
                def list_batches(table: str, run_id: str | None = None) -> list[int]:
                    from cutover.pipeline import mapped_batches

                    return mapped_batches(conn_url("staging_store"), str(run_id), table)

                @task(map_index_template="{{ table }} #{{ batch_no }}")
                def load_batch(table: str, batch_no: int, run_id: str | None = None) -> dict:
                    from cutover.pipeline import load_mapped

                    with held(target, str(run_id)):
                        return load_mapped(
                            target_url(target, str(run_id)),
                            conn_url("staging_store"),
                            str(run_id),
                            table,
                            [batch_no],
                        )

                load_batch.partial(table=table).expand(batch_no=list_batches(table))

            groups[table] = load_table()
        for table, group in groups.items():
            for parent in {p for p in PARENTS[table] if p in groups}:
                groups[parent] >> group

    start, tables, done = defer_constraints(target), load(), restore_constraints(target)
    start >> tables >> done
    return LoadStage(start, tables, done)


@task
def validate_gate(
    gate: str, target: Target = "target", strict: bool = True, run_id: str | None = None
) -> dict:
    """A GX gate: ``extract`` and ``mapped`` check the staged Parquet, ``target`` the loaded database."""
    from cutover.pipeline import validate_gate as validate

    url = target_url(target, str(run_id)) if gate == "target" else None
    with held(target, str(run_id)):
        return validate(gate, conn_url("staging_store"), str(run_id), target_url=url, raise_on_failure=strict)


@task
def gate_rejects(
    target: Target = "target", strict: bool = True, run_id: str | None = None, params: dict | None = None
) -> dict:
    """Before any write: a resumed run's loaded batches still match the legacy data, and the reject
    policy holds for what the load would reject (from the staged rows)."""
    from cutover.pipeline import gate_rejects as check
    from cutover.resume import check_resume

    with held(target, str(run_id)):
        if target == "target":  # a resumed run: the batches it loaded before the kill must still be current
            check_resume(
                target_url(target, str(run_id)),
                conn_url("staging_store"),
                str(run_id),
                reload_changed=bool((params or {}).get("reload_changed")),
                actor=run_actor(),
            )
        return check(
            conn_url("staging_store"),
            str(run_id),
            target_url=target_url(target, str(run_id)),
            max_reject_rate=reject_rate(params),
            raise_on_failure=strict,
        )


@task
def end_run(dag_id: str, run_id: str | None = None) -> str:
    """The run's teardown (also after a failure): the target is free again; a run still ``running``
    here ends ``failed`` when one of its tasks failed, else ``success`` (a dry run)."""
    from cutover.runs import end_run as end

    try:
        states = get_current_context()["ti"].get_task_states(dag_id=dag_id, run_ids=[str(run_id)])
        failed = any(s in ("failed", "upstream_failed") for s in states.get(str(run_id), {}).values())
    except Exception:  # no task states to read: a run that did not end its own state did not succeed
        failed = True
    return end(target_url("target", str(run_id)), str(run_id), failed=failed)


def extract_map_load(target: Target, upstream: Any, *, strict: bool = True) -> tuple[Any, LoadStage, Any]:
    """extract_table[×tables] → gate_extract → map_table[×tables] → gate_mapped → gate_rejects → load.

    Returns (the last gate before the load, the load stage, the gates' results); the caller puts its
    own steps between that gate and the load. With ``strict`` off a failed gate is recorded, not raised.
    """
    extracts = extract_table.partial(target=target).expand(table=TABLES)
    upstream >> extracts
    extracted = validate_gate.override(task_id="gate_extract")("extract", target, strict)
    extracts >> extracted
    mapped = map_table.partial(target=target).expand(manifest=extracts)
    extracted >> mapped
    gated = validate_gate.override(task_id="gate_mapped")("mapped", target, strict)
    mapped >> gated
    rejects = gate_rejects(target, strict)
    gated >> rejects
    return rejects, load_tables(target), [extracted, gated, rejects]


@task
def take_delivery(run_id: str | None = None) -> dict:
    """A CSV delivery's files fetched once for the run, into the staging store with their SHA-256,
    sizes and counts (in the evidence: ``delivery.json``); nothing to do for a legacy database."""
    from cutover.legacy.delivery import take_for_run

    return dict(take_for_run(conn_url("legacy_db"), conn_url("staging_store"), str(run_id)))


@task
def check_configuration(
    legacy: bool = True,
    target: bool = True,
    store: bool = True,
    plan: bool = False,
    run_id: str | None = None,
) -> dict:
    """The DAG's first task: the legacy profile checked (and its tables those the DAG was parsed
    with), every connection it needs reachable, the plan valid if it uses it; a mistake fails here in
    one line, before anything is touched (:mod:`cutover.preflight`)."""
    from cutover.legacy.profile import selected
    from cutover.preflight import check_configuration as check

    return check(
        legacy_url=conn_url("legacy_db") if legacy else None,
        target_url=conn_url("target_db") if target else None,
        store_url=conn_url("staging_store") if store else None,
        plan=plan,
        profile_ref=selected(),
        parsed_tables=TABLES,
    )
