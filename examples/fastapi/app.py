"""A small FastAPI service over pg_recsys's stored functions: feeds, similar posts, trending and
search, served by the database. Async endpoints on psycopg 3's AsyncConnectionPool.

Run: DATABASE_URL=postgresql://... uvicorn app:app --port 8000 (README.md lists every setting).
OpenAPI docs at /docs and /openapi.json, Prometheus metrics at /metrics, a demo page at /."""
import base64
import binascii
import os
import time
import zlib
from contextlib import asynccontextmanager
from typing import List, Optional

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, GCCollector, Histogram,
                               PlatformCollector, ProcessCollector, disable_created_metrics, generate_latest)
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POOL_SIZE = int(os.environ.get("POOL_SIZE", "8"))
POOL_MIN_SIZE = min(int(os.environ.get("POOL_MIN_SIZE", "1")), POOL_SIZE)
POOL_TIMEOUT = float(os.environ.get("POOL_TIMEOUT", "5"))

# A paged list ends at this many items: the extension's default recsys.max_k, the largest k one
# call may ask for (trending and search are fetched as k = shown + page_size).
MAX_ITEMS = 1000
# The id an unknown username is served as: no users row, no interactions, no follows, so
# recsys_recommend gives the documented cold-start feed, the one /recommend/{id} gives any id
# the app has never seen.
UNKNOWN_USER_ID = -1
BIGINT = {"ge": -(2**63), "le": 2**63 - 1}

pool = AsyncConnectionPool(DATABASE_URL, min_size=POOL_MIN_SIZE, max_size=POOL_SIZE, timeout=POOL_TIMEOUT, open=False,
                           kwargs={"row_factory": dict_row, "autocommit": True})


@asynccontextmanager
async def lifespan(_app):
    # Not waiting for the first connection: the service starts while the database is down and
    # answers 503 until it is back (the pool keeps reconnecting).
    await pool.open(wait=False)
    yield
    await pool.close()


app = FastAPI(title="pg_recsys example service", version="0.2.0", lifespan=lifespan,
              description="Feeds, similar posts, trending and search from pg_recsys stored functions. Errors are "
                          "`{\"detail\": str, \"code\": str}`; paged lists take `page`, `page_size` and follow `next`.")


# --- errors: one shape everywhere -----------------------------------------------------------

class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in words (the database's message and hint where it raised it).")
    code: str = Field(description="The SQLSTATE when the condition is a database one (P0002 not found, 22023 bad "
                                  "argument, 55000 no trained model, 08006 connection lost, ...), else a short code: "
                                  "invalid_request, invalid_cursor, page_out_of_range, pool_timeout, unavailable, "
                                  "not_found, method_not_allowed, internal.",
                      examples=["P0002", "invalid_request"])


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str):
        self.status, self.code, self.detail = status, code, detail


def error_response(status, code, detail, headers=None):
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def from_database(e: psycopg.Error) -> ApiError:
    """Maps a database error by SQLSTATE: P0002 (unknown post) 404, class 22 (bad argument) 422,
    55000 (no trained model), connection classes 08/53/57 and pool problems 503, the rest 500."""
    if isinstance(e, PoolTimeout):
        return ApiError(503, "pool_timeout", f"no database connection within {POOL_TIMEOUT:g} s: {e}")
    state = e.sqlstate
    if state is None:  # no answer from the server: the connection failed or broke
        message = f"database: {str(e).strip() or type(e).__name__}"
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return ApiError(503, "unavailable", message)
        return ApiError(500, "internal", message)
    detail = e.diag.message_primary or str(e)
    if e.diag.message_hint:
        detail += f" ({e.diag.message_hint})"
    if state == "P0002":
        return ApiError(404, state, detail)
    if state.startswith("22"):
        return ApiError(422, state, detail)
    if state == "55000" or state[:2] in ("08", "53", "57"):
        return ApiError(503, state, detail)
    return ApiError(500, state, detail)


@app.exception_handler(ApiError)
async def _api_error(_request, e: ApiError):
    return error_response(e.status, e.code, e.detail)


@app.exception_handler(psycopg.Error)
async def _database_error(_request, e: psycopg.Error):
    a = from_database(e)
    return error_response(a.status, a.code, a.detail)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request, e: RequestValidationError):
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


