"""SMTP sink: accepts every mail on a local port and keeps it in the sandbox state."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.sandbox.state import SandboxState


class MailSink:
    """aiosmtpd handler that records each accepted mail: from, to, subject, body."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        message = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain", "html"))
        self.state.record_mail(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "subject": str(message.get("Subject", "")),
                "body": part.get_content().replace("\r\n", "\n") if part is not None else "",
                "message_id": str(message.get("Message-ID", "")),
            }
        )
        return "250 Message accepted for delivery"


class SinkController(Controller):
    """aiosmtpd Controller that can listen on port 0 (a free port) and report the one it got."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def start_sink(state: SandboxState, host: str, port: int) -> SinkController:
    """Start the SMTP sink in its own thread; `.port` is the port it listens on."""
    controller = SinkController(MailSink(state), hostname=host, port=port, ready_timeout=5.0)
    controller.start()
    return controller
