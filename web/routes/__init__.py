"""Route handlers, one module per area: pages, API, live websocket, login."""
