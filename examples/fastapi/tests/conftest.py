"""Fixtures shared by the API and page tests: the service started with uvicorn on a free port
(a real HTTP server over the database at DATABASE_URL), an HTTP client, and the test data found
in the database rather than assumed, so the tests also run against an existing database
(README.md, "Tests"). Interactions the tests record are deleted again at the end."""
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def service(env=None, ready="/health", timeout=30.0):
    """Runs `uvicorn app:app` with `env` over the environment; yields its base URL once `ready`
    answers 200 (or, with ready=None, once it answers at all)."""
    port = free_port()
    # Every connection aggregates trending afresh: with the per-backend cache (10 s by default)
    # two pooled connections may disagree on the popularity signal for a few seconds after an
    # interaction, and the tests compare answers served by different connections.
    env = {"PGOPTIONS": (os.environ.get("PGOPTIONS", "") + " -c recsys.trending_cache_seconds=0").strip(), **(env or {})}
    log = tempfile.NamedTemporaryFile(prefix="fastapi-service-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=HERE, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + timeout
        while True:
            try:
                r = httpx.get(url + (ready or "/metrics"), timeout=5)
                if ready is None or r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > end:
                raise AssertionError(f"service did not come up; its log:\n{open(log.name).read()[-4000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(log.name)


@pytest.fixture(scope="session")
def server():
    with service() as url:
        yield url


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def db():
    with psycopg.connect(DATABASE_URL, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture(scope="session")
def written(db):
    """(username, post_id, kind) of every interaction a test records; deleted at the end, so a
    run against an existing database leaves its interactions as they were."""
    since = db.execute("SELECT now() AS t").fetchone()["t"]
    rows = []
    yield rows
    for username, post_id, kind in rows:
        db.execute("""DELETE FROM interactions i USING users u WHERE i.user_id = u.id AND u.username = %s
                      AND i.post_id = %s AND i.kind = %s AND i.created_at >= %s""", (username, post_id, kind, since))


@pytest.fixture
def interact(client, written):
    def record(username, post_id, kind="like"):
        written.append((username, post_id, kind))
        return client.post("/interaction", json={"username": username, "post_id": post_id, "interaction_type": kind})
    return record


@pytest.fixture(scope="session")
def data(db):
    """What the tests need, read from the database: three active users (one per test that
    interacts, so their feeds do not disturb each other), a user with no history if there is
    one, and ids no user or post has."""
    active = db.execute("""SELECT u.id, u.username FROM users u JOIN interactions i ON i.user_id = u.id
                           WHERE u.username IS NOT NULL GROUP BY u.id, u.username
                           ORDER BY count(*) DESC, u.username LIMIT 3""").fetchall()
    assert len(active) == 3, "the tests need at least three users with interactions"
    newcomer = db.execute("""SELECT username FROM users u WHERE username IS NOT NULL
                             AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.user_id = u.id)
                             ORDER BY id LIMIT 1""").fetchone()
    unknown_user_id = db.execute("""SELECT greatest((SELECT max(id) FROM users), (SELECT max(user_id) FROM interactions),
                                                    (SELECT max(follower_id) FROM follows), 0) + 1000003 AS id""").fetchone()["id"]
    unknown_post = db.execute("SELECT coalesce(max(id), 0) + 1000003 AS id FROM posts").fetchone()["id"]
    return {"users": [r["username"] for r in active], "user_ids": [r["id"] for r in active],
            "newcomer": newcomer and newcomer["username"], "unknown_user_id": unknown_user_id,
            "unknown_username": f"nobody-{uuid.uuid4().hex[:10]}", "unknown_post": unknown_post}
