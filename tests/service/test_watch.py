"""`kensa watch` against a real `kensa serve` process: complete files only, verdicts beside
the moved images, refused files apart with their error, and kill -9 twice mid-run: every file
inspected exactly once."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from service_helpers import washer_png

from service.client import Client
from service.watch import JOURNAL, WatchConfig, Watcher

KEY = "line-key"
pytestmark = pytest.mark.slow


def recorded(base: str, source: str) -> list:
    with Client(base, api_key=KEY) as kensa:
        return kensa.inspections(source=source, limit=500).items


def wait_for(check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_file_is_sent_only_once_complete_and_a_refused_one_goes_to_failed(
        live_server, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    watcher = Watcher(WatchConfig(folder=folder, url=live_server, done=tmp_path / "done",
                                  failed=tmp_path / "failed", source="watch/slow",
                                  api_key=KEY, settle_s=0.6, poll_s=0.1))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        data = washer_png(21)
        # a camera writing over a network share: chunks, with pauses shorter than settle_s
        with open(folder / "slow.png", "wb", buffering=0) as fh:
            for start in range(0, len(data), len(data) // 4 + 1):
                fh.write(data[start:start + len(data) // 4 + 1])
                fh.flush()
                time.sleep(0.25)
        (folder / "broken.png").write_bytes(b"\x89PNG but not really")
        assert wait_for(lambda: (tmp_path / "done" / "slow.png.json").exists())
        assert wait_for(lambda: (tmp_path / "failed" / "broken.png.error.json").exists())
    finally:
        watcher.stop()
        thread.join(10)
    verdict = json.loads((tmp_path / "done" / "slow.png.json").read_text())
    [record] = recorded(live_server, "watch/slow")
    assert str(record.id) == verdict["id"]
    assert record.sha256 == hashlib.sha256(data).hexdigest()  # the whole file, not a part
    assert (tmp_path / "done" / "slow.png").read_bytes() == data
    error = json.loads((tmp_path / "failed" / "broken.png.error.json").read_text())
    assert error["status"] == 400 and "not a readable image" in error["detail"]
    assert not list(folder.glob("*.png"))


def watch(folder, base: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service.cli", "watch", str(folder), "--url",
                             base, "--source", "watch/kill", "--api-key", KEY, "--settle",
                             "0.2", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_twice_mid_run_every_file_is_inspected_exactly_once(live_server, tmp_path):
    folder, done = tmp_path / "drop", tmp_path / "drop" / "done"
    folder.mkdir()
    files = {f"part-{n:03d}.png": washer_png(100 + n) for n in range(30)}
    for name, data in files.items():
        (folder / name).write_bytes(data)

    def finished() -> int:
        return len(list(done.glob("*.png.json"))) if done.exists() else 0

    for target in (6, 16):  # kill -9 once a few are through, twice
        proc = watch(folder, live_server)
        assert wait_for(lambda t=target: finished() >= t), proc.stderr.read1()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    proc = watch(folder, live_server, "--once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("kensa watch: ") and ", 0 refused" in out.decode()
    records = recorded(live_server, "watch/kill")
    assert sorted(r.sha256 for r in records) == sorted(
        hashlib.sha256(d).hexdigest() for d in files.values())  # each once, none skipped
    assert sorted(p.name for p in done.glob("*.png")) == sorted(files)
    for name in files:
        verdict = json.loads((done / f"{name}.json").read_text())
        assert verdict["id"] in {str(r.id) for r in records}
    assert not list(folder.glob("*.png"))
    assert (folder / JOURNAL).exists()


def test_an_upload_cut_by_a_kill_after_the_answer_is_found_in_the_records_not_resent(
        live_server, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    sent, unsent = washer_png(300), washer_png(301)
    (folder / "sent.png").write_bytes(sent)
    (folder / "unsent.png").write_bytes(unsent)
    with Client(live_server, api_key=KEY) as kensa:  # the answer the killed watcher never saw
        answer = kensa.inspect(sent, filename="sent.png", source="watch/cut")
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    (folder / JOURNAL).write_text("".join(json.dumps(
        {"event": "sending", "name": n, "sha256": hashlib.sha256(d).hexdigest(), "at": now})
        + "\n" for n, d in (("sent.png", sent), ("unsent.png", unsent))) + '{"event": "ans')
    counts = Watcher(WatchConfig(folder=folder, url=live_server, done=tmp_path / "done",
                                 failed=tmp_path / "failed", source="watch/cut", api_key=KEY,
                                 settle_s=0.1)).run(once=True)
    assert counts == {"done": 2, "failed": 0}
    records = recorded(live_server, "watch/cut")
    assert len(records) == 2  # sent.png once (found, not resent), unsent.png once
    verdict = json.loads((tmp_path / "done" / "sent.png.json").read_text())
    assert verdict["id"] == str(answer.id)


def drop(folder, name: str, data: bytes, pause_s: float = 0.0) -> None:
    """Writes one file as a camera would: in one go, or (``pause_s``) the first third, a
    pause, then the rest, on one open handle."""
    with open(folder / name, "wb", buffering=0) as fh:
        if pause_s:
            fh.write(data[:len(data) // 3])
            time.sleep(pause_s)
            fh.write(data[len(data) // 3:])
        else:
            fh.write(data)


def test_200_files_some_late_some_slow_some_broken_a_restart_each_good_one_once(
        live_server, tmp_path):
    """Scale: 200 files (80 there at start, 120 dropped while it runs, 10 of those written
    in two parts with a pause, 10 in all that do not decode), the watcher killed -9 once
    mid-run and started again."""
    folder, done, failed = tmp_path / "drop", tmp_path / "done", tmp_path / "failed"
    folder.mkdir()
    good = {f"cam-{n:03d}.png": washer_png(1000 + n) for n in range(190)}
    truncated = washer_png(999)[:200]
    bad = {f"cam-bad-{n}.png": (b"not an image at all" if n % 2 else truncated)
           for n in range(10)}
    names = sorted(good) + sorted(bad)
    start = names[:76] + names[190:194]  # 76 good and 4 bad before the watcher starts
    late = names[76:190] + names[194:]
    for name in start:
        drop(folder, name, good.get(name) or bad[name])

    def write_late() -> None:
        for k, name in enumerate(late):
            drop(folder, name, good.get(name) or bad[name], pause_s=0.15 if k % 11 == 0 else 0)
            time.sleep(0.02)

    def count(where, pattern: str) -> int:
        return len(list(where.glob(pattern))) if where.exists() else 0

    args = ("--source", "watch/scale", "--done", str(done), "--failed", str(failed),
            "--settle", "0.5")
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "watch", str(folder), "--url",
                             live_server, "--api-key", KEY, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer = threading.Thread(target=write_late, daemon=True)
    writer.start()
    assert wait_for(lambda: count(done, "*.png.json") >= 60), proc.stderr.read1()
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, with files arriving
    proc.wait(10)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "watch", str(folder), "--url",
                             live_server, "--api-key", KEY, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer.join(60)
    assert wait_for(lambda: count(done, "*.png.json") + count(failed, "*.error.json") >= 200,
                    timeout_s=90), (count(done, "*.png.json"), count(failed, "*.error.json"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read().decode()[-2000:]
    print(f"200 files watched in {time.monotonic() - began:.1f} s")
    records = {str(r.id): r for r in recorded(live_server, "watch/scale")}
    digest = {name: hashlib.sha256(data).hexdigest() for name, data in good.items()}
    assert sorted(r.sha256 for r in records.values()) == sorted(digest.values())  # once each
    assert sorted(p.name for p in done.glob("*.png")) == sorted(good)
    for name, data in good.items():
        verdict = json.loads((done / f"{name}.json").read_text())
        assert records[verdict["id"]].sha256 == digest[name]  # the whole file was sent
        assert (done / name).read_bytes() == data
    assert sorted(p.name for p in failed.glob("*.png")) == sorted(bad)
    for name, data in bad.items():
        error = json.loads((failed / f"{name}.error.json").read_text())
        expected = "not a readable image" if data != truncated else "truncated or corrupt"
        assert error["status"] == 400 and expected in error["detail"], error
    assert not list(folder.glob("*.png"))
