"""A small FastAPI service over pg_recsys's stored functions: the seeds' endpoints, served by
the database. Configuration: DATABASE_URL (libpq URL). Run: uvicorn app:app --port 8000.
OpenAPI docs at /docs and /openapi.json."""
import os
from contextlib import asynccontextmanager
from typing import List, Optional

import psycopg
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, Response
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
pool = ConnectionPool(DATABASE_URL, min_size=1, max_size=int(os.environ.get("POOL_SIZE", "8")), open=False,
                      kwargs={"row_factory": dict_row, "autocommit": True})


@asynccontextmanager
async def lifespan(_app):
    pool.open(wait=True)
    yield
    pool.close()


app = FastAPI(title="pg_recsys example service", version="0.1.0", lifespan=lifespan,
              description="Feeds, similar posts, trending and search from pg_recsys stored functions.")

# The post card every endpoint returns: posts joined with their owner.
POST_COLUMNS = """p.id, p.title, coalesce(p.tags, '{}') AS tags, p.category, p.project_code, p.mood,
    json_build_object('username', o.username, 'name', coalesce(o.username, ''),
                      'picture_url', '/avatar/' || coalesce(o.username, 'unknown') || '.svg') AS owner,
    '/video/' || p.id AS video_link, '/thumb/' || p.id || '.svg' AS thumbnail_url"""


def q(sql, params=()):
    with pool.connection() as c:
        return c.execute(sql, params).fetchall()


def page_args(page, page_size):
    return (page - 1) * page_size


def user_id_of(username):
    rows = q("SELECT id FROM users WHERE username = %s", (username,))
    if not rows:
        raise HTTPException(status_code=404, detail=f"unknown username {username!r}")
    return rows[0]["id"]


def db_call(sql, params=()):
    try:
        return q(sql, params)
    except psycopg.errors.NoDataFound as e:  # P0002: unknown post
        raise HTTPException(status_code=404, detail=e.diag.message_primary) from e
    except psycopg.errors.ObjectNotInPrerequisiteState as e:  # 55000: no trained model
        raise HTTPException(status_code=503, detail=e.diag.message_primary) from e
    except psycopg.errors.InvalidParameterValue as e:  # 22023: bad argument
        raise HTTPException(status_code=422, detail=e.diag.message_primary) from e


@app.get("/health")
def health():
    try:
        row = q("SELECT (SELECT max(id) FROM _recsys_model) AS model_id")[0]
    except psycopg.Error as e:
        raise HTTPException(status_code=503, detail=f"database: {e}") from e
    if row["model_id"] is None:
        raise HTTPException(status_code=503, detail="no trained model: run SELECT recsys_train()")
    return {"status": "success", "database": "ok", "model_id": row["model_id"]}


@app.get("/feed")
def feed(username: str, project_code: Optional[str] = None, category: Optional[str] = None, mood: Optional[str] = None,
         page: int = Query(1, ge=1, le=10_000), page_size: int = Query(20, ge=1, le=100),
         exclude: Optional[List[int]] = Query(None, max_length=2000)):
    """Stable paging: pass the ids already shown as `exclude` (repeat the parameter) and keep
    page=1; unlike offset paging, nothing is skipped when the user interacts with a shown post."""
    uid = user_id_of(username)
    rows = db_call(
        f"""SELECT {POST_COLUMNS}, r.score, r.reason
            FROM recsys_recommend(%s, %s, category => %s, project_code => %s, mood => %s, "offset" => %s,
                                  exclude => %s::bigint[]) WITH ORDINALITY r
            JOIN posts p ON p.id = r.post_id LEFT JOIN users o ON o.id = p.owner_id ORDER BY r.ordinality""",
        (uid, page_size, category, project_code, mood, page_args(page, page_size), exclude))
    return {"status": "success", "post": rows}


@app.get("/recommend/{user_id}")
def recommend(user_id: int, k: int = Query(10, ge=1, le=1000)):
    rows = db_call("SELECT post_id, score, als, graph, content, social, popularity, reason FROM recsys_recommend(%s, %s)", (user_id, k))
    return {"status": "success", "user_id": user_id, "recommendations": rows}


@app.get("/video/{post_id}")
def video(post_id: int):
    rows = q(f"SELECT {POST_COLUMNS} FROM posts p LEFT JOIN users o ON o.id = p.owner_id WHERE p.id = %s", (post_id,))
    if not rows:
        raise HTTPException(status_code=404, detail=f"unknown post {post_id}")
    return {"status": "success", "post": rows[0]}


