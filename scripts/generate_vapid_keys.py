#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""Generate a fresh VAPID (P-256) key pair in the formats push_service accepts.

Prints the two .env lines

    VAPID_PRIVATE_KEY=<raw base64url private key, as web-push tools print it>
    VAPID_PUBLIC_KEY=<base64url uncompressed public point>

With --pem FILE the private key is also written as PKCS#8 PEM (mode 0600, never
overwriting an existing file); VAPID_PRIVATE_KEY may then be that file's path.
The public key is what browsers pass as `applicationServerKey`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric import ec

from push_service.vapid import (
    generate_private_key,
    private_key_pem,
    private_key_raw_b64,
    public_key_b64,
)


def write_pem(path: Path, key: ec.EllipticCurvePrivateKey, force: bool) -> None:
    """Write the PEM with mode 0600 from the start (no window where it is world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file (--force) keeps its old mode
        handle.write(private_key_pem(key))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Keep the private key secret; put it in .env or a secret store, not in git.",
    )
    p.add_argument("--pem", type=Path, metavar="FILE", help="also write the private key as PEM")
    p.add_argument("--force", action="store_true", help="overwrite an existing --pem FILE")
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    return p


def fail(message: str) -> NoReturn:
    print(f"generate_vapid_keys: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    key = generate_private_key()
    private, public = private_key_raw_b64(key), public_key_b64(key)
    if args.pem is not None:
        try:
            write_pem(args.pem, key, args.force)
        except FileExistsError:
            fail(f"{args.pem} exists; pass --force to overwrite it")
        except OSError as exc:
            fail(f"cannot write {args.pem}: {exc.strerror}")
    if args.json:
        document = {"private_key": private, "public_key": public}
        if args.pem is not None:
            document["pem_file"] = str(args.pem)
        print(json.dumps(document))
    else:
        print(f"VAPID_PRIVATE_KEY={private}")
        print(f"VAPID_PUBLIC_KEY={public}")
        if args.pem is not None:
            print(f"# PEM private key written to {args.pem} (mode 0600)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
