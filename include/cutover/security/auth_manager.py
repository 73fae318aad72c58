"""Airflow's FAB auth manager, with one rule FAB cannot express: who may not trigger a DAG may not
pause or unpause it either.

FAB grants pausing and clearing with one permission (edit on ``DAG:<id>``), so the Operator role,
which must clear and retry tasks, could unpause ``pt_cutover`` and so cause a scheduled run it may
not trigger. Here an edit of the DAG itself (the pause toggle, ``PATCH /api/v2/dags/<id>``) also
needs the right to trigger it (create on ``DAG Run:<id>``, the DataEngineer role's); clearing and
retrying (edits of the DAG's runs and task instances) are unchanged. Imported by the API server only
(``[core] auth_manager``), never at DAG parse time.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

TRIGGER_RESOURCE = "DAG Run:{}"
"""FAB's per-DAG trigger permission (create on it)."""


class CutoverAuthManager(FabAuthManager):
    """:class:`FabAuthManager` where pausing or unpausing a DAG needs the right to trigger it."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        allowed = super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
        if not allowed or access_entity is not None or method not in ("PUT", "PATCH", "DELETE"):
            return allowed
        dag_id = getattr(details, "id", None)
        if dag_id is None:  # every DAG at once: FAB already asked for edit on all DAGs
            return allowed
        return bool(
            self._is_authorized(method="POST", resource_type=TRIGGER_RESOURCE.format(dag_id), user=user)
        )
