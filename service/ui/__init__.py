"""The operator page's files: Jinja2 templates and static files (its own script and style, and
the vendored Swagger UI and ReDoc assets that ``/docs`` and ``/redoc`` load). No code beyond
where they are; the routes that serve them live in ``service.routes.docs`` and ``.page``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = "/ui/static"
