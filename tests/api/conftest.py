"""Fixtures: a genesis'd SQLite ledger, the app over it, a TestClient, the world."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; RemoteStore is built on httpx,
    # so the tests keep httpx (the TestClient is passed to RemoteStore as its client).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from ledger.store.sql import SqlStore
from tests.api import world as w


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore.open(f"sqlite:///{tmp_path}/ledger.db", signer=w.log_signer(),
                      clock=w.now_ms, create=True)
    w.genesis(s)
    yield s
    s.close()


@pytest.fixture
def app(store: SqlStore, tmp_path: Path) -> FastAPI:
    return create_app(store, evidence_dir=tmp_path / "evidence")


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def world(client: TestClient) -> w.World:
    return w.build(w.World(str(client.base_url), client=client))
