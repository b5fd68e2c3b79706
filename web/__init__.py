"""The HTTP layer: Litestar app, pages, API, websocket, CLI."""
