"""Token endpoint (``POST /v3/auth/tokens``), mounted on the image API. Filled in by issue 4."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
