"""The test-owned PostgreSQL cluster: it starts, stops and restarts on its own port, keeping its data."""

from __future__ import annotations

import psycopg
import pytest

from tests.pgcluster import PgCluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


def _count(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=3) as connection:
        return int(connection.execute("SELECT count(*) FROM kept").fetchone()[0])  # type: ignore[index]


def test_cluster_keeps_its_data_across_stop_and_restart(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("faults")
    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (id int)")
        connection.execute("INSERT INTO kept VALUES (1), (2)")
    pg_cluster.stop()
    assert not pg_cluster.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=3)
    pg_cluster.start()
    assert _count(dsn) == 2
    pg_cluster.restart("immediate")
    assert _count(dsn) == 2