@app.exception_handler(StarletteHTTPException)
async def _http_error(_request, e: StarletteHTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, f"http_{e.status_code}")
    return error_response(e.status_code, code, str(e.detail), getattr(e, "headers", None))


@app.exception_handler(Exception)
async def _unexpected(_request, _e: Exception):
    return error_response(500, "internal", "internal error")


def errors(*statuses, media_route=False):
    """The declared error responses of an endpoint, all in the one error shape. On a route
    whose success is not JSON (media_route) FastAPI would file `model` under the route's media
    type, so the schema is referenced by hand there."""
    text = {404: "Unknown post or user (code P0002), or no such route.",
            422: "Bad parameter (invalid_request, invalid_cursor, page_out_of_range) or an argument the database "
                 "rejected (22023, 22003).",
            503: "No trained model (55000), or the database is unreachable (pool_timeout, unavailable, 08xxx, 57xxx)."}
    if media_route:
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        return {s: {"description": text[s], "content": ref} for s in statuses}
    return {s: {"model": ErrorOut, "description": text[s]} for s in statuses}


# --- metrics ----------------------------------------------------------------------------------

disable_created_metrics()  # no *_created series: Prometheus does not need them
REGISTRY = CollectorRegistry()
for collector in (ProcessCollector, PlatformCollector, GCCollector):
    collector(registry=REGISTRY)
