"""Run the API with uvicorn: ``serve(host, port, settings)`` (used by ``custody serve``)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from api.settings import Settings


def serve(host: str = "127.0.0.1", port: int = 8600, settings: Settings | None = None,
          *, log_level: str = "info") -> None:
    """Serve the ledger API on ``host:port`` (one process; group commit inside)."""
    app = create_app(settings or Settings())  # type: ignore[call-arg]
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False,
                server_header=False)
