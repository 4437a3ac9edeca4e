"""Production traffic in the background while a test deploys, flips or breaks things."""

from __future__ import annotations

import threading
from collections import Counter

import httpx


class ProductionTraffic:
    """A background loop of chat requests through the production endpoint, counting outcomes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.outcomes: Counter[str] = Counter()
        self.served_by: Counter[str] = Counter()
        self.backends: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(
                        f"{self.endpoint}/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": "Say pong"}],
                            "max_tokens": 4,
                        },
                    )
                    ok = response.status_code == 200
                    self.outcomes["ok" if ok else f"http {response.status_code}"] += 1
                    if ok:
                        self.served_by[response.json()["model"]] += 1
                        self.backends[response.headers.get("x-gx10-backend", "?")] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1

    def __enter__(self) -> ProductionTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @property
    def failures(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")
