"""The page's Model view in a real headless Chromium against a real `kensa serve` on a models
root (two versions of one part, records on, API keys on): the active version's facts, the
versions table, the threshold what-if checked against the records the API returns, and a
challenger and an activation started from the page and seen through the API."""

from __future__ import annotations

import httpx
import pytest
from models_root_helpers import make_root
from service_helpers import upload, washer_png
from test_server_process import running_server

from .browser import chrome, need_browser, offsite_requests, screenshot
from .test_page_browser import until

pytestmark = pytest.mark.slow

KEY = "model-view-key"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need_browser()
    root = tmp_path_factory.mktemp("model-view")
    a, b = make_root(root / "models")
    env = {"KENSA_MODELS_DIR": str(root / "models"), "KENSA_API_KEYS": KEY,
           "KENSA_DATA_DIR": str(root / "data"), "KENSA_MODEL_POLL_S": "0.5"}
    with running_server(None, env, root / "server.log") as base:
        yield base, a, b


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def expected_counts(scores: list[float], labels: list[str], t: float) -> dict[str, int]:
    now = ["abnormal" if s >= t else "normal" for s in scores]
    return {"abnormal": now.count("abnormal"),
            "to_abnormal": sum(n == "abnormal" and old == "normal" for n, old in zip(now, labels)),
            "to_normal": sum(n == "normal" and old == "abnormal" for n, old in zip(now, labels))}


def test_model_view_shows_the_part_answers_what_if_and_activates(served, tmp_path):
    from selenium.webdriver.common.by import By

    base, a, b = served
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as api:
        # six records of version A: three judged at the least threshold allowed (abnormal),
        # three at the model's own threshold, so the labels differ from any single threshold
        for n in range(6):
            query = "?threshold=0.001" if n % 2 else ""
            r = api.post(f"/v1/inspect{query}", files=upload(washer_png(n, size=48)))
            assert r.status_code == 200 and r.json()["model_version"] == a, r.text
        records = api.get("/v1/inspections", params={"model_version": a}).json()["items"]
        scores = [rec["score"] for rec in records]
        labels = [rec["label"] for rec in records]
        threshold = api.get("/v1/model").json()["default_threshold"]

        driver = chrome()
        try:
            driver.get(f"{base}/ui/")
            driver.find_element(By.ID, "login-key").send_keys(KEY + "\n")
            until(lambda: js(driver, "return document.getElementById('model-part') !== null"),
                  "the page after sign-in")
            driver.get(f"{base}/ui/#model")
            until(lambda: a in driver.find_element(By.ID, "model-active").text,
                  "the active version's facts")
            assert "washer" in driver.find_element(By.ID, "model-active").text
            rows = {r.get_attribute("data-version"): r for r in
                    driver.find_elements(By.CSS_SELECTOR, "#model-versions tr")}
            assert set(rows) == {a, b}
            assert "active" in rows[a].text and not rows[a].find_elements(By.TAG_NAME, "button")
            assert rows[b].find_element(By.CSS_SELECTOR, '[data-action="activate"]')

            # the what-if counts what the records say, at the model's threshold and at others
            until(lambda: driver.find_element(By.ID, "whatif-n").text == "6", "six records")

            def shown() -> dict[str, int]:
                cells = driver.find_elements(By.CSS_SELECTOR, "#whatif-rows [data-whatif]")
                return {c.get_attribute("data-whatif"): int(c.text.split()[0]) for c in cells}

            for t in (threshold, 0.0, max(scores) * 1.01, sorted(scores)[2]):
                js(driver, "const s = document.getElementById('whatif-slider'); "
                   "s.value = String(arguments[0]); s.dispatchEvent(new Event('input'));", t)
                t_used = float(js(driver, "return Number(document.getElementById("
                                  "'whatif-slider').value)"))
                got, want = shown(), expected_counts(scores, labels, t_used)
                assert {k: got[k] for k in want} == want, (t, got, want)
                assert got["changed"] == want["to_abnormal"] + want["to_normal"]
            for width, height in ((1366, 768), (1920, 1080)):
                screenshot(driver, "model-view", width, height)

            # a challenger from the page: confirmed, then reported by the API
            rows[b].find_element(By.CSS_SELECTOR, '[data-action="challenge"]').click()
            driver.switch_to.alert.accept()
            until(lambda: api.get("/v1/models/washer/challenger").status_code == 200,
                  "the challenger through the API")
            until(lambda: b in driver.find_element(By.ID, "model-challenger").text,
                  "the challenger's report on the page")

            # activation from the page: the API and the page agree that B judges now
            driver.find_element(
                By.CSS_SELECTOR, f'#model-versions tr[data-version="{b}"] [data-action="activate"]'
            ).click()
            driver.switch_to.alert.accept()
            until(lambda: api.get("/v1/models").json()["models"][0]["active"] == b,
                  "the activation through the API")
            until(lambda: b in driver.find_element(By.ID, "model-active").text,
                  "the page showing the new active version")
            r = api.post("/v1/inspect", files=upload(washer_png(9, size=48)))
            assert r.json()["model_version"] == b
            assert offsite_requests(driver) == []
        finally:
            driver.quit()
