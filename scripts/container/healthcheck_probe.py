"""Container health probe for push_service (stdlib only: the slim image has no curl).

Exit 0 when GET http://127.0.0.1:$PORT/health answers 2xx within the timeout,
exit 1 otherwise. Used by the Containerfile HEALTHCHECK and by compose.yaml.
Optional: HEALTHCHECK_URL overrides the whole URL, HEALTHCHECK_TIMEOUT (seconds).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("PORT", "3004")
    url = os.environ.get("HEALTHCHECK_URL", f"http://127.0.0.1:{port}/health")
    timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {url} answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return 0
    print(f"unhealthy: {url} answered HTTP {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
