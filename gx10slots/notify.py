"""Webhook notifications: a JSON POST with a Slack-compatible ``text`` on every event that moves
or judges production, to each ``notify.webhooks`` entry of slots.yaml.

A notification is a courtesy, never part of the action: it is sent after the action has happened,
all webhooks at once, retried briefly, and the whole of it takes at most :data:`BUDGET_S`
seconds, by construction (each attempt's timeouts are cut to what is left of the budget, and a
receiver that still holds the connection at the deadline is left behind on a daemon thread). It
never raises: a webhook that cannot be reached is a warning on stderr, and a line in the
warnings :func:`notify` returns, for the command's JSON where it has a ``warnings`` list.

A webhook URL is a secret (a Slack URL carries its token): it is never printed, logged or put
into a message. A webhook is named by its position in the list and its host only, and failures
are described by kind (``timed out``, ``HTTP 500``), never by an exception's text, which could
quote the URL.

The body::

    {"event": "flip", "text": "[gx10] production flipped blue → green (model m) by alice: ...",
     "namespace": "gx10", "at": "2026-11-29T13:40:00Z", "source": "gx10slots",
     "from": "blue", "to": "green", "model": "m", "by": "alice", "result": "ok", ...}

``text`` is what Slack, Mattermost and most chat webhooks show; the other fields are for
machines. Foreign text in it (model names, reasons, details) is redacted, stripped of control
characters and escaped as Slack asks (``&``, ``<``, ``>``), so that a model named
``<!channel>`` cannot page a whole channel.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gx10slots import console, scrub
from gx10slots.config import NOTIFY_EVENTS, WEBHOOK_URL

if TYPE_CHECKING:
    import httpx

    from gx10slots.config import Config, WebhookConfig

# Every event a webhook can receive, and what a webhook URL must look like: the config's schema.
EVENTS = NOTIFY_EVENTS

# One event, all its webhooks, every retry: at most this long (plus a thread join's grace).
BUDGET_S = 2.0
ATTEMPTS = 3
# One attempt's connect / write / read timeouts, each cut to what is left of the budget.
ATTEMPT_TIMEOUT_S = 1.0
# Not worth another attempt with less than this left.
MIN_ATTEMPT_S = 0.2
_JOIN_GRACE_S = 0.2

TEXT_MAX_CHARS = 400
FIELD_MAX_CHARS = 1000
MAX_FIELDS = 32
USER_AGENT = "gx10slots-notify"


@dataclass(frozen=True)
class Delivery:
    """How one webhook took one event."""

    webhook: str  # "webhook #2 (hooks.slack.com)": never the URL
    ok: bool
    detail: str  # "HTTP 200", "timed out", "HTTP 500 after 3 attempts", ...

    @property
    def warning(self) -> str | None:
        return None if self.ok else f"notification not delivered to {self.webhook}: {self.detail}"


def notify(
    config: Config, event: str, fields: Mapping[str, Any] | None = None, *, wait: bool = True
) -> list[str]:
    """POST ``event`` with ``fields`` to every webhook that takes it; the warnings (empty: all
    delivered, or no webhook configured). Never raises, never takes more than about
    :data:`BUDGET_S` seconds.

    ``fields``: JSON values for the body (``slot``, ``from``, ``to``, ``model``, ``by``,
    ``result``, ``reason``, ``detail``, ...); ``text`` is made from them unless given.
    ``wait=False`` (a long-running caller such as the controller) returns at once; each
    undelivered notification is then said on stderr when its sending ends.
    """
    try:
        targets = [
            (index, webhook)
            for index, webhook in enumerate(config.notify.webhooks, 1)
            if event in webhook.events
        ]
        if not targets:
            return []
        body = payload(event, fields or {}, namespace=config.namespace)
        deadline = time.monotonic() + BUDGET_S
        sends = [
            _Send(index, webhook, body, deadline, report=not wait) for index, webhook in targets
        ]
        for send in sends:
            send.thread.start()
        if not wait:
            return []
        warnings: list[str] = []
        for send in sends:
            send.thread.join(max(0.0, deadline - time.monotonic()) + _JOIN_GRACE_S)
            delivery = send.delivery or Delivery(
                send.name, False, f"no answer within {BUDGET_S:g} s"
            )
            if delivery.warning:
                warnings.append(delivery.warning)
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the action it reports
        warnings = [f"notifications not sent: internal error ({type(exc).__name__})"]
    for warning in warnings:
        console.progress(f"warning: {warning}")
    return warnings


def entry_event(config: Config, entry: Mapping[str, Any]) -> list[str]:
    """:func:`notify` for a history entry (``HistoryEntry.to_dict()``): its action is the event."""
    return notify(config, str(entry.get("action") or ""), entry)


# -- the body ------------------------------------------------------------------------------------


def payload(
    event: str, fields: Mapping[str, Any], *, namespace: str, at: str | None = None
) -> dict[str, Any]:
    """The JSON body: ``event``, ``text``, ``namespace``, ``at``, then the fields, every string
    redacted and bounded."""
    from gx10slots.kube.values import now_utc, rfc3339

    body: dict[str, Any] = {
        "event": event,
        "text": str(fields.get("text") or summary(event, fields, namespace=namespace)),
        "namespace": namespace,
        "at": at or str(fields.get("at") or rfc3339(now_utc())),
        "source": "gx10slots",
    }
    for key, value in list(fields.items())[:MAX_FIELDS]:
        name = str(key)[:64]
        if name in body:
            continue
        body[name] = _json_value(value)
    body["text"] = _bounded(scrub.printable(scrub.redact(body["text"])), TEXT_MAX_CHARS)
    return body


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return _bounded(scrub.redact(str(value)), FIELD_MAX_CHARS)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack(value: Any, limit: int = 160) -> str:
    """Foreign text for the one-line summary: redacted, printable, one line, bounded, and with
    the three characters Slack gives meaning to escaped (its "Escaping text" rule)."""
    text = " ".join(scrub.printable(scrub.redact(str(value))).split())
    text = _bounded(text, limit)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(event: str, fields: Mapping[str, Any], *, namespace: str) -> str:
    """The one-line human summary (the ``text`` field)."""
    get = fields.get
    head = f"[{_slack(namespace, 63)}]"
    source, target = _slack(get("from") or "no slot"), _slack(get("to") or "?")
    model = f" (model {_slack(get('model'))})" if get("model") else ""
    by = f" by {_slack(get('by'))}" if get("by") else ""
    failed = str(get("result") or "ok") != "ok"
    why = get("detail") if failed else get("reason")
    tail = f": {_slack(why, 240)}" if why else ""
    if event in ("flip", "flip-back"):
        verb = "flip" if event == "flip" else "flip-back"
        if failed:
            return f"{head} {verb} {source} → {target} FAILED{by}{tail}"
        done = "flipped" if event == "flip" else "flipped back"
        return f"{head} production {done} {source} → {target}{model}{by}{tail}"
    if event == "auto-revert":
        if failed:
            return f"{head} automatic revert {source} → {target} FAILED{by}{tail}"
        return f"{head} production automatically reverted {source} → {target}{model}{by}{tail}"
    if event == "would-revert":
        return f"{head} would revert production {source} → {target} (observe mode){by}{tail}"
    slot = _slack(get("slot") or get("to") or "?")
    if event == "deploy":
        what = _slack(get("model") or "?")
        if failed:
            return f"{head} deploy of {what} into slot {slot} FAILED{by}{tail}"
        return f"{head} deployed {what} into slot {slot}{by}: {_slack(get('detail') or 'ready')}"
    if event == "smoke-failed":
        return f"{head} smoke of slot {slot}{model} FAILED: {_slack(get('detail') or '?', 240)}"
    return f"{head} {_slack(event, 40)}{by}{tail}"


# -- sending -------------------------------------------------------------------------------------


class _Retry(Exception):
    """An attempt worth repeating (no answer, 429, 5xx)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def webhook_name(index: int, webhook: WebhookConfig, url: str | None) -> str:
    """``webhook #2 (hooks.slack.com)``: position and host, never the URL (a secret)."""
    import httpx

    host = ""
    if url:
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:  # named by position only
            host = ""
    where = ", ".join(x for x in (host, f"from ${webhook.url_env}" if webhook.url_env else "") if x)
    return f"webhook #{index}" + (f" ({scrub.printable(where)})" if where else "")


