"""POSTs alerts to MEMSYNC_ALERT_WEBHOOK_URL, in a body the configured receiver accepts.

Formats (MEMSYNC_ALERT_WEBHOOK_FORMAT):

* `generic`: the alert's API fields (as `GET /api/alerts` returns them) plus a one-line `text`.
* `teams`: a message with one Adaptive Card attachment, the envelope the Teams Workflows trigger
  "When a Teams webhook request is received" / template "Post to a channel when a webhook request is
  received" takes. Workflows accept Adaptive Cards only, not the retired connectors' MessageCard:
  https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
  Card version 1.4, the highest every Teams client renders.
* `slack`: an incoming-webhook message: `text` (the notification and fallback) plus Block Kit `blocks`:
  https://api.slack.com/messaging/webhooks , https://api.slack.com/reference/block-kit/blocks

The URL is a credential (it carries a signature or token), so it is never logged or put in an error;
a failure is described by its HTTP status or exception type only. One attempt per call, with a timeout:
a failed delivery is retried on the next timer run (shared.services.alerting).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from pydantic import SecretStr

    from shared.settings import WebhookFormat
    from shared.stores.alerts import Alert

WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_ROLE_LABELS = {"partner": "partner app", "sync": "sync app"}
_TITLES = {
    "secretExpiring": "Client secret expiring",
    "secretExpired": "Client secret expired",
    "secretInvalid": "Client secret not valid",
    "syncPoisoned": "Tenant sync failed repeatedly",
}


class WebhookDeliveryError(Exception):
    """The receiver did not accept the alert; `reason` is safe to store and log (no URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def alert_title(alert: Alert) -> str:
    title = _TITLES.get(alert.kind.value, "memsync alert")
    return f"{title}: {alert.integration_name} ({_ROLE_LABELS.get(alert.role.value, alert.role.value)})"


def alert_facts(alert: Alert) -> list[tuple[str, str]]:
    """What a person needs at a glance: which integration, which app, when, how many days."""
    if alert.kind.value == "syncPoisoned":  # about a tenant's sync, not a secret's date
        return [("Integration", f"{alert.integration_name} ({alert.integration_id})"),
                ("Tenant", alert.tenant_id or "unknown"), ("Alert ID", alert.id)]
    expires = alert.expires_on.strftime("%Y-%m-%d %H:%M UTC") if alert.expires_on else "unknown"
    if alert.expires_on and alert.expires_on_source == "assumed":
        expires += " (assumed: 180 days after the secret was stored)"
    return [
        ("Integration", f"{alert.integration_name} ({alert.integration_id})"),
        ("App", _ROLE_LABELS.get(alert.role.value, alert.role.value)),
        ("App ID", alert.app_id),
        ("Expires on", expires),
        ("Days left", "unknown" if alert.days_left is None else str(alert.days_left)),
        ("Alert ID", alert.id),
    ]


def generic_body(alert: Alert) -> dict[str, Any]:
    return {**alert.to_api(), "text": f"{alert_title(alert)}. {alert.message}"}


def teams_body(alert: Alert) -> dict[str, Any]:
    color = "Warning" if alert.kind.value == "secretExpiring" else "Attention"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": alert_title(alert), "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": True},
            {"type": "TextBlock", "text": alert.message, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in alert_facts(alert)]},
            {"type": "TextBlock", "text": "What to do", "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": alert.action, "wrap": True},
        ],
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack's three control characters: https://api.slack.com/reference/surfaces/formatting#escaping
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(alert: Alert) -> dict[str, Any]:
    title = alert_title(alert)
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in alert_facts(alert)]
    return {
        "text": _slack_escape(f"{title}. {alert.message}")[:3000],
        "blocks": [
            # Header text is plain_text and at most 150 characters.
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": False}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(alert.message)[:3000]}},
            {"type": "section", "fields": fields[:10]},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": "*What to do*\n" + _slack_escape(alert.action)[:2900]}},
        ],
    }


_BODIES = {"generic": generic_body, "teams": teams_body, "slack": slack_body}


def webhook_body(alert: Alert, fmt: WebhookFormat) -> dict[str, Any]:
    return _BODIES[fmt](alert)


class _RedactWebhookUrls(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://...?sig=..."); for a
    webhook that URL is the credential. This filter on the `httpx` logger keeps only scheme and host."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) if str(a) in self.urls else a for a in record.args)
        return True


def _redacted(url: object) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.hostname}/(webhook URL redacted)"


_REDACT = _RedactWebhookUrls()


def _protect_in_logs(url: str) -> None:
    logger = logging.getLogger("httpx")
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)
    try:
        _REDACT.urls.add(str(httpx.URL(url)))
    except httpx.InvalidURL:
        _REDACT.urls.add(url)


class AlertWebhook:
    """The configured receiver. `post` raises `WebhookDeliveryError` unless it answers 2xx."""

    def __init__(
        self, http: httpx.AsyncClient, url: SecretStr, fmt: WebhookFormat, *,
        timeout: httpx.Timeout = WEBHOOK_TIMEOUT,
    ) -> None:
        self._http = http
        self._url = url
        self.format = fmt
        self._timeout = timeout
        _protect_in_logs(url.get_secret_value())

    async def post(self, alert: Alert) -> None:
        try:
            response = await self._http.post(
                self._url.get_secret_value(), json=webhook_body(alert, self.format), timeout=self._timeout,
                headers={"Content-Type": "application/json"},
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # timeouts, refused, TLS, protocol, bad URL
            raise WebhookDeliveryError(type(exc).__name__) from None
        if not 200 <= response.status_code < 300:
            raise WebhookDeliveryError(f"HTTP {response.status_code}")
