"""The demo page in real headless Chromium (Debian's chromium + chromium-driver), against the
service started with uvicorn on a free port (conftest.py): the feed renders as cards, "More"
follows the `next` link without repeating a card, clicking a card shows "more like this", and
the like button records an interaction and refreshes the feed."""
import os
import shutil
import tempfile
import time

import pytest

chromium = shutil.which("chromium")
driver_path = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (chromium and driver_path) and os.environ.get("RECSYS_REQUIRE_BROWSER") != "1",
                                reason="chromium / chromium-driver not installed")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,900"]:
        opts.add_argument(a)
    b = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield b
    b.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(fn, timeout=10.0):
    """Polls `fn` until it returns something true; the page re-renders the feed, so an element
    found a moment ago may be gone (stale): that counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
        except (StaleElementReferenceException, IndexError):
            v = None
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_feed_more_like_this_and_like(server, browser, data, written):
    from selenium.webdriver.common.by import By
    user = data["users"][2]
    browser.get(f"{server}/?user={user}")
    cards = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#feed .card"))
    assert len(cards) == 12
    first = cards[0].get_attribute("data-post-id")
    assert cards[0].find_element(By.CSS_SELECTOR, ".reason").text
    img = cards[0].find_element(By.TAG_NAME, "img").get_attribute("src")
    assert img.startswith(server + "/thumb/"), img
    # "More" appends the next page: 24 cards, none twice.
    browser.find_element(By.ID, "more").click()
    more = wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#feed .card")) == 24 and
                    [c.get_attribute("data-post-id") for c in browser.find_elements(By.CSS_SELECTOR, "#feed .card")])
    assert len(set(more)) == 24
    cards = browser.find_elements(By.CSS_SELECTOR, "#feed .card")
    # Clicking a card shows "more like this".
    cards[1].find_element(By.CSS_SELECTOR, ".title").click()
    similar = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#similar .card"))
    assert similar and browser.find_element(By.ID, "similar-title").is_displayed()
    if os.environ.get("RECSYS_SCREENSHOT"):
        browser.save_screenshot(os.environ["RECSYS_SCREENSHOT"])
    # Liking the first card records an interaction and refreshes the feed from page 1: the
    # liked post is seen now, so it leaves the feed.
    written.append((user, int(first), "like"))
    cards[0].find_element(By.CSS_SELECTOR, "button.like").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#feed .card")[0].get_attribute("data-post-id") != first)
    ids = wait_for(lambda: [c.get_attribute("data-post-id") for c in browser.find_elements(By.CSS_SELECTOR, "#feed .card")])
    assert first not in ids and len(ids) == 12
    assert not browser.find_element(By.ID, "status").text
