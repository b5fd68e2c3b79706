"""Type aliases for Litestar's connection objects (generic parameters nobody here uses)."""

from __future__ import annotations

from typing import Any

from litestar import Request, WebSocket

AnyRequest = Request[Any, Any, Any]
AnySocket = WebSocket[Any, Any, Any]
