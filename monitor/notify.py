"""Deliver a rendered digest: SMTP, or an .eml file in the outbox. Decides nothing.

Every failure is a `DeliveryError` that says whether retrying can help
(`permanent`) and whether the server may have received the message anyway
(`maybe_delivered`: the connection broke after the message data was sent but
before the server's reply, RFC 1047's synchronisation gap). The caller keeps
such a digest claimed and re-sends it with the same Message-ID rather than
releasing its hits into a second, different message.

TLS always verifies the server certificate and host name with
`ssl.create_default_context()` (smtplib's default does neither, so a
man in the middle could read the digest and the password), and ``security: starttls`` fails when the server does
not offer STARTTLS instead of silently sending in clear.
"""

from __future__ import annotations

import contextlib
import email.generator
import email.utils
import io
import logging
import os
import re
import smtplib
import socket
import ssl
import tempfile
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.errors import DeliveryError

if TYPE_CHECKING:
    from monitor.config import DigestSettings, SmtpSettings

log = logging.getLogger(__name__)


def deliver(message: EmailMessage, settings: DigestSettings) -> str:
    """Send by SMTP when configured, else write to the outbox; returns what was done."""
    if settings.smtp is None:
        path = write_outbox(message, settings.outbox)
        return f"written to {path}"
    send_smtp(message, settings.smtp)
    recipients = ", ".join(address for _, address in _addresses(message, "To"))
    return f"sent to {recipients} via {settings.smtp.host}:{settings.smtp.port}"


def send_smtp(message: EmailMessage, settings: SmtpSettings) -> None:
    """Send `message` to the addresses in its To header. Raises `DeliveryError`."""
    server = f"{settings.host}:{settings.port}"
    sender = _addresses(message, "From")
    recipients = [address for _, address in _addresses(message, "To")]
    if not sender or not recipients:
        raise DeliveryError(
            "the digest has no sender or no recipients: set digest.from and "
            "digest.to in feeds.yaml",
            permanent=True,
        )
    payload = _as_smtp_bytes(message)
    context = ssl.create_default_context()
    client = _client(settings, context)
    with _SessionDeadline(client, settings.timeout) as deadline:
        try:
            try:
                code, reply = client.connect(settings.host, settings.port)
                if code != 220:  # what smtplib's constructor checks when it connects itself
                    client.close()
                    raise smtplib.SMTPConnectError(code, reply)
            except (OSError, smtplib.SMTPException) as error:
                raise _classify(error, f"cannot connect to the SMTP server {server}") from error
            try:
                _secure_and_login(client, settings, context, server)
                _transmit(client, sender[0][1], recipients, payload, server)
            except DeliveryError:
                raise
            except (OSError, smtplib.SMTPException) as error:
                raise _classify(error, f"sending the digest through {server} failed") from error
            finally:
                _quit_quietly(client)
        except DeliveryError as error:
            if not deadline.expired:
                raise
            raise DeliveryError(
                f"the SMTP session with {server} took longer than {settings.timeout:g} s "
                f"(digest.smtp.timeout bounds the whole delivery) and was cut: {error}",
                permanent=False,
                maybe_delivered=error.maybe_delivered,
            ) from error


class _SessionDeadline:
    """Cuts the connection when a whole delivery takes longer than ``seconds``.

    smtplib's timeout bounds each read, so a server that answers one byte every few
    seconds could hold a delivery, and the daemon's digest checks behind it, for hours.
    A watcher thread shuts the socket down at the deadline; the read in progress then
    fails at once and the delivery is reported as cut.
    """

    def __init__(self, client: smtplib.SMTP, seconds: float) -> None:
        self.expired = False
        self._client = client
        self._seconds = seconds
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="smtp-deadline", daemon=True)

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.expired = True
        # The socket may not exist yet (still connecting): look again until the session ends.
        while not self._done.is_set():
            sock = self._client.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._done.wait(0.05)

    def __enter__(self) -> _SessionDeadline:
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._watcher.join()


def write_outbox(message: EmailMessage, outbox: Path) -> Path:
    """Write `message` atomically as ``<outbox>/<Message-ID>.eml``.

    Named after the Message-ID, so writing the same digest again (after a
    crash) replaces the file instead of adding a second one.
    """
    message_id = message["Message-ID"]
    if not message_id:
        raise ValueError("a digest written to the outbox needs a Message-ID")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message_id).strip().strip("<>")) or "digest"
    target = outbox / f"{name}.eml"
    payload = message.as_bytes(policy=message.policy.clone(linesep="\n"))
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=outbox, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(outbox)
    except OSError as error:
        raise DeliveryError(
            f"cannot write the digest to {target}: {error.strerror or error}; "
            "check that the digest.outbox directory is writable and the disk is not full",
            permanent=False,
        ) from error
    return target


# --------------------------------------------------------------------------- SMTP steps


