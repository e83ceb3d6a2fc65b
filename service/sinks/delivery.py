"""What every sink shares: the message a record becomes, and the failure of one delivery."""

from __future__ import annotations

import json

from ..routes.inspections import record_body


class DeliveryFailed(Exception):
    """One delivery did not go through; the dispatcher retries it."""


def message(record: dict) -> bytes:
    """The JSON a sink sends for ``record`` (a records row): the body of
    ``GET /v1/inspections/{id}``."""
    body = record_body(record).model_dump(mode="json")
    return json.dumps(body, separators=(",", ":")).encode()