@dataclass
class _Send:
    index: int
    webhook: WebhookConfig
    body: Mapping[str, Any]
    deadline: float
    report: bool  # say the failure on stderr ourselves (nobody waits for us)
    delivery: Delivery | None = None
    thread: threading.Thread = field(init=False)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self._url()
        self.name = webhook_name(self.index, self.webhook, self.url)
        self.thread = threading.Thread(target=self._run, name=f"notify-{self.index}", daemon=True)

    def _url(self) -> str | None:
        url = self.webhook.url
        if self.webhook.url_env:
            url = (os.environ.get(self.webhook.url_env) or "").strip() or None
        scrub.remember(url)  # whatever happens, it is never shown
        return url

    def _run(self) -> None:
        try:
            self.delivery = self._deliver()
        except Exception as exc:  # noqa: BLE001 - no thread's traceback on stderr, ever
            self.delivery = Delivery(self.name, False, f"internal error ({type(exc).__name__})")
        if self.report and self.delivery.warning:
            console.progress(f"warning: {self.delivery.warning}")

    def _deliver(self) -> Delivery:
        if self.url is None:
            return Delivery(
                self.name, False, f"environment variable {self.webhook.url_env} is not set"
            )
        if not WEBHOOK_URL.match(self.url):
            return Delivery(self.name, False, "not an http:// or https:// URL (not shown)")
        import httpx
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

        content = json.dumps(self.body, ensure_ascii=False).encode()
        attempts = 0

        def left() -> float:
            return self.deadline - time.monotonic()

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number >= ATTEMPTS or left() < MIN_ATTEMPT_S

        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=0.1, max=0.4),
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )
        with httpx.Client(follow_redirects=False) as client:
            try:
                for attempt in retrying:
                    with attempt:
                        attempts += 1
                        status = self._post(client, content, max(left(), 0.01))
            except _Retry as exc:
                tries = f" after {attempts} attempts" if attempts > 1 else ""
                return Delivery(self.name, False, exc.detail + tries)
        if 200 <= status < 300:
            return Delivery(self.name, True, f"HTTP {status}")
        if 300 <= status < 400:
            return Delivery(self.name, False, f"HTTP {status} (a redirect; not followed)")
        return Delivery(self.name, False, f"HTTP {status}")

    def _post(self, client: httpx.Client, content: bytes, budget_s: float) -> int:
        import httpx

        timeout = httpx.Timeout(min(ATTEMPT_TIMEOUT_S, budget_s))
        assert self.url is not None
        try:
            # Streamed and closed unread: the answer's body is of no interest and may be huge.
            with client.stream(
                "POST",
                self.url,
                content=content,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=timeout,
            ) as response:
                status = response.status_code
        except httpx.TimeoutException as exc:
            raise _Retry("timed out") from exc
        except httpx.ConnectError as exc:
            raise _Retry("connection failed") from exc
        except httpx.HTTPError as exc:
            raise _Retry(f"transport error ({type(exc).__name__})") from exc
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        return status
