"""The pywebpush baseline: sequential `pywebpush.webpush()` calls (runs in .bench/venv).

With `reuse_session` every call shares one `requests.Session` (keep-alive); without,
it is the plain `webpush()` of the library's README: a new TLS connection per push.
Either way pywebpush signs a VAPID JWT per call, as the library does.

`python -m bench.pywebpush_client CONFIG.json` (written by bench.baselines): sends
`warmup` pushes, POSTs `reset_url` so that the sink counts only the timed run, times
`n` pushes, and prints one JSON line {"n", "elapsed_s", "cpu_s", "status", "errors"}.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import make_payload


def send_batch(cfg: dict[str, Any], session: Any, count: int, offset: int) -> dict[str, Any]:
    # bench-only, untyped packages absent from the project's venv: typed as Any
    pywebpush = importlib.import_module("pywebpush")
    from py_vapid import Vapid

    vapid = Vapid.from_raw(cfg["vapid"]["private_key"].encode())
    subs = cfg["subscriptions"]
    status: dict[str, int] = {}
    errors: list[str] = []
    for i in range(offset, offset + count):
        try:
            response = pywebpush.webpush(
                subs[i % len(subs)],
                data=make_payload(i, cfg["payload_size"]).decode(),
                vapid_private_key=vapid,
                vapid_claims={"sub": cfg["vapid"]["subject"]},  # a fresh dict: it is written to
                ttl=cfg["ttl"],
                timeout=30,
                requests_session=session if cfg["reuse_session"] else None,
            )
            code = str(response.status_code)
        except pywebpush.WebPushException as exc:
            code = str(exc.response.status_code) if exc.response is not None else "error"
            if len(errors) < 5:
                errors.append(str(exc))
        status[code] = status.get(code, 0) + 1
    return {"status": status, "errors": errors}


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    requests = importlib.import_module("requests")
    session = requests.Session()
    session.verify = cfg["cafile"]
    warm = send_batch(cfg, session, cfg["warmup"], 0)
    if warm["status"] != {"201": cfg["warmup"]}:
        print(json.dumps({"phase": "warm-up", **warm}), flush=True)
        return 1
    session.post(cfg["reset_url"]).raise_for_status()
    started, cpu = time.perf_counter(), time.process_time()
    result = send_batch(cfg, session, cfg["n"], cfg["warmup"])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"n": cfg["n"], "elapsed_s": elapsed, "cpu_s": cpu, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
