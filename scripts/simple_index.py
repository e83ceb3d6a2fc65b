"""Writes a PEP 503 "simple" index for the wheels in DIR/files, into DIR/simple.

Used by scripts/image-check.sh to stand in for the PyTorch CPU index where only a wheel on disk
can be had: ``python3 scripts/simple_index.py DIR URL`` where URL is where DIR will be seen
from pip (``file:///torch-index`` inside the build).
"""

import hashlib
import html
import re
import sys
from pathlib import Path


def main(root: Path, url: str) -> None:
    projects: dict[str, list[Path]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel)
    simple = root / "simple"
    for name, wheels in projects.items():
        (simple / name).mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="{url}/files/{html.escape(w.name)}#sha256='
            f'{hashlib.sha256(w.read_bytes()).hexdigest()}">{html.escape(w.name)}</a><br>\n'
            for w in wheels)
        (simple / name / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    names = "".join(f'<a href="{n}/">{n}</a><br>\n' for n in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{names}</body></html>\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].rstrip("/"))
