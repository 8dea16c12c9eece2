"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), recording what it accepts.

Usage::

    def test_x(smtp_sink: SmtpSink) -> None:
        smtp_sink.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
        smtp_sink.data_reply = "451 4.3.0 try later"
        ... SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, security="none") ...
        assert smtp_sink.messages[0].message["Subject"] == ...

Replies are plain SMTP reply lines; ``None`` means accept. Options to the
constructor turn on STARTTLS (with a certificate the test provides) and
AUTH (with the only accepted username/password). Register the fixtures in a
test module with ``from tests.smtp_server import smtp_sink  # noqa: F401``.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    message: EmailMessage


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.sink.mail_reply is not None:
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.sink.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.drop_after_data:
            # The message arrived, but the client never hears the 250 (RFC 1047's gap).
            raw = bytes(envelope.original_content)
            self.sink._record(envelope.mail_from, envelope.rcpt_tos, raw)
            server.transport.abort()
            return "250 OK"
        if self.sink.data_reply is not None:
            return self.sink.data_reply
        self.sink._record(envelope.mail_from, envelope.rcpt_tos, bytes(envelope.original_content))
        return "250 Message accepted"


class SmtpSink:
    """An aiosmtpd server in a thread; inspect `messages`, steer the replies."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.mail_reply: str | None = None
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.drop_after_data = False
        self.messages: list[Received] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self.host = "127.0.0.1"
        self.port = _free_port()
        options: dict[str, Any] = {}
        if tls_context is not None and not implicit_tls:
            options["tls_context"] = tls_context
        if credentials is not None:
            options["authenticator"] = self._authenticator(credentials)
            options["auth_require_tls"] = tls_context is not None
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=tls_context if implicit_tls else None,
            **options,
        )

    def _authenticator(self, credentials: tuple[str, str]) -> Any:
        expected = (credentials[0].encode(), credentials[1].encode())

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            if isinstance(data, LoginPassword) and (data.login, data.password) == expected:
                self.logins.append(data.login.decode())
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        return authenticate

    def _record(self, sender: str, recipients: list[str], raw: bytes) -> None:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(Received(sender, tuple(recipients), raw, parsed))

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_certificate(directory: Path, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `common_name` (as CN and IP SAN): (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={common_name}", "-addext", f"subjectAltName=IP:{common_name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain SMTP server (no STARTTLS, no AUTH) accepting everything unless told otherwise."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
