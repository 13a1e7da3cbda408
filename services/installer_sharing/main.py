"""Wiring of installer_sharing: settings and the installer directory in, a runnable Service out."""

from __future__ import annotations

from pathlib import Path

from schemas import AccessRequested, PersonalDataCorrected
from services.installer_sharing.access import answer_access
from services.installer_sharing.correction import tell_installers_of_correction
from services.installer_sharing.directory import Installers, parse_directory, sandbox_directory
from services.installer_sharing.handlers import HANDLERS, SERVICE
from services.installer_sharing.models import metadata
from services.installer_sharing.settings import InstallerSharingSettings
from shared.service import Service


def build() -> Service:
    """installer_sharing with its directory read now, so a broken directory stops the start, not an event."""
    settings = InstallerSharingSettings()
    allowed = settings.plain_http_host_set()
    directory = parse_directory(settings.directory, allowed) if settings.directory.strip() \
        else sandbox_directory(settings.sandbox_url, allowed)
    return Service(
        name=SERVICE,
        handlers={**HANDLERS, AccessRequested: answer_access, PersonalDataCorrected: tell_installers_of_correction},
        metadata=metadata,
        migrations=Path(__file__).parent / "migrations",
        build_deps=lambda _engine: Installers(directory, attempts=settings.http_attempts,
                                                 plain_http_hosts=allowed),
        close_deps=lambda installers: installers.close(),
    )
