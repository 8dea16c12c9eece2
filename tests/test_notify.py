"""Delivery against real SMTP servers on 127.0.0.1, and the .eml outbox."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.config import DigestSettings, SmtpSettings
from monitor.digest import build_digest, render_message
from monitor.errors import DeliveryError
from monitor.models import ClaimedDigest, StoredHit
from monitor.notify import deliver, send_smtp, write_outbox
from tests.servers import RawServer
from tests.smtp_server import SmtpSink, make_certificate, server_tls_context, smtp_sink

__all__ = ["smtp_sink"]  # the fixture, used by name

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
RECIPIENTS = ("alice@example.org", "bob@example.org")


def digest_message(
    message_id: str = "<digest-2026-11-28-abcdef012345@monitor.local>",
) -> EmailMessage:
    hit = StoredHit(
        hit_id=1,
        watchlist="accord",
        article_id=1,
        title="L’accord est signé",
        url="https://news.example/accord",
        feed="Le Monde",
        published=NOW,
        found_at=NOW,
        matched=("accord",),
        snippets=("Les ministres ont signé l’[[accord]].",),
    )
    claimed = ClaimedDigest(
        key="2026-11-28", message_id=message_id, hits=(hit,), created_at=NOW, attempts=1
    )
    tz = ZoneInfo("Europe/Paris")
    content = build_digest(claimed, watchlist_order=["accord"], tz=tz, now=NOW)
    return render_message(
        content,
        sender="monitor@example.org",
        recipients=RECIPIENTS,
        subject="monitor",
        message_id=message_id,
        tz=tz,
    )


def plain_settings(sink: SmtpSink, **changes: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": sink.host,
        "port": sink.port,
        "security": "none",
        "timeout": 10.0,
    }
    values.update(changes)
    return SmtpSettings(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- plain SMTP


def test_plain_delivery_reaches_the_server_with_both_parts(smtp_sink: SmtpSink) -> None:
    message = digest_message()
    description = deliver(message, DigestSettings(smtp=plain_settings(smtp_sink)))
    assert description == (
        f"sent to alice@example.org, bob@example.org via 127.0.0.1:{smtp_sink.port}"
    )
    [received] = smtp_sink.messages
    assert received.sender == "monitor@example.org"
    assert received.recipients == RECIPIENTS
    assert received.message["Message-ID"] == message["Message-ID"]
    plain = received.message.get_body(("plain",))
    html = received.message.get_body(("html",))
    assert plain is not None and "l’*accord*" in plain.get_content()
    assert html is not None and "l’<mark>accord</mark>" in html.get_content()
    assert max(len(line) for line in received.raw.split(b"\r\n")) <= 78  # 7-bit, short lines


def test_some_refused_recipients_still_deliver_to_the_others(
    smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_sink.rcpt_replies["bob@example.org"] = "550 5.1.1 no such user"
    send_smtp(digest_message(), plain_settings(smtp_sink))
    assert [received.recipients for received in smtp_sink.messages] == [("alice@example.org",)]
    assert "refused recipient bob@example.org: 550" in caplog.text


@pytest.mark.parametrize(
    ("replies", "permanent"),
    [
        ({"alice@example.org": "550 5.1.1 no", "bob@example.org": "553 5.1.3 bad"}, True),
        ({"alice@example.org": "550 5.1.1 no", "bob@example.org": "452 4.2.2 full"}, False),
    ],
)
def test_every_recipient_refused_is_an_error(
    smtp_sink: SmtpSink, replies: dict[str, str], permanent: bool
) -> None:
    smtp_sink.rcpt_replies.update(replies)
    with pytest.raises(DeliveryError) as raised:
        send_smtp(digest_message(), plain_settings(smtp_sink))
    assert raised.value.permanent is permanent
    assert raised.value.maybe_delivered is False
    assert "refused every recipient" in str(raised.value)
    assert "alice@example.org: 550" in str(raised.value)
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.7.1 message rejected as spam", True), ("451 4.3.0 try again later", False)],
)
def test_data_refusal_is_classified_by_its_code(
    smtp_sink: SmtpSink, reply: str, permanent: bool
) -> None:
    smtp_sink.data_reply = reply
    with pytest.raises(DeliveryError) as raised:
        send_smtp(digest_message(), plain_settings(smtp_sink))
    assert raised.value.permanent is permanent
    assert raised.value.maybe_delivered is False
    assert reply.split()[0] in str(raised.value)
    assert f"127.0.0.1:{smtp_sink.port}" in str(raised.value)


def test_sender_refused_is_an_error(smtp_sink: SmtpSink) -> None:
    smtp_sink.mail_reply = "553 5.7.1 sender not allowed"
    with pytest.raises(DeliveryError, match=r"refused the sender monitor@example\.org") as raised:
        send_smtp(digest_message(), plain_settings(smtp_sink))
    assert raised.value.permanent is True


def test_connection_dropped_after_the_data_may_have_delivered(smtp_sink: SmtpSink) -> None:
    smtp_sink.drop_after_data = True
    with pytest.raises(DeliveryError) as raised:
        send_smtp(digest_message(), plain_settings(smtp_sink))
    assert raised.value.maybe_delivered is True
    assert raised.value.permanent is False
    assert len(smtp_sink.messages) == 1  # the server did get it: re-send with the same ID


def test_connection_refused_is_temporary() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5)
    with pytest.raises(
        DeliveryError, match=f"cannot connect to the SMTP server 127.0.0.1:{port}"
    ) as raised:
        send_smtp(digest_message(), settings)
    assert raised.value.permanent is False
    assert raised.value.maybe_delivered is False


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=0.3)
        with pytest.raises(DeliveryError) as raised:
            send_smtp(digest_message(), settings)
    assert raised.value.permanent is False


def test_starttls_required_but_not_offered_refuses_to_send(smtp_sink: SmtpSink) -> None:
    with pytest.raises(DeliveryError, match="does not offer STARTTLS") as raised:
        send_smtp(digest_message(), plain_settings(smtp_sink, security="starttls"))
    assert raised.value.permanent is True
    assert smtp_sink.messages == []


def test_credentials_without_auth_offered_is_a_clear_error(smtp_sink: SmtpSink) -> None:
    settings = plain_settings(smtp_sink, username="monitor", password="secret")
    with pytest.raises(DeliveryError, match="does not offer authentication") as raised:
        send_smtp(digest_message(), settings)
    assert raised.value.permanent is True
    assert "remove digest.smtp.username" in str(raised.value)
    assert smtp_sink.messages == []


def test_no_recipients_is_a_configuration_error(smtp_sink: SmtpSink) -> None:
    message = digest_message()
    del message["To"]
    with pytest.raises(DeliveryError, match=r"digest\.to") as raised:
        send_smtp(message, plain_settings(smtp_sink))
    assert raised.value.permanent is True


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


@pytest.fixture
def trust_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # ssl.create_default_context() reads SSL_CERT_FILE: the test CA becomes the only trusted one.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    yield


def _started(sink: SmtpSink) -> SmtpSink:
    sink.start()
    return sink


def test_starttls_with_login_delivers(
    certificate: tuple[Path, Path], trust_certificate: None
) -> None:
    sink = _started(
        SmtpSink(tls_context=server_tls_context(*certificate), credentials=("monitor", "s3cret"))
    )
    try:
        settings = SmtpSettings(
            host=sink.host,
            port=sink.port,
            security="starttls",
            username="monitor",
            password="s3cret",
            timeout=10,
        )
        send_smtp(digest_message(), settings)
        assert sink.logins == ["monitor"]
        assert len(sink.messages) == 1
    finally:
        sink.stop()


def test_wrong_password_is_permanent(
    certificate: tuple[Path, Path], trust_certificate: None
) -> None:
    sink = _started(
        SmtpSink(tls_context=server_tls_context(*certificate), credentials=("monitor", "s3cret"))
    )
    try:
        settings = SmtpSettings(
            host=sink.host, port=sink.port, username="monitor", password="wrong", timeout=10
        )
        with pytest.raises(DeliveryError, match="login refused") as raised:
            send_smtp(digest_message(), settings)
        assert raised.value.permanent is True
        assert sink.messages == []
    finally:
        sink.stop()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path], security: str) -> None:
    sink = _started(
        SmtpSink(tls_context=server_tls_context(*certificate), implicit_tls=security == "ssl")
    )
    try:
        settings = SmtpSettings(host=sink.host, port=sink.port, security=security, timeout=10)  # type: ignore[arg-type]
        with pytest.raises(DeliveryError, match="certificate is not valid") as raised:
            send_smtp(digest_message(), settings)
        assert raised.value.permanent is True
        assert sink.messages == []
    finally:
        sink.stop()


def test_implicit_tls_delivers(certificate: tuple[Path, Path], trust_certificate: None) -> None:
    sink = _started(SmtpSink(tls_context=server_tls_context(*certificate), implicit_tls=True))
    try:
        send_smtp(digest_message(), SmtpSettings(host=sink.host, port=sink.port, security="ssl"))
        assert len(sink.messages) == 1
    finally:
        sink.stop()


# --------------------------------------------------------------------------- outbox


def test_outbox_write_is_named_by_message_id_and_idempotent(tmp_path: Path) -> None:
    outbox = tmp_path / "digests"
    message = digest_message()
    first = write_outbox(message, outbox)
    second = write_outbox(message, outbox)
    assert first == second == outbox / "digest-2026-11-28-abcdef012345_monitor.local.eml"
    assert sorted(path.name for path in outbox.iterdir()) == [first.name]  # no temp files left
    assert first.read_bytes() == message.as_bytes(policy=message.policy.clone(linesep="\n"))
    description = deliver(message, DigestSettings(outbox=outbox))
    assert description == f"written to {first}"


def test_outbox_replaces_atomically_while_a_reader_watches(tmp_path: Path) -> None:
    outbox = tmp_path / "digests"
    small, large = digest_message(), digest_message()
    large.add_header("X-Padding", "x" * 200_000)  # a bigger version of the same digest
    target = write_outbox(small, outbox)
    sizes = {target.stat().st_size, write_outbox(large, outbox).stat().st_size}
    stop = threading.Event()
    observed: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            observed.add(len(target.read_bytes()))

    watcher = threading.Thread(target=reader)
    watcher.start()
    for round_ in range(30):
        write_outbox(small if round_ % 2 else large, outbox)
    stop.set()
    watcher.join(10)
    assert observed <= sizes  # never a truncated or half-written file


def test_outbox_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "digests"
    blocker.write_text("a file where the outbox directory should be")
    with pytest.raises(DeliveryError, match=r"check that the digest\.outbox directory") as raised:
        write_outbox(digest_message(), blocker)
    assert raised.value.permanent is False
    assert str(blocker) in str(raised.value)


def test_outbox_needs_a_message_id(tmp_path: Path) -> None:
    message = digest_message()
    del message["Message-ID"]
    with pytest.raises(ValueError, match="Message-ID"):
        write_outbox(message, tmp_path)
    assert os.listdir(tmp_path) == []


def _dripping_smtp(
    after: bytes, interval: float
) -> Callable[[socket.socket, threading.Event], None]:
    """An SMTP server that answers normally until it reads ``after``, then sends its next
    reply one byte every ``interval`` seconds."""

    def handler(connection: socket.socket, stopping: threading.Event) -> None:
        connection.settimeout(10)
        replies = {
            b"EHLO": b"250 ok\r\n",
            b"MAIL": b"250 ok\r\n",
            b"RCPT": b"250 ok\r\n",
            b"DATA": b"354 go on\r\n",
            b".": b"250 queued\r\n",
            b"QUIT": b"221 bye\r\n",
        }

        def send(reply: bytes) -> None:
            for byte in reply:
                if stopping.wait(interval):
                    return
                connection.sendall(bytes([byte]))

        buffered = b""
        if after == b"":
            send(b"220 slow\r\n")
            return
        connection.sendall(b"220 ready\r\n")
        in_data = False
        while not stopping.is_set():
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffered += chunk
            while b"\r\n" in buffered:
                line, buffered = buffered.split(b"\r\n", 1)
                if in_data:
                    if line != b".":
                        continue
                    in_data, command = False, b"."
                else:
                    command = line.split(b" ")[0].upper()
                reply = replies.get(command, b"250 ok\r\n")
                if command == b"DATA":
                    in_data = True
                if command == after:
                    send(reply)
                    return
                connection.sendall(reply)

    return handler


@pytest.mark.parametrize(
    ("after", "interval", "maybe_delivered"),
    # After the data, the reply's first byte comes after the deadline: a "250" that did
    # arrive would mean the server took the message.
    [(b"", 0.4, False), (b".", 2.0, True)],
    ids=["greeting", "after-the-data"],
)
def test_a_server_that_drips_its_replies_is_cut_at_the_session_deadline(
    after: bytes, interval: float, maybe_delivered: bool
) -> None:
    with RawServer(_dripping_smtp(after, interval=interval)) as server:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=1.5)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"took longer than 1\.5 s") as raised:
            send_smtp(digest_message(), settings)
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"the whole delivery took {elapsed:.1f} s"
    assert raised.value.permanent is False
    assert raised.value.maybe_delivered is maybe_delivered
