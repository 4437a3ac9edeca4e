"""Helpers of the figures: the diagnostic and floor scripts, import-time parsing, the probe
requests."""

from __future__ import annotations

import http.client
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

from .common import BenchError, now

DIAGNOSTIC = "slots flip-back --force, imports first"
# The diagnostic variant: every module `flip-back --force` loads, imported before it runs; the
# time they were done goes to stderr (CLOCK_MONOTONIC, comparable with the benchmark's clock).
PREIMPORT = """
import sys, time
import gx10slots.cli, gx10slots.flip.run, gx10slots.render, gx10slots.smoke.suite
import gx10slots.kube.client, gx10slots.kube.kubeconfig, gx10slots.ops.engine, urllib3, yaml
sys.stderr.write("IMPORTED %r\\n" % time.clock_gettime(time.CLOCK_MONOTONIC))
gx10slots.cli.main({args!r})
"""

# What `slots status` loads, as a list of imports (the breakdown's row).
STATUS_IMPORTS = (
    "import gx10slots.cli, gx10slots.ops.status, gx10slots.render, gx10slots.kube.client, "
    "gx10slots.kube.kubeconfig"
)

FLOOR_SCRIPT = """
import base64, http.client, json, os, ssl, yaml
c = yaml.safe_load(open(os.environ["KUBECONFIG"]))
cl = c["clusters"][0]["cluster"]
tls = ssl.create_default_context(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())
conn = http.client.HTTPSConnection(cl["server"].split("//")[1], context=tls)
auth = {"Authorization": "Bearer " + c["users"][0]["user"]["token"]}
for p in ("/apis/apps/v1/namespaces/gx10/deployments/gx10-blue",
          "/apis/apps/v1/namespaces/gx10/deployments/gx10-green",
          "/api/v1/namespaces/gx10/services/gx10-model", "/api/v1/nodes/gx10"):
    conn.request("GET", p, headers=auth)
    json.loads(conn.getresponse().read())
"""


def importtime_by_package(stderr: str) -> dict[str, float]:
    """Self import time (ms) per top-level package, from ``python -X importtime`` output."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = float(parts[0].split(":")[1])
        except (IndexError, ValueError):
            continue
        package = parts[2].strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + self_us / 1000
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def chat_body() -> dict[str, Any]:
    from gx10slots.smoke import wire
    from gx10slots.smoke.profiles import get_profile
    from gx10slots.smoke.settings import SuiteSettings

    settings = SuiteSettings()
    return wire.chat_body(
        get_profile("vllm"),
        "bench",
        settings.prompt,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
    )


def raw_requests(url: str, n: int) -> list[float]:
    """The floor: the same chat request with stdlib http.client; client time - server time."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    body = json.dumps(chat_body()).encode()
    headers = {"Content-Type": "application/json"}
    out = []
    for i in range(n + 1):
        started = now()
        conn.request("POST", "/v1/chat/completions", body, headers)
        response = conn.getresponse()
        json.loads(response.read())
        elapsed = (now() - started) * 1000
        if i:  # the first one opens the connection
            out.append(elapsed - float(response.headers["x-sandbox-server-ms"]))
    conn.close()
    return out


async def probe_requests(url: str, n: int, bursts: int) -> dict[str, list[float]]:
    """The smoke library's own probes against the fault server, one AsyncClient as in a suite."""
    import httpx

    from gx10slots.smoke.context import ProbeContext
    from gx10slots.smoke.probes import probe_burst, probe_known_answer
    from gx10slots.smoke.profiles import get_profile
    from gx10slots.smoke.settings import SuiteSettings

    server: list[float] = []

    async def on_response(response: httpx.Response) -> None:
        server.append(float(response.headers.get("x-sandbox-server-ms", "nan")))

    keys = ("overhead_ms", "server_ms", "probe_ms", "httpx_ms", "burst1_ms", "burst8_ms")
    out: dict[str, list[float]] = {k: [] for k in keys}
    profile = get_profile("vllm")
    body = chat_body()
    async with httpx.AsyncClient(
        base_url=url, event_hooks={"response": [on_response]}, trust_env=False
    ) as client:
        one = ProbeContext(client, "bench", profile, SuiteSettings())
        await probe_known_answer(one, 10.0)  # opens the connection
        for _ in range(n):
            # httpx alone, the same request: the transport's share of the overhead.
            server.clear()
            started = now()
            response = await client.post("/v1/chat/completions", json=body)
            response.json()
            out["httpx_ms"].append((now() - started) * 1000 - server[0])
            server.clear()
            result = await probe_known_answer(one, 10.0)
            if not result.passed or len(server) != 1:
                raise BenchError(f"known-answer probe: {result.detail}")
            out["overhead_ms"].append(result.duration_ms - server[0])
            out["server_ms"].append(server[0])
            out["probe_ms"].append(result.duration_ms)
        single = ProbeContext(client, "bench", profile, SuiteSettings(burst=1))
        eight = ProbeContext(client, "bench", profile, SuiteSettings(burst=8))
        await probe_burst(eight, 10.0)  # warm-up
        for _ in range(bursts):
            for ctx, key in ((single, "burst1_ms"), (eight, "burst8_ms")):
                result = await probe_burst(ctx, 10.0)
                if not result.passed:
                    raise BenchError(f"burst probe: {result.detail}")
                out[key].append(result.duration_ms)
    return out