REQUESTS = Counter("recsys_http_requests", "HTTP requests served, by route template and status.",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("recsys_http_request_duration_seconds", "Time to serve a request, by route template.",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MODEL_ID = Gauge("recsys_model_id", "Id of the served model in _recsys_model (0 = none).", registry=REGISTRY)
MODEL_CREATED = Gauge("recsys_model_created_timestamp_seconds", "When the served model was trained (Unix time).",
                      registry=REGISTRY)
MODEL_INFO = Gauge("recsys_model_info", "1 for the served model, labelled with its id and kind.", ["model_id", "kind"],
                   registry=REGISTRY)
DB_UP = Gauge("recsys_database_up", "1 if the last /metrics scrape could read the model table.", registry=REGISTRY)
POOL_GAUGES = {"pool_size": Gauge("recsys_pool_size", "Connections the pool holds now.", registry=REGISTRY),
               "pool_available": Gauge("recsys_pool_available", "Idle connections in the pool.", registry=REGISTRY),
               "requests_waiting": Gauge("recsys_pool_requests_waiting", "Requests waiting for a connection.",
                                         registry=REGISTRY)}


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by the route template (`/similar/{post_id}`,
    not the path, so the label set stays small); unmatched paths are `unmatched`."""

    def __init__(self, asgi):
        self.asgi = asgi

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.asgi(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.asgi(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)


app.add_middleware(MetricsMiddleware)


# --- database -------------------------------------------------------------------------------

async def q(sql, params=(), timeout=None) -> List[dict]:
    try:
        async with pool.connection(timeout=timeout) as c:
            cur = await c.execute(sql, params)
            return await cur.fetchall() if cur.description else []
    except psycopg.Error as e:
        raise from_database(e) from e


# --- paging -----------------------------------------------------------------------------------
# A cursor is the set of ids already shown: sorted, delta-encoded as comma-separated decimals,
# zlib-compressed, base64url without padding. The next page is the best `page_size` items not in
# it (recsys_recommend / recsys_similar `exclude => ...`; trending and search fetch
# shown + page_size and drop the shown ones), so an interaction between pages, which re-ranks
# everything, neither skips nor repeats an item. Tampering with a cursor only hides posts.

def encode_cursor(ids) -> str:
    ids = sorted(set(ids))
    deltas = [b - a for a, b in zip([0] + ids, ids)]
    raw = zlib.compress(",".join(map(str, deltas)).encode(), 9)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> List[int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = zlib.decompressobj()
        text = d.decompress(raw, 64 * MAX_ITEMS)  # bounded: a cursor never holds more than MAX_ITEMS ids
        if d.unconsumed_tail:
            raise ValueError("too long")
        ids, last = [], 0
        for part in filter(None, text.decode().split(",")):
            last += int(part)
            ids.append(last)
    except (ValueError, binascii.Error, zlib.error, UnicodeDecodeError) as e:
        raise ApiError(422, "invalid_cursor", "cursor is not one this service issued: follow the `next` link") from e
    if len(ids) > MAX_ITEMS:
        raise ApiError(422, "invalid_cursor", f"cursor holds more than {MAX_ITEMS} ids")
    return ids


class Paging:
    """`page`, `page_size` and `cursor` of every paged endpoint. With a cursor (from a `next`
    link) the page is the best page_size items not yet shown; without one, page n is a direct
    jump past the first (n - 1) * page_size items of the current ranking."""

    def __init__(self, page: int = Query(1, ge=1, description="1-based page number (echoed; `next` carries page + 1)."),
                 page_size: int = Query(20, ge=1, le=100, description="Items per page."),
                 cursor: Optional[str] = Query(None, max_length=20_000,
                                               description="Opaque token from a `next` link: the ids already shown.")):
        self.page, self.page_size = page, page_size
        self.shown = decode_cursor(cursor) if cursor else []
        self.skip = 0 if cursor else (page - 1) * page_size
        self.k = self.skip + self.page_size  # rows to ask the function for, after the shown ones
        if self.k + len(self.shown) > MAX_ITEMS:
            raise ApiError(422, "page_out_of_range", f"paged lists end at {MAX_ITEMS} items")

    def respond(self, request: Request, rows: List[dict], key: str, id_field: str, **extra) -> dict:
        """The page of `rows` (the function's first k after the shown ones) and the link to the next."""
        shown = set(self.shown) | {r[id_field] for r in rows}
        more = len(rows) == self.k and len(shown) + self.page_size <= MAX_ITEMS
        nxt = None
        if more:
            url = request.url.include_query_params(page=self.page + 1, cursor=encode_cursor(shown))
            nxt = f"{url.path}?{url.query}"
        return {"status": "success", **extra, "page": self.page, "page_size": self.page_size, "next": nxt,
                key: rows[self.skip:]}


class PageOut(BaseModel):
    status: str = Field("success", description="Always `success` on a 200.")
    page: int = Field(description="This page's number.")
    page_size: int = Field(description="Items asked for; fewer only on the last page.")
    next: Optional[str] = Field(description="Relative URL of the next page (same parameters, page + 1 and a `cursor` of "
                                            "the ids shown so far), or null after the last page.")


# --- response models ---------------------------------------------------------------------------

class Owner(BaseModel):
    username: Optional[str] = Field(description="The post owner's username (null if the owner has no users row).")
    name: str = Field(description="Display name.")
    picture_url: str = Field(description="Locally generated avatar (SVG).")


class Post(BaseModel):
    id: int = Field(description="Post id.")
    title: Optional[str]
    tags: List[str]
    category: Optional[str]
    project_code: Optional[str]
    mood: Optional[str]
    owner: Owner
    video_link: str = Field(description="Link to the post.")
    thumbnail_url: str = Field(description="Locally generated thumbnail (SVG).")


FUSED = ("Fused score of recsys_recommend: Σ weight × component, each component (ALS, graph, content, social, "
         "popularity) scaled to [0, 1] over the catalogue for this user, so 0 ≤ score ≤ the sum of the model's fusion "
         "weights. One scale for every page of one user's list (known, cold-start and unknown users alike); not "
         "comparable across users.")


class FeedPost(Post):
    score: float = Field(description=FUSED)
    reason: Optional[str] = Field(description="Why it is shown: the largest contribution in words.")


class SimilarPost(Post):
    score: float = Field(description="recsys_similar: (1 − w)·ALS item cosine + w·content (TF-IDF) cosine, "
                                     "w = recsys.similar_content_weight (0.3); in [0, 1].")
    reason: Optional[str] = Field(description="Which part leads (`shares #tag` / `liked by the same people`).")


class TrendingPost(Post):
    score: float = Field(description="recsys_trending: Σ kind weight × 2^(−age / recsys.trending_half_life_hours) over "
                                     "the interactions within `since_days`; ≥ 0, unbounded (a fresh like counts its "
                                     "kind weight).")


class SearchPost(Post):
    score: float = Field(description="recsys_search: TF-IDF cosine between the query and the post, in [0, 1].")


class Recommendation(BaseModel):
    post_id: int
    score: float = Field(description=FUSED + " The sum of the five component columns.")
    als: float = Field(description="ALS contribution (weighted).")
    graph: float = Field(description="Item-item graph (EASE / RP3beta) contribution (weighted).")
    content: float = Field(description="Content (TF-IDF profile) contribution (weighted).")
    social: float = Field(description="Followees' engagement contribution (weighted).")
    popularity: float = Field(description="Trending + freshness + demographic contribution (weighted).")
    reason: Optional[str]


class FeedOut(PageOut):
    post: List[FeedPost]


class RecommendOut(PageOut):
    user_id: int
    recommendations: List[Recommendation]


class SimilarOut(PageOut):
    post: List[SimilarPost]


class TrendingOut(PageOut):
    post: List[TrendingPost]


class SearchOut(PageOut):
    post: List[SearchPost]


class UsersOut(PageOut):
    users: List[str] = Field(description="Usernames, most active first.")


class VideoOut(BaseModel):
    status: str = "success"
    post: Post


class HealthOut(BaseModel):
    status: str = "success"
    database: str = Field(description="`ok` when the database answered.")
    model_id: int = Field(description="Id of the served model (_recsys_model.id).")
    model_created_at: str = Field(description="When it was trained (ISO 8601).")


class InteractionIn(BaseModel):
    username: str = Field(min_length=1)
    post_id: int = Field(**BIGINT)
    interaction_type: str = Field(pattern="^(view|like|inspire|share|rate)$")
    interaction_value: Optional[float] = None


class InteractionOut(BaseModel):
    status: str = "success"


# The post card every post endpoint returns: posts joined with their owner.
POST_COLUMNS = """p.id, p.title, coalesce(p.tags, '{}') AS tags, p.category, p.project_code, p.mood,
    json_build_object('username', o.username, 'name', coalesce(o.username, ''),
                      'picture_url', '/avatar/' || coalesce(o.username, 'unknown') || '.svg') AS owner,
    '/video/' || p.id AS video_link, '/thumb/' || p.id || '.svg' AS thumbnail_url"""


class Filters:
    def __init__(self, category: Optional[str] = None, project_code: Optional[str] = None, mood: Optional[str] = None):
        self.category, self.project_code, self.mood = category, project_code, mood


# The served model: with named models (the `name`, `deployed_at` columns), the `default` model's
# version deployed last; before them, the newest row. to_jsonb keeps one query for both schemas.
SERVED_MODEL = """SELECT id, kind, created_at, extract(epoch FROM created_at)::float8 AS created
    FROM _recsys_model m
    WHERE coalesce(to_jsonb(m) ->> 'name', 'default') = 'default'
      AND (NOT to_jsonb(m) ? 'deployed_at' OR to_jsonb(m) ->> 'deployed_at' IS NOT NULL)
    ORDER BY (to_jsonb(m) ->> 'deployed_at')::timestamptz DESC NULLS LAST, id DESC LIMIT 1"""


# --- endpoints ----------------------------------------------------------------------------------

@app.get("/health", response_model=HealthOut, responses=errors(503))
async def health():
    rows = await q(SERVED_MODEL)
    if not rows:
        raise ApiError(503, "55000", "no trained model (run SELECT recsys_train())")
    return {"database": "ok", "model_id": rows[0]["id"], "model_created_at": rows[0]["created_at"].isoformat()}


async def ranked(user_sql, user_param, filters: Filters, paging: Paging, cards: bool):
    """recsys_recommend for one user: cards joined with posts and owners (/feed) or the raw
    score components (/recommend)."""
    cols = f"{POST_COLUMNS}, r.score, r.reason" if cards else \
        "r.post_id, r.score, r.als, r.graph, r.content, r.social, r.popularity, r.reason"
    return await q(
        f"""SELECT {cols}
            FROM recsys_recommend({user_sql}, %(k)s, category => %(category)s, project_code => %(project_code)s,
                                  mood => %(mood)s, exclude => %(shown)s::bigint[]) WITH ORDINALITY r
            {"JOIN posts p ON p.id = r.post_id LEFT JOIN users o ON o.id = p.owner_id" if cards else ""}
            ORDER BY r.ordinality""",
        {"user": user_param, "unknown": UNKNOWN_USER_ID, "k": paging.k, "shown": paging.shown,
         "category": filters.category, "project_code": filters.project_code, "mood": filters.mood})


@app.get("/feed", response_model=FeedOut, responses=errors(422, 503))
async def feed(request: Request, username: str = Query(..., min_length=1), filters: Filters = Depends(),
               paging: Paging = Depends()):
    """A user's feed as post cards, best first. An unknown username gets the cold-start feed,
    the same one `/recommend/{user_id}` gives an unknown id."""
    rows = await ranked("coalesce((SELECT id FROM users WHERE username = %(user)s), %(unknown)s)", username,
                        filters, paging, cards=True)
    return paging.respond(request, rows, "post", "id")


@app.get("/recommend/{user_id}", response_model=RecommendOut, responses=errors(422, 503))
async def recommend(request: Request, user_id: int = Path(**BIGINT), filters: Filters = Depends(),
                    paging: Paging = Depends()):
    """recsys_recommend's rows for a user id: the fused score and its parts. An id the app has
    never seen gets the cold-start ranking (as `/feed` does for an unknown username)."""
    rows = await ranked("%(user)s", user_id, filters, paging, cards=False)
    return paging.respond(request, rows, "recommendations", "post_id", user_id=user_id)


@app.get("/video/{post_id}", response_model=VideoOut, responses=errors(404, 422, 503))
async def video(post_id: int = Path(**BIGINT)):
    rows = await q(f"SELECT {POST_COLUMNS} FROM posts p LEFT JOIN users o ON o.id = p.owner_id WHERE p.id = %s", (post_id,))
    if not rows:
        raise ApiError(404, "P0002", f"unknown post {post_id}")
    return {"post": rows[0]}


@app.get("/similar/{post_id}", response_model=SimilarOut, responses=errors(404, 422, 503))
async def similar(request: Request, post_id: int = Path(**BIGINT), filters: Filters = Depends(),
                  paging: Paging = Depends()):
    rows = await q(
        f"""SELECT {POST_COLUMNS}, s.score, s.reason
            FROM recsys_similar(%(post)s, %(k)s, category => %(category)s, project_code => %(project_code)s,
                                mood => %(mood)s, exclude => %(shown)s::bigint[]) WITH ORDINALITY s
            JOIN posts p ON p.id = s.post_id LEFT JOIN users o ON o.id = p.owner_id ORDER BY s.ordinality""",
        {"post": post_id, "k": paging.k, "shown": paging.shown, "category": filters.category,
         "project_code": filters.project_code, "mood": filters.mood})
    return paging.respond(request, rows, "post", "id")


@app.get("/trending", response_model=TrendingOut, responses=errors(422, 503))
async def trending(request: Request, category: Optional[str] = None, project_code: Optional[str] = None,
                   since_days: float = Query(7, gt=0, le=3650, description="Window of interactions counted."),
                   paging: Paging = Depends()):
    # recsys_trending has no `exclude`: ask for shown + k and drop the shown ones.
    rows = await q(
        f"""SELECT {POST_COLUMNS}, t.score
            FROM recsys_trending(%(n)s, category => %(category)s, project_code => %(project_code)s,
                                 since => make_interval(secs => %(since)s)) WITH ORDINALITY t
            JOIN posts p ON p.id = t.post_id LEFT JOIN users o ON o.id = p.owner_id
            WHERE t.post_id <> ALL(%(shown)s::bigint[]) ORDER BY t.ordinality LIMIT %(k)s""",
        {"n": paging.k + len(paging.shown), "k": paging.k, "shown": paging.shown, "category": category,
         "project_code": project_code, "since": since_days * 86400})
    return paging.respond(request, rows, "post", "id")


@app.get("/search", response_model=SearchOut, responses=errors(422, 503))
async def search(request: Request, q_: str = Query(..., alias="q", min_length=1, max_length=1000),
                 paging: Paging = Depends()):
    rows = await q(
        f"""SELECT {POST_COLUMNS}, s.score FROM recsys_search(%(q)s, %(n)s) WITH ORDINALITY s
            JOIN posts p ON p.id = s.post_id LEFT JOIN users o ON o.id = p.owner_id
            WHERE s.post_id <> ALL(%(shown)s::bigint[]) ORDER BY s.ordinality LIMIT %(k)s""",
        {"q": q_, "n": paging.k + len(paging.shown), "k": paging.k, "shown": paging.shown})
    return paging.respond(request, rows, "post", "id")


@app.post("/interaction", status_code=201, response_model=InteractionOut, responses=errors(404, 422, 503))
async def interaction(i: InteractionIn):
    """Records an interaction; the next `/feed` reflects it through fold-in, no retrain."""
    found = (await q("SELECT (SELECT id FROM users WHERE username = %s) AS uid, EXISTS (SELECT 1 FROM posts WHERE id = %s) AS post",
                     (i.username, i.post_id)))[0]
    if found["uid"] is None:
        raise ApiError(404, "P0002", f"unknown username {i.username!r}")
    if not found["post"]:
        raise ApiError(404, "P0002", f"unknown post {i.post_id}")
    await q("INSERT INTO interactions (user_id, post_id, kind, value) VALUES (%s, %s, %s, %s)",
            (found["uid"], i.post_id, i.interaction_type, i.interaction_value))
    return {}


@app.get("/users", response_model=UsersOut, responses=errors(422, 503))
async def users(request: Request, paging: Paging = Depends()):
    """Usernames for the demo page's picker: the most active users first."""
    rows = await q("""SELECT u.id, u.username FROM users u JOIN interactions i ON i.user_id = u.id
                      WHERE u.username IS NOT NULL AND u.id <> ALL(%s::bigint[])
                      GROUP BY u.id, u.username ORDER BY count(*) DESC, u.username LIMIT %s""", (paging.shown, paging.k))
    body = paging.respond(request, rows, "users", "id")
    body["users"] = [r["username"] for r in body["users"]]
    return body


@app.get("/metrics", response_class=PlainTextResponse,
         responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}})
async def metrics():
    """Request counts and latencies by route, the served model's id and training time, the
    connection pool's statistics, process metrics."""
    try:
        rows = await q(SERVED_MODEL, timeout=min(POOL_TIMEOUT, 2))
        DB_UP.set(1)
        MODEL_INFO.clear()
        if rows:
            MODEL_ID.set(rows[0]["id"])
            MODEL_CREATED.set(rows[0]["created"])
            MODEL_INFO.labels(str(rows[0]["id"]), rows[0]["kind"]).set(1)
        else:
            MODEL_ID.set(0)
    except ApiError:
        DB_UP.set(0)
    for k, v in pool.get_stats().items():
        if k in POOL_GAUGES:
            POOL_GAUGES[k].set(v)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class SVGResponse(Response):
    media_type = "image/svg+xml"


def _svg(text, hue):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
            f'<rect width="320" height="180" fill="hsl({hue},60%,45%)"/>'
            f'<text x="160" y="98" font-family="sans-serif" font-size="22" fill="white" text-anchor="middle">{text}</text></svg>')


@app.get("/thumb/{post_id}.svg", response_class=SVGResponse, responses=errors(404, 422, 503, media_route=True))
async def thumb(post_id: int = Path(**BIGINT)):
    """A locally generated thumbnail (no external URLs): the post's category on a colour of its id."""
    rows = await q("SELECT coalesce(category, 'post') AS c FROM posts WHERE id = %s", (post_id,))
    if not rows:
        raise ApiError(404, "P0002", f"unknown post {post_id}")
    label = "".join(ch for ch in rows[0]["c"] if ch.isalnum() or ch == " ")[:20]
    return SVGResponse(_svg(f"{label} #{post_id}", (post_id * 47) % 360))


@app.get("/avatar/{username}.svg", response_class=SVGResponse, responses=errors(422, media_route=True))
async def avatar(username: str):
    initial = (username[:1] or "?").upper() if username[:1].isalnum() else "?"
    return SVGResponse(_svg(initial, (sum(map(ord, username)) * 13) % 360))


STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


@app.get("/", include_in_schema=False)
async def demo_page():
    """The demo page: pick a user, see their feed as cards, page on, "more like this", like."""
    return FileResponse(os.path.join(STATIC, "index.html"))
