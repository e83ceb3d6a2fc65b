"""The webhook sink: POSTs each record as JSON to a URL.

Headers: ``X-Kensa-Signature: sha256=<hex HMAC-SHA256 of the body under the sink's secret>``
(when a secret is set), ``X-Kensa-Delivery: <record id>`` (the same on every retry: delivery
is at least once, a receiver drops ids it has seen). Any answer but 2xx, a timeout or a refused
connection is a failure; the dispatcher retries it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import httpx

from .config import WebhookSink
from .delivery import DeliveryFailed

# httpx logs each request's full URL at INFO, and a URL may carry a token (``?token=${...}``)
logging.getLogger("httpx").setLevel(logging.WARNING)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Kensa-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(self, config: WebhookSink) -> None:
        self.config = config
        self._client = httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        url = httpx.URL(config.url)
        # what log lines name: no user:password@ or query, which may carry a token
        self.where = f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}{url.path}"

    def send(self, ident: str, body: bytes, record: dict) -> None:
        headers = {**self.config.headers, "Content-Type": "application/json",
                   "X-Kensa-Delivery": ident}
        if self.config.secret:
            headers["X-Kensa-Signature"] = signature(self.config.secret.get_secret_value(),
                                                     body)
        try:
            answer = self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {self.where}") from None
        if not answer.is_success:
            raise DeliveryFailed(f"HTTP {answer.status_code} from {self.where}")

    def close(self) -> None:
        self._client.close()
