"""The browser test page and its service worker, shipped as package data (`push_service.web`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def web_directory() -> Path:
    return Path(str(resources.files("push_service.web")))


class TestPageRoutes:
    def __init__(self) -> None:
        directory = web_directory()
        self.web_files = {p.name: p for p in directory.iterdir() if p.suffix in MEDIA_TYPES}

    def routes(self) -> list[Route]:
        return [
            Route("/web_push_test/", self.page_index, methods=["GET"]),
            Route("/web_push_test/{name}", self.page_file, methods=["GET"]),
        ]

    async def page_index(self, request: Request) -> Response:
        return RedirectResponse("/web_push_test/web_push_test.html", 308)

    async def page_file(self, request: Request) -> Response:
        path = self.web_files.get(request.path_params["name"])
        if path is None:
            raise HTTPException(404)
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)