@app.get("/similar/{post_id}")
def similar(post_id: int, page: int = Query(1, ge=1, le=10_000), page_size: int = Query(20, ge=1, le=100)):
    rows = db_call(
        f"""SELECT {POST_COLUMNS}, s.score, s.reason
            FROM recsys_similar(%s, %s, "offset" => %s) WITH ORDINALITY s
            JOIN posts p ON p.id = s.post_id LEFT JOIN users o ON o.id = p.owner_id ORDER BY s.ordinality""",
        (post_id, page_size, page_args(page, page_size)))
    return {"status": "success", "post": rows}


@app.get("/trending")
def trending(category: Optional[str] = None, page: int = Query(1, ge=1, le=10_000), page_size: int = Query(20, ge=1, le=100)):
    rows = db_call(
        f"""SELECT {POST_COLUMNS}, t.score
            FROM recsys_trending(%s, category => %s, "offset" => %s) WITH ORDINALITY t
            JOIN posts p ON p.id = t.post_id LEFT JOIN users o ON o.id = p.owner_id ORDER BY t.ordinality""",
        (page_size, category, page_args(page, page_size)))
    return {"status": "success", "post": rows}


@app.get("/search")
def search(q_: str = Query(..., alias="q", min_length=1, max_length=1000), k: int = Query(10, ge=1, le=100)):
    rows = db_call(
        f"""SELECT {POST_COLUMNS}, s.score FROM recsys_search(%s, %s) WITH ORDINALITY s
            JOIN posts p ON p.id = s.post_id LEFT JOIN users o ON o.id = p.owner_id ORDER BY s.ordinality""", (q_, k))
    return {"status": "success", "post": rows}


class Interaction(BaseModel):
    username: str = Field(min_length=1)
    post_id: int
    interaction_type: str = Field(pattern="^(view|like|inspire|share|rate)$")
    interaction_value: Optional[float] = None


@app.post("/interaction", status_code=201)
def interaction(i: Interaction):
    uid = user_id_of(i.username)
    if not q("SELECT 1 FROM posts WHERE id = %s", (i.post_id,)):
        raise HTTPException(status_code=404, detail=f"unknown post {i.post_id}")
    q("INSERT INTO interactions (user_id, post_id, kind, value) VALUES (%s, %s, %s, %s) RETURNING 1",
      (uid, i.post_id, i.interaction_type, i.interaction_value))
    return {"status": "success"}


def _svg(text, hue):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
            f'<rect width="320" height="180" fill="hsl({hue},60%,45%)"/>'
            f'<text x="160" y="98" font-family="sans-serif" font-size="22" fill="white" text-anchor="middle">{text}</text></svg>')


@app.get("/thumb/{post_id}.svg")
def thumb(post_id: int):
    """A locally generated thumbnail (no external URLs): the post's category on a colour of its id."""
    rows = q("SELECT coalesce(category, 'post') AS c FROM posts WHERE id = %s", (post_id,))
    if not rows:
        raise HTTPException(status_code=404, detail=f"unknown post {post_id}")
    label = "".join(ch for ch in rows[0]["c"] if ch.isalnum() or ch == " ")[:20]
    return Response(_svg(f"{label} #{post_id}", (post_id * 47) % 360), media_type="image/svg+xml")


@app.get("/avatar/{username}.svg")
def avatar(username: str):
    initial = (username[:1] or "?").upper() if username[:1].isalnum() else "?"
    return Response(_svg(initial, (sum(map(ord, username)) * 13) % 360), media_type="image/svg+xml")


STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


@app.get("/", include_in_schema=False)
def demo_page():
    """The demo page: pick a user, see their feed as cards, click for "more like this", like."""
    return FileResponse(os.path.join(STATIC, "index.html"))


@app.get("/users")
def users(limit: int = Query(50, ge=1, le=1000)):
    """Usernames for the demo page's picker: the most active users first."""
    rows = q("""SELECT u.username FROM users u JOIN interactions i ON i.user_id = u.id
                GROUP BY u.username ORDER BY count(*) DESC, u.username LIMIT %s""", (limit,))
    return {"status": "success", "users": [r["username"] for r in rows]}
