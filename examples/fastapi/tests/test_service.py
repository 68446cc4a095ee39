"""The example service over HTTP (uvicorn on a free port, started by conftest.py) against a real
database: response models and declared errors in the OpenAPI schema, the one error shape,
paging by `next` links, cold start, interactions, metrics, and 503s."""
import base64
import os
import zlib

import httpx
import psycopg
import psycopg.conninfo
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import HERE, DATABASE_URL, free_port, service

CARD = {"id", "title", "tags", "category", "project_code", "mood", "owner", "video_link", "thumbnail_url"}
ERROR_KEYS = {"detail", "code"}


def same_ranking(cards, rows):
    """Two answers of recsys_recommend a moment apart: the same posts in the same order and the
    same scores up to float noise (the popularity signal decays with the clock)."""
    assert [p["id"] for p in cards] == [r["post_id"] for r in rows]
    for p, r in zip(cards, rows):
        assert abs(p["score"] - r["score"]) <= 1e-5 * max(1.0, abs(r["score"])), (p, r)


def ids(body, key="post", field="id"):
    return [p[field] for p in body[key]]


def follow(client, url, key="post", field="id", limit=200):
    """Every item of a paged list, following `next` links until there is none."""
    seen, pages = [], 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += ids(body, key, field)
        url, pages = body["next"], pages + 1
        assert pages < limit
    return seen, pages


