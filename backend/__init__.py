"""eventscope's core: everything that is not HTTP (never imports litestar)."""
