"""The installer-sharing slice's answer to an access request: which installers got the user's contact details,
and what each of them holds, read back from the installer's endpoint."""

from __future__ import annotations

from sqlalchemy import select

from schemas import AccessItem, AccessRequested
from services.installer_sharing.directory import Installers
from services.installer_sharing.models import Share
from shared.access import answer, plain
from shared.service import Context

SERVICE = "installer_sharing"


def answer_access(event: AccessRequested, ctx: Context[Installers]) -> None:
    """One item per installer: the purchases shared, and the contact records the installer holds for them."""
    shares = ctx.session.scalars(select(Share).where(Share.user_id == event.user_id)
                                 .order_by(Share.installer_id, Share.purchase_id)).all()
    by_installer: dict[str, list[Share]] = {}
    for share in shares:
        by_installer.setdefault(share.installer_id, []).append(share)
    items = []
    for installer_id, rows in by_installer.items():
        client = ctx.deps.client(installer_id)
        held = [record for row in rows for record in client.contacts_for(row.purchase_id)]
        items.append(AccessItem(
            category="contact details for an installation", held_by=f"installer:{installer_id}",
            data={"shared": [{"purchase_id": r.purchase_id, "shared_at": plain(r.shared_at)} for r in rows],
                  "held_by_installer": held},
            purpose="the physical installation of the monitoring service the user bought",
            recipients=[f"installer:{installer_id}"],
            retention="until the installation is done, and no longer than the user's account",
            legal_basis="contract, GDPR Art. 6(1)(b)"))
    ctx.emit(answer(event, SERVICE, items))
    ctx.log.info("access request answered", installers=sorted(by_installer))