def _client(settings: SmtpSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    """An SMTP client not connected yet, so the session deadline covers the greeting too."""
    client: smtplib.SMTP
    if settings.security == "ssl":
        client = smtplib.SMTP_SSL(timeout=settings.timeout, context=context)
    else:
        client = smtplib.SMTP(timeout=settings.timeout)
    # The constructor records the host name for TLS certificate checks only when it
    # connects itself; `connect` does not.
    client._host = settings.host  # type: ignore[attr-defined]
    return client


def _secure_and_login(
    client: smtplib.SMTP, settings: SmtpSettings, context: ssl.SSLContext, server: str
) -> None:
    client.ehlo()
    if settings.security == "starttls":
        if not client.has_extn("starttls"):
            raise DeliveryError(
                f"the SMTP server {server} does not offer STARTTLS, and security is "
                "'starttls': refusing to send in clear. Use the server's STARTTLS port "
                "(usually 587), or 'ssl' on port 465",
                permanent=True,
            )
        client.starttls(context=context)
        client.ehlo()
    if settings.username is None:
        return
    if not client.has_extn("auth"):
        hint = (
            " (many servers only offer it after TLS: set security to 'starttls' or 'ssl')"
            if settings.security == "none"
            else ""
        )
        raise DeliveryError(
            f"the SMTP server {server} does not offer authentication (AUTH) but a "
            f"username is configured{hint}; remove digest.smtp.username if the server "
            "needs no login",
            permanent=True,
        )
    client.login(settings.username, settings.password or "")


def _transmit(
    client: smtplib.SMTP, sender: str, recipients: list[str], payload: bytes, server: str
) -> None:
    """MAIL, RCPT for each recipient, DATA: smtplib.sendmail with each phase told apart."""
    code, reply = client.mail(sender)
    if code != 250:
        _reset_quietly(client)
        raise DeliveryError(
            f"{server} refused the sender {sender}: {code} {_text(reply)}",
            permanent=code >= 500,
        )
    refused: dict[str, tuple[int, str]] = {}
    for recipient in recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, _text(reply))
    if len(refused) == len(recipients):
        _reset_quietly(client)
        details = "; ".join(f"{who}: {code} {text}" for who, (code, text) in refused.items())
        raise DeliveryError(
            f"{server} refused every recipient ({details})",
            permanent=all(code >= 500 for code, _ in refused.values()),
        )
    for recipient, (code, text) in refused.items():
        log.warning(
            "%s refused recipient %s: %d %s; sent to the others", server, recipient, code, text
        )
    try:
        code, reply = client.data(payload)
    except smtplib.SMTPDataError as error:  # the server answered DATA with an error
        raise _classify(error, f"{server} refused the digest") from error
    except (OSError, smtplib.SMTPServerDisconnected) as error:
        raise DeliveryError(
            f"the connection to {server} broke while sending the digest ({error}); "
            "the server may have received it, so it will be re-sent with the same Message-ID",
            permanent=False,
            maybe_delivered=True,
        ) from error
    if code != 250:
        raise DeliveryError(
            f"{server} refused the digest: {code} {_text(reply)}", permanent=code >= 500
        )


def _classify(error: Exception, context: str) -> DeliveryError:
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"{context}: login refused ({error.smtp_code} {_text(error.smtp_error)}); "
            "check digest.smtp.username and password",
            permanent=True,
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"{context}: {error}", permanent=True)
    if isinstance(error, smtplib.SMTPResponseException):
        return DeliveryError(
            f"{context}: {error.smtp_code} {_text(error.smtp_error)}",
            permanent=error.smtp_code >= 500,
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"{context}: the server's TLS certificate is not valid ({error.verify_message}); "
            "fix the certificate or use the host name it was issued for",
            permanent=True,
        )
    if isinstance(error, ssl.SSLError):
        return DeliveryError(f"{context}: TLS failed ({error})", permanent=False)
    # Refused, reset, timed out, disconnected, DNS failure: worth retrying later.
    return DeliveryError(f"{context}: {error}", permanent=False)


# --------------------------------------------------------------------------- helpers


def _addresses(message: EmailMessage, header: str) -> list[tuple[str, str]]:
    values = [str(value) for value in message.get_all(header, [])]
    return [(name, address) for name, address in email.utils.getaddresses(values) if address]


def _as_smtp_bytes(message: EmailMessage) -> bytes:
    buffer = io.BytesIO()
    generator = email.generator.BytesGenerator(buffer, policy=message.policy.clone(linesep="\r\n"))
    generator.flatten(message)
    return buffer.getvalue()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _reset_quietly(client: smtplib.SMTP) -> None:
    # The refusal already explains the failure; QUIT or close follows.
    with contextlib.suppress(OSError, smtplib.SMTPException):
        client.rset()


def _quit_quietly(client: smtplib.SMTP) -> None:
    # After a 250 for DATA the digest is delivered: a failing QUIT must not say otherwise.
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
