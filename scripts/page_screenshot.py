"""Makes docs/review-queue.png for README.md: the operator page's review queue, from a real run.

Usage: python scripts/page_screenshot.py [--model bundles/demo] [--data data/demo]
       [--out docs/review-queue.png]

Starts `kensa serve` on the bundle with a throwaway records folder (every image kept), sends
the demo test images through `POST /v1/inspect` as two cameras would, reviews two of them
through the API (so the page knows a defect name), then opens `/ui/#review` in headless
Chromium (Debian's `chromium` and `chromium-driver`) at 1366 x 768 and saves the screen.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))  # the browser helpers the tests use
from test_server_process import free_port, serve, wait_ready
from ui.browser import chrome, screenshot


def record(base: str, data: Path) -> list[dict]:
    """Inspects the demo test images, newest last, and returns the answers."""
    answers = []
    images = sorted((data / "test").glob("*/*.png"))
    with httpx.Client(base_url=base, timeout=60) as client:
        for n, path in enumerate(images):
            headers = {"X-Kensa-Source": f"line-1/cam-{1 + n % 2}",
                       "X-Kensa-Part-Id": f"SN-{4100 + n:05d}"}
            r = client.post("/v1/inspect", files={"file": (path.name, path.read_bytes())},
                            headers=headers)
            r.raise_for_status()
            answers.append(r.json() | {"path": path})
        abnormal = [a for a in answers if a["label"] == "abnormal"]
        for answer, label in zip(abnormal[:2], ("scratch", "good"), strict=False):
            client.put(f"/v1/inspections/{answer['id']}/review",
                       json={"label": label}).raise_for_status()
    return answers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("bundles/demo"))
    p.add_argument("--data", type=Path, default=Path("data/demo"))
    p.add_argument("--out", type=Path, default=Path("docs/review-queue.png"))
    a = p.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kensa-page-") as tmp:
        proc = serve("--model", str(a.model), "--port", str(port), "--device", "cpu",
                     stderr=subprocess.DEVNULL,
                     env_extra={"KENSA_KEEP_IMAGES": "all", "KENSA_DATA_DIR": tmp})
        driver = None
        try:
            wait_ready(base, proc)
            answers = record(base, a.data)
            driver = chrome()
            driver.get(f"{base}/ui/#review")
            deadline = time.monotonic() + 30
            while not driver.execute_script(
                    "const i = document.getElementById('review-overlay');"
                    "return i.complete && i.naturalWidth > 0"):
                if time.monotonic() > deadline:
                    raise SystemExit("the review queue never showed a picture")
                time.sleep(0.2)
            shot = screenshot(driver, "review-queue", 1366, 768)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_bytes(shot.read_bytes())
        finally:
            if driver is not None:
                driver.quit()
            proc.terminate()
            proc.wait(timeout=30)
    print(f"wrote {a.out} ({len(answers)} inspections recorded)")


if __name__ == "__main__":
    main()