def test_openapi_lists_typed_responses_and_declared_errors(client):
    spec = client.get("/openapi.json").json()
    expected = {("/health", "get"): {503}, ("/feed", "get"): {422, 503}, ("/recommend/{user_id}", "get"): {422, 503},
                ("/video/{post_id}", "get"): {404, 422, 503}, ("/similar/{post_id}", "get"): {404, 422, 503},
                ("/trending", "get"): {422, 503}, ("/search", "get"): {422, 503}, ("/users", "get"): {422, 503},
                ("/interaction", "post"): {404, 422, 503}}
    not_json = {("/metrics", "get"): ("text/plain", set()), ("/thumb/{post_id}.svg", "get"): ("image/svg+xml", {404, 422, 503}),
                ("/avatar/{username}.svg", "get"): ("image/svg+xml", {422})}
    listed = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert listed == set(expected) | set(not_json)
    for (path, method), errs in {**expected, **{k: v[1] for k, v in not_json.items()}}.items():
        responses = spec["paths"][path][method]["responses"]
        ok = [s for s in responses if s.startswith("2")]
        assert len(ok) == 1, (path, responses)
        content = responses[ok[0]]["content"]
        if (path, method) in expected:
            assert content["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), path
        else:
            assert not_json[(path, method)][0] in content, (path, content)
        assert {int(s) for s in responses if not s.startswith("2")} == errs, path
        for s in errs:
            assert responses[str(s)]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorOut"
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas, "every 422 is declared in the one error shape"
    assert set(schemas["ErrorOut"]["required"]) == ERROR_KEYS
    assert {schemas["ErrorOut"]["properties"][k]["type"] for k in ERROR_KEYS} == {"string"}
    # Every field of a post card and of a page is in the schema; every score says its scale.
    assert CARD | {"score", "reason"} <= set(schemas["FeedPost"]["properties"])
    assert {"status", "page", "page_size", "next", "post"} <= set(schemas["FeedOut"]["properties"])
    assert {"post_id", "score", "als", "graph", "content", "social", "popularity", "reason"} == set(schemas["Recommendation"]["properties"])
    for name in ["FeedPost", "SimilarPost", "TrendingPost", "SearchPost", "Recommendation"]:
        assert len(schemas[name]["properties"]["score"]["description"]) > 40, name


def test_health_and_feed_cards(client, data):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["model_id"] >= 1 and r.json()["model_created_at"]
    r = client.get("/feed", params={"username": data["users"][0], "page_size": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success" and body["page"] == 1 and body["page_size"] == 5 and len(body["post"]) == 5
    card = body["post"][0]
    assert CARD | {"score", "reason"} == set(card)
    assert set(card["owner"]) == {"username", "name", "picture_url"} and card["reason"]
    scores = [p["score"] for p in body["post"]]
    assert scores == sorted(scores, reverse=True)
    category = card["category"]
    filtered = client.get("/feed", params={"username": data["users"][0], "category": category}).json()["post"]
    assert filtered and all(p["category"] == category for p in filtered)


def test_feed_and_recommend_share_one_scale(client, data):
    """/feed and /recommend rank with the same function: same posts, same scores."""
    feed = client.get("/feed", params={"username": data["users"][0], "page_size": 8}).json()["post"]
    rec = client.get(f"/recommend/{data['user_ids'][0]}", params={"page_size": 8}).json()["recommendations"]
    same_ranking(feed, rec)
    for r in rec:
        parts = r["als"] + r["graph"] + r["content"] + r["social"] + r["popularity"]
        assert abs(parts - r["score"]) <= 1e-4 * max(1.0, r["score"]), r


def test_error_shape_for_404_and_422(client, data):
    cases = [("/video/%d" % data["unknown_post"], 404, "P0002"),
             ("/similar/%d" % data["unknown_post"], 404, "P0002"),
             ("/thumb/%d.svg" % data["unknown_post"], 404, "P0002"),
             ("/no-such-route", 404, "not_found"),
             ("/feed?username=x&page_size=0", 422, "invalid_request"),
             ("/feed?username=x&page_size=1000", 422, "invalid_request"),
             ("/feed", 422, "invalid_request"),
             ("/recommend/abc", 422, "invalid_request"),
             ("/recommend/99999999999999999999", 422, "invalid_request"),
             ("/search?q=", 422, "invalid_request"),
             ("/similar/1?cursor=not-a-cursor", 422, "invalid_cursor"),
             ("/recommend/1?page=500&page_size=100", 422, "page_out_of_range"),
             # A cursor holding an id beyond bigint: the database's 22003, a bad argument.
             ("/similar/1?cursor=" + base64.urlsafe_b64encode(zlib.compress(b"%d" % 2**70)).decode().rstrip("="), 422, "22003")]
    for url, status, code in cases:
        r = client.get(url)
        assert r.status_code == status, (url, r.text)
        body = r.json()
        assert set(body) == ERROR_KEYS and isinstance(body["detail"], str) and body["detail"], (url, body)
        assert body["code"] == code, (url, body)
    r = client.post("/interaction", json={"username": data["users"][0], "post_id": 1, "interaction_type": "teleport"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "interaction_type" in r.json()["detail"]
    r = client.post("/interaction", json={"username": data["unknown_username"], "post_id": 1, "interaction_type": "like"})
    assert r.status_code == 404 and r.json() == {"detail": f"unknown username {data['unknown_username']!r}", "code": "P0002"}
    r = client.post("/interaction", json={"username": data["users"][0], "post_id": data["unknown_post"], "interaction_type": "like"})
    assert r.status_code == 404 and set(r.json()) == ERROR_KEYS


def test_next_links_walk_each_list_once(client, data):
    """page/page_size/next on every paged endpoint: following `next` from page 1 yields the
    same items as one big page, none twice, and the link keeps the other parameters."""
    post = client.get("/feed", params={"username": data["users"][0], "page_size": 1}).json()["post"][0]
    word = max((w for w in (post["title"] or "").split() if w.isalpha()), key=len, default=post["category"])
    lists = [("/search", {"q": word}, "post", "id"),
             (f"/similar/{post['id']}", {}, "post", "id"),
             ("/trending", {"since_days": 3650}, "post", "id"),
             ("/users", {}, "users", None),
             (f"/recommend/{data['user_ids'][1]}", {}, "recommendations", "post_id"),
             ("/feed", {"username": data["users"][1], "category": post["category"]}, "post", "id")]
    for path, params, key, field in lists:
        whole = client.get(path, params={**params, "page_size": 60}).json()
        one = [x if field is None else x[field] for x in whole[key]]
        assert len(one) > 7, (path, whole)
        first = client.get(path, params={**params, "page_size": 7})
        assert first.status_code == 200
        nxt = first.json()["next"]
        assert nxt.startswith(path + "?") and "page=2" in nxt and "page_size=7" in nxt and "cursor=" in nxt
        for k, v in params.items():
            assert f"{k}=" in nxt, (k, nxt)
        if field is None:
            seen, pages = [], 0
            url = f"{path}?page_size=7"
            while url and pages < 10:
                b = client.get(url).json()
                seen, url, pages = seen + b["users"], b["next"], pages + 1
            n = min(len(seen), len(one)) - 5  # near the cut a near-tie may fall either side
            assert set(seen[:n]) <= set(one) and set(one[:n]) <= set(seen) and len(seen) == len(set(seen))
            continue
        url = str(httpx.URL(path, params={**params, "page_size": 7}))
        seen, pages = follow(client, url, key, field)
        assert len(seen) == len(set(seen)), path
        n = min(len(seen), len(one)) - 5
        assert set(seen[:n]) <= set(one) and set(one[:n]) <= set(seen), path
        assert pages >= 2


def test_exclude_paging_neither_skips_nor_repeats(client, data, interact):
    """The stable paging pattern: page 2 (the `next` link) excludes what page 1 showed, so a
    like on page 1 in between, which re-ranks the feed, neither repeats a post nor skips one."""
    user = data["users"][1]
    first = client.get("/feed", params={"username": user, "page_size": 4}).json()
    shown = ids(first)
    assert interact(user, shown[1], "like").status_code == 201
    second = client.get(first["next"]).json()
    assert second["page"] == 2 and second["page_size"] == 4
    got = ids(second)
    assert len(got) == 4 and not set(got) & set(shown), "no repeats"
    # No skips: every post the feed now ranks above page 2's last one was shown on page 1 or 2.
    now = client.get("/feed", params={"username": user, "page_size": 40}).json()["post"]
    last = min(p["score"] for p in second["post"])
    above = [p["id"] for p in now if p["score"] > last + 1e-5 * max(1.0, last)]
    assert set(above) <= set(shown) | set(got), (above, shown, got)
    # Page 3 continues after both.
    third = ids(client.get(second["next"]).json())
    assert len(third) == 4 and not set(third) & (set(shown) | set(got))


def test_unknown_user_gets_the_same_cold_start_feed_from_feed_and_recommend(client, data):
    feed = client.get("/feed", params={"username": data["unknown_username"], "page_size": 6})
    rec = client.get(f"/recommend/{data['unknown_user_id']}", params={"page_size": 6})
    assert feed.status_code == 200 and rec.status_code == 200, (feed.text, rec.text)
    f, r = feed.json(), rec.json()
    assert len(f["post"]) == 6
    same_ranking(f["post"], r["recommendations"])
    assert all(x["als"] == 0 and x["social"] == 0 for x in r["recommendations"]), "cold start: no personal signal"
    f2, r2 = client.get(f["next"]).json(), client.get(r["next"]).json()
    assert ids(f2) == ids(r2, "recommendations", "post_id") and not set(ids(f2)) & set(ids(f))


def test_known_user_without_history_gets_the_cold_start_feed(client, data):
    if not data["newcomer"]:
        pytest.skip("no user without interactions in this database")
    r = client.get("/feed", params={"username": data["newcomer"]})
    assert r.status_code == 200 and len(r.json()["post"]) > 0


def test_video_similar_trending_search(client, data):
    post = client.get("/feed", params={"username": data["users"][0], "page_size": 1}).json()["post"][0]
    assert client.get(f"/video/{post['id']}").json()["post"]["id"] == post["id"]
    sim = client.get(f"/similar/{post['id']}", params={"page_size": 5})
    assert sim.status_code == 200 and len(sim.json()["post"]) == 5 and all(p["id"] != post["id"] for p in sim.json()["post"])
    assert all(0 <= p["score"] <= 1.0001 for p in sim.json()["post"])
    assert client.get("/trending", params={"page_size": 5}).status_code == 200
    s = client.get("/search", params={"q": post["category"]})
    assert s.status_code == 200 and s.json()["post"] and all(0 <= p["score"] <= 1.0001 for p in s.json()["post"])
    thumb = client.get(f"/thumb/{post['id']}.svg")
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/svg+xml")
    assert b"http" not in thumb.content.replace(b"http://www.w3.org/2000/svg", b"")


def test_an_interaction_changes_the_next_feed_without_retraining(client, data, interact):
    user = data["users"][0]
    before = client.get("/feed", params={"username": user, "page_size": 10}).json()["post"]
    top = before[0]["id"]
    assert interact(user, top, "like").status_code == 201
    after = client.get("/feed", params={"username": user, "page_size": 10}).json()["post"]
    assert top not in [p["id"] for p in after], "a liked post leaves the feed (seen)"
    assert [p["score"] for p in after] != [p["score"] for p in before[1:]], "fold-in moved the scores"


def test_metrics(client, data):
    client.get("/feed", params={"username": data["users"][0], "page_size": 2})
    client.get(f"/video/{data['unknown_post']}")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("recsys_http_requests_total", method="GET", route="/feed", status="200") >= 1
    assert value("recsys_http_requests_total", method="GET", route="/video/{post_id}", status="404") >= 1
    assert value("recsys_http_request_duration_seconds_count", method="GET", route="/feed") >= 1
    assert value("recsys_http_request_duration_seconds_bucket", method="GET", route="/feed", le="+Inf") >= 1
    health = client.get("/health").json()
    assert value("recsys_model_id") == health["model_id"]
    info = [(dict(labels), v) for (n, labels), v in samples.items() if n == "recsys_model_info"]
    assert len(info) == 1 and info[0][0]["model_id"] == str(health["model_id"]) and info[0][0]["kind"] and info[0][1] == 1
    with psycopg.connect(DATABASE_URL) as c:
        created = c.execute("SELECT extract(epoch FROM created_at)::float8 FROM _recsys_model WHERE id = %s",
                            (health["model_id"],)).fetchone()[0]
    assert abs(value("recsys_model_created_timestamp_seconds") - created) < 1e-3
    assert value("recsys_database_up") == 1 and value("recsys_pool_size") >= 1


def test_503_without_database_or_without_model(db):
    """Pool problems and 55000 (no trained model) are 503 in the one error shape."""
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with service({"DATABASE_URL": down, "POOL_TIMEOUT": "0.5"}, ready=None) as url:
        for path in ["/health", "/feed?username=someone", "/recommend/1"]:
            r = httpx.get(url + path, timeout=10)
            assert r.status_code == 503 and set(r.json()) == ERROR_KEYS, (path, r.text)
            assert r.json()["code"] in ("pool_timeout", "unavailable"), r.json()
        assert "recsys_database_up 0.0" in httpx.get(url + "/metrics", timeout=10).text
    name = f"recsys_fastapi_nomodel_{os.getpid()}"
    try:
        db.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as e:
        pytest.skip(f"cannot create a database without a model here: {e}")
    try:
        conninfo = psycopg.conninfo.make_conninfo(DATABASE_URL, dbname=name)
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_recsys")
            c.execute(open(os.path.join(HERE, "..", "..", "scripts", "schema.sql")).read())
        with service({"DATABASE_URL": conninfo}, ready=None) as url:
            for path in ["/health", "/feed?username=someone", "/recommend/1", "/similar/1"]:
                r = httpx.get(url + path, timeout=10)
                assert r.status_code == 503 and r.json()["code"] == "55000" and set(r.json()) == ERROR_KEYS, (path, r.text)
                assert "no trained model" in r.json()["detail"]
            assert "recsys_model_id 0.0" in httpx.get(url + "/metrics", timeout=10).text
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
