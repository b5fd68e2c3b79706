"""eventscope: record every event on RabbitMQ exchanges, watch them live, trace and replay.

The repository keeps `backend/`, `web/`, `templates/` and `static/` at its top; this package
holds them (as symlinks in the repo, as directories in the wheel) under one import name:
`eventscope.backend` (everything that is not HTTP) and `eventscope.web` (the HTTP layer).
"""

__version__ = "0.1.0"
