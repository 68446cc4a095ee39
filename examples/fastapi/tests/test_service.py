"""The example service against a real cluster (started by run_tests.sh), over HTTP through
FastAPI's ASGI test client."""
import os

import pytest
from fastapi.testclient import TestClient

import app as service


@pytest.fixture(scope="module")
def client():
    with TestClient(service.app) as c:
        yield c


def test_health_and_openapi(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["model_id"] >= 1
    paths = client.get("/openapi.json").json()["paths"]
    for p in ["/feed", "/recommend/{user_id}", "/video/{post_id}", "/similar/{post_id}", "/trending", "/search", "/interaction"]:
        assert p in paths


def test_feed_has_cards_with_owner_score_and_reason(client):
    r = client.get("/feed", params={"username": "user7", "page_size": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success" and len(body["post"]) == 5
    card = body["post"][0]
    for key in ["id", "title", "tags", "category", "project_code", "mood", "owner", "video_link", "thumbnail_url", "score", "reason"]:
        assert key in card
    assert set(card["owner"]) == {"username", "name", "picture_url"}
    assert card["reason"]
    scores = [p["score"] for p in body["post"]]
    assert scores == sorted(scores, reverse=True)


def test_feed_pages_filters_and_errors(client):
    p1 = client.get("/feed", params={"username": "user7", "page_size": 3, "page": 1}).json()["post"]
    p2 = client.get("/feed", params={"username": "user7", "page_size": 3, "page": 2}).json()["post"]
    both = client.get("/feed", params={"username": "user7", "page_size": 6}).json()["post"]
    assert [p["id"] for p in p1 + p2] == [p["id"] for p in both]
    dance = client.get("/feed", params={"username": "user7", "category": "dance"}).json()["post"]
    assert dance and all(p["category"] == "dance" for p in dance)
    assert client.get("/feed", params={"username": "nobody-here"}).status_code == 404
    assert client.get("/feed", params={"username": "user7", "page_size": 0}).status_code == 422
    assert client.get("/feed", params={"username": "user7", "page_size": 1000}).status_code == 422
    assert client.get("/feed").status_code == 422


def test_known_user_without_history_gets_the_cold_start_feed(client):
    r = client.get("/feed", params={"username": "newcomer"})
    assert r.status_code == 200 and len(r.json()["post"]) > 0


def test_video_similar_trending_search_recommend(client):
    assert client.get("/video/1").json()["post"]["id"] == 1
    assert client.get("/video/999999").status_code == 404
    sim = client.get("/similar/1", params={"page_size": 5})
    assert sim.status_code == 200 and len(sim.json()["post"]) == 5 and all(p["id"] != 1 for p in sim.json()["post"])
    assert client.get("/similar/999999").status_code == 404
    assert client.get("/trending", params={"page_size": 5}).status_code == 200
    s = client.get("/search", params={"q": "dance"})
    assert s.status_code == 200 and s.json()["post"]
    assert client.get("/search", params={"q": ""}).status_code == 422
    rec = client.get("/recommend/7", params={"k": 4}).json()["recommendations"]
    assert len(rec) == 4 and {"post_id", "score", "reason"} <= set(rec[0])
    assert client.get("/recommend/7", params={"k": 0}).status_code == 422
    thumb = client.get("/thumb/1.svg")
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/svg+xml") and b"http" not in thumb.content.replace(b"http://www.w3.org/2000/svg", b"")


def test_an_interaction_changes_the_next_feed_without_retraining(client):
    before = client.get("/feed", params={"username": "user7", "page_size": 10}).json()["post"]
    top = before[0]["id"]
    r = client.post("/interaction", json={"username": "user7", "post_id": top, "interaction_type": "like"})
    assert r.status_code == 201
    after = client.get("/feed", params={"username": "user7", "page_size": 10}).json()["post"]
    assert top not in [p["id"] for p in after], "a liked post leaves the feed (seen)"
    assert [p["score"] for p in after] != [p["score"] for p in before[1:]], "fold-in moved the scores"
    bad = client.post("/interaction", json={"username": "user7", "post_id": 1, "interaction_type": "teleport"})
    assert bad.status_code == 422
    assert client.post("/interaction", json={"username": "ghost", "post_id": 1, "interaction_type": "like"}).status_code == 404
    assert client.post("/interaction", json={"username": "user7", "post_id": 999999, "interaction_type": "like"}).status_code == 404


def test_exclude_paging_neither_skips_nor_repeats(client):
    """The stable paging pattern: page 2 excludes what page 1 showed, so a like on page 1 in
    between (which removes that post from the ranking) does not shift page 2."""
    first = client.get("/feed", params={"username": "user9", "page_size": 4}).json()["post"]
    shown = [p["id"] for p in first]
    r = client.post("/interaction", json={"username": "user9", "post_id": shown[0], "interaction_type": "view"})
    assert r.status_code in (200, 201), r.text
    second = client.get("/feed", params={"username": "user9", "page_size": 4, "exclude": shown}).json()["post"]
    ids = [p["id"] for p in second]
    assert len(ids) == 4 and not set(ids) & set(shown)
