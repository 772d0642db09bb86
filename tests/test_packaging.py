"""A plain (non-editable) install ships the test page and the console script.

The wheel is built from a copy of the source tree (so the shared work tree gets
no `build/` or `*.egg-info`), then unpacked as `pip install --target` would lay
it out, and the service is started from that copy, not from the editable one.
"""

from __future__ import annotations

import asyncio
import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServiceFactory
from tests.support import ROOT

WEB_FILES = (
    "web_push_test.html",
    "web_push_test.js",
    "sw.js",
    "subscription_sync.js",
    "web_push_test.css",
)
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "node_modules",
    "*_cache",
    ".bench",
    ".hypothesis",
    "__pycache__",
    "build",
    "dist",
    "*.egg-info",
    "test-artifacts",
    ".env",
    ".vapid-dev-key.pem",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("push_service-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_test_page_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points_name = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(entry_points_name).decode()
        page = archive.read("push_service/web/web_push_test.html").decode()

    for name in WEB_FILES:
        assert f"push_service/web/{name}" in names, name
    assert "push_service/web/__init__.py" in names
    assert 'src="/web_push_test/web_push_test.js"' in page
    # Every module of the source tree, subpackages included (setup.cfg lists them by name).
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "push_service").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert {"push_service/__main__.py", "push_service/main.py"} <= names
    assert not any(n.startswith(("tests/", "web/", "scripts/")) for n in names), sorted(names)
    assert not any(n.endswith((".pem", ".env", ".pyc")) for n in names), sorted(names)
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser["console_scripts"]["push-service"].strip() == "push_service.main:main"


async def test_installed_wheel_serves_the_test_page(
    wheel: Path, tmp_path: Path, service_factory: ServiceFactory
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env_path = {"PYTHONPATH": str(site)}
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import importlib.resources as r, push_service.web as w; "
        "print(r.files(w).joinpath('web_push_test.html'))",
        env={"PATH": "/usr/bin:/bin", **env_path},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(probe.communicate(), 30)
    assert probe.returncode == 0
    page_path = Path(stdout.decode().strip())
    assert page_path.is_relative_to(site), page_path  # the installed copy, not the editable one

    service = await service_factory(**env_path)

    async with aiohttp.ClientSession() as session:
        for name in WEB_FILES:
            url = f"{service.base_url}/web_push_test/{name}"
            async with session.get(url) as response:
                assert response.status == 200, name
                assert await response.read() == (site / "push_service/web" / name).read_bytes()
