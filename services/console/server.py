"""Run the console: build the app from the environment and serve it with uvicorn (HTTPS when configured)."""

from __future__ import annotations

import uvicorn

from services.console.app import create_app
from services.console.settings import ConsoleSettings
from shared.logging import get_logger
from shared.settings import RuntimeSettings, database_url_for

log = get_logger(__name__)


def build(settings: ConsoleSettings | None = None, runtime: RuntimeSettings | None = None, *,
          sample: bool = True) -> object:
    """The console app for these settings (read from the environment when not given)."""
    settings = settings or ConsoleSettings()
    return create_app(settings, runtime or RuntimeSettings(),
                      ledger_url=settings.ledger_database_url or database_url_for("ledger"),
                      account_url=settings.account_database_url or database_url_for("account"), sample=sample)


def serve(settings: ConsoleSettings | None = None) -> None:
    """Serve until interrupted (uvicorn handles SIGINT/SIGTERM and drains open requests)."""
    settings = settings or ConsoleSettings()
    if not settings.users:
        log.warning("no console users configured: nobody can log in (set ERASURE_CONSOLE_USERS)")
    app = build(settings)
    scheme = "https" if settings.tls_cert else "http"
    log.info("console listening", url=f"{scheme}://{settings.host}:{settings.port}/")
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None,  # type: ignore[arg-type]
                ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
                ssl_keyfile=str(settings.tls_key) if settings.tls_key else None, server_header=False)
