"""The operator page and /docs in a real headless Chromium against a real `kensa serve`
(API keys on): sign in, inspect an upload, see it live, review with the keyboard, check the
reviews through the API; client text shows as text; nothing loads from beyond loopback."""

from __future__ import annotations

import time

import httpx
import pytest
from service_helpers import upload, washer_png
from test_server_process import running_server

from .browser import chrome, need_browser, offsite_requests, screenshot

pytestmark = pytest.mark.slow

KEY = "page-test-key"
HOSTILE_SOURCE = "<script>window.pwned=1</script>"
HOSTILE_PART = '"><img src=x onerror="window.pwned=2">'
WAIT_S = 20


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    need_browser()
    root = tmp_path_factory.mktemp("page-server")
    with running_server(tiny_bundle, {"KENSA_API_KEYS": KEY, "KENSA_KEEP_IMAGES": "all",
                                      "KENSA_DATA_DIR": str(root / "data")},
                        root / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server, headers={"X-API-Key": KEY}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def driver(server):
    d = chrome()
    yield d
    d.quit()


def until(predicate, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def seeded(api) -> dict:
    """Records made through the API: one reviewed `scratch` (so the page knows the defect
    name), two abnormal ones (threshold 0.001, the least allowed) to review, one of them with hostile texts."""
    def inspect(**headers):
        r = api.post("/v1/inspect?threshold=0.001", files=upload(washer_png(5)), headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["id"]

    known = inspect()
    assert api.put(f"/v1/inspections/{known}/review", json={"label": "scratch"}).status_code == 200
    hostile = inspect(**{"X-Kensa-Source": HOSTILE_SOURCE, "X-Kensa-Part-Id": HOSTILE_PART})
    plain = inspect(**{"X-Kensa-Source": "line-2"})
    return {"hostile": hostile, "plain": plain}


def test_the_page_without_a_key(server):
    assert httpx.get(f"{server}/ui/").status_code == 401
    assert httpx.get(f"{server}/v1/inspections").status_code == 401


def test_operator_signs_in_inspects_watches_and_reviews_with_the_keyboard(server, api, driver,
                                                                          tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ids = seeded(api)
    driver.get(f"{server}/ui/")
    driver.find_element(By.ID, "login-key").send_keys(KEY + "\n")
    until(lambda: js(driver, "return document.getElementById('live-grid') !== null"),
          "the page after sign-in")
    assert KEY not in driver.current_url
    assert KEY not in js(driver, "return document.cookie")  # HttpOnly: scripts cannot read it

    # Inspect: an upload gets its verdict and overlay at once
    driver.get(f"{server}/ui/#inspect")
    picture = tmp_path / "washer.png"
    picture.write_bytes(washer_png(7, defect="scratch"))
    driver.find_element(By.ID, "inspect-files").send_keys(str(picture))
    uploaded = until(lambda: js(driver, "const c = document.querySelector('#inspect-results "
                                "article[data-id]'); return c && c.dataset.id"),
                     "the upload's verdict")
    result = driver.find_element(By.CSS_SELECTOR, f'#inspect-results [data-id="{uploaded}"]')
    assert result.find_element(By.CSS_SELECTOR, ".label").text.lower() in ("normal", "abnormal")
    until(lambda: js(driver, "return arguments[0].querySelector('img').naturalWidth", result),
          "the upload's overlay")

    # Live: the upload and the seeded records appear, overlays loaded, hostile text as text
    driver.get(f"{server}/ui/#live")
    for ident in (uploaded, ids["hostile"]):
        until(lambda ident=ident: js(driver, "const i = document.querySelector("
                                     f"'#live-grid [data-id=\"{ident}\"] img');"
                                     "return i && i.complete && i.naturalWidth > 0"),
              f"live card {ident} with its overlay")
    card = driver.find_element(By.CSS_SELECTOR, f'#live-grid [data-id="{ids["hostile"]}"]')
    # Live's thumbnails: the upload's drawn ahead while the page was open, so it came inline
    # with the new cards' one request; one seeded before the page opened loads by its URL
    src = "return document.querySelector('#live-grid [data-id=\"%s\"] img').src"
    assert js(driver, src % uploaded).startswith("data:image/jpeg;base64,")
    assert js(driver, src % ids["hostile"]).endswith(
        f"/v1/inspections/{ids['hostile']}/overlay?size=thumb")
    assert card.find_element(By.CSS_SELECTOR, ".source").text == HOSTILE_SOURCE
    assert card.find_element(By.CSS_SELECTOR, ".part").text == HOSTILE_PART

    # Review: G for good on the first, a box and 1 (= scratch) on the second, U to undo
    driver.get(f"{server}/ui/#review")
    current = lambda: js(driver, "return document.getElementById('review-info').dataset.id")
    first = until(current, "the review queue")
    until(lambda: js(driver, "return document.getElementById('review-image').naturalWidth"),
          "the upload in the review view")
    assert driver.find_element(By.CSS_SELECTOR, "#defect-keys").text.startswith("1 scratch")
    assert driver.find_element(By.ID, "review-overlay").get_attribute("src").endswith(
        f"/v1/inspections/{first}/overlay")  # Review shows the full overlay
    for width, height in ((1366, 768), (1920, 1080)):
        screenshot(driver, "review-queue", width, height)
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("g")
    until(lambda: (api.get(f"/v1/inspections/{first}").json()["review"] or {}).get("label")
          == "good", "the good review through the API")
    second = until(lambda: (current() != first) and current(), "the next record")
    image = driver.find_element(By.ID, "review-image")
    # from the centre 80 screen pixels right and down: the picture is shown scaled (contain)
    scale = js(driver, "const r = arguments[0].getBoundingClientRect(); return Math.min("
               "r.width / arguments[0].naturalWidth, r.height / arguments[0].naturalHeight)",
               image)
    ActionChains(driver).move_to_element_with_offset(image, 0, 0).click_and_hold() \
        .move_by_offset(80, 80).release().perform()
    assert js(driver, "return !document.getElementById('review-box').hidden")
    body.send_keys("1")
    review = until(lambda: api.get(f"/v1/inspections/{second}").json()["review"],
                   "the scratch review through the API")
    assert review["label"] == "scratch"
    [[x, y, w, h]] = review["regions"]
    assert abs(x - 24) <= 1 and abs(y - 24) <= 1, review["regions"]
    assert abs(w - 80 / scale) <= 1.5 and abs(h - 80 / scale) <= 1.5, (review["regions"], scale)
    body.send_keys("u")
    until(lambda: current() == second, "undo going back to the last decision")

    # Yield: four records (three seeded, one uploaded), three reviewed, one a false alarm
    # (abnormal, reviewed good); none of the scratch reviews was of a normal verdict
    driver.get(f"{server}/ui/#yield")

    def total(count: str) -> str | None:
        return js(driver, "const c = document.querySelector("
                  f"'#yield-total [data-count=\"{count}\"]'); return c && c.textContent")

    until(lambda: total("total") == "4", "the yield totals")
    assert (total("reviewed"), total("false_alarms"), total("misses")) == ("3", "1", "0")

    # History: a filter, the CSV link with the same filter, a row opens in the review view
    driver.get(f"{server}/ui/#history")

    def rows() -> list[str]:
        return js(driver, "return [...document.querySelectorAll('#history-rows tr')]"
                  ".map(r => r.dataset.id)")

    until(lambda: len(rows()) == 4, "all four records in History")
    source = driver.find_element(By.CSS_SELECTOR, '#history-filters [name="source"]')
    source.send_keys("line-2\t")
    until(lambda: rows() == [ids["plain"]], "the filtered history")
    csv_link = driver.find_element(By.ID, "history-csv").get_attribute("href")
    assert "source=line-2" in csv_link
    assert api.get(csv_link.replace(server, "")).text.count("\n") == 2  # header + one record
    driver.find_element(By.CSS_SELECTOR, f'#history-rows tr[data-id="{ids["plain"]}"]').click()
    until(lambda: current() == ids["plain"], "the record opened in the review view")

    # nothing a client sent ever ran, and nothing loaded from beyond loopback
    assert js(driver, "return window.pwned") is None
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert offsite_requests(driver) == []


def test_docs_render_every_operation_and_try_it_out_shows_the_overlay(server, driver,
                                                                       tmp_path):
    from selenium.webdriver.common.by import By

    driver.get(f"{server}/docs")
    until(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10,
          "Swagger UI's operations")
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "/v1/inspect/overlay" in text and "/v1/inspections/{ident}/review" in text

    driver.find_element(By.CSS_SELECTOR, ".btn.authorize").click()
    until(lambda: driver.find_elements(By.CSS_SELECTOR, ".auth-container input"), "the key box")
    driver.find_element(By.CSS_SELECTOR, ".auth-container input").send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
    driver.find_element(By.CSS_SELECTOR, ".btn-done").click()
    block = driver.find_element(By.CSS_SELECTOR, '[id$="inspect_overlay_v1_inspect_overlay_post"]')
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    until(lambda: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"), "Try it out")
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    picture = tmp_path / "part.png"
    picture.write_bytes(washer_png(9))
    block.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(picture))
    block.find_element(By.CSS_SELECTOR, ".execute").click()
    until(lambda: js(driver, "const i = arguments[0].querySelector('.live-responses-table img');"
                     "return i && i.complete && i.naturalWidth === 48", block),
          "the overlay picture in the response")
    assert offsite_requests(driver) == []
