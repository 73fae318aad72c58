"""Cutover: move a PT practice's records from legacy software into the new system, with proof.

The package never imports Airflow; the DAGs in ``dags/`` call into it.
"""

from __future__ import annotations

__version__ = "0.1.0"
