"""Digests in the store: which hits each digest carried, and the claim, finish and
release that make delivery exactly-once (see `DigestRecords.claim_digest`)."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.config.settings import DEFAULT_DIGEST_NAME
from monitor.errors import StorageError
from monitor.models import AlertRoutes, ClaimedDigest
from monitor.store.connections import Connections
from monitor.store.rows import (
    HIT_COLUMNS,
    HIT_JOINS,
    from_db,
    required_time,
    stored_hit,
    to_db,
    with_copies,
)


def _message_id(db_path: Path, key: str) -> str:
    digest = hashlib.sha256(f"{db_path}{key}".encode()).hexdigest()[:12]
    safe_key = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    return f"<digest-{safe_key}-{digest}@monitor.local>"


def _recorded_since(conn: sqlite3.Connection, name: str) -> tuple[bool, str]:
    """(recorded, since) of the digest `name`: where its hits start, or for a digest not
    yet recorded, where they would (the last time any digest was made; "" for the first)."""
    row = conn.execute("SELECT since FROM digest_names WHERE name = ?", [name]).fetchone()
    if row is not None:
        return True, str(row["since"])
    latest = conn.execute("SELECT MAX(created_at) FROM digests").fetchone()[0]
    return False, latest or ""


def _unsent(name: str, since: str, watchlists: Collection[str] | None) -> tuple[str, list[Any]]:
    """SQL condition on `hits`: the hits the digest `name` should carry and has not."""
    where = """
        hits.quiet = 0 AND hits.found_at >= ?
        AND NOT EXISTS (
            SELECT 1 FROM digest_hits WHERE digest_hits.name = ? AND digest_hits.hit_id = hits.id
        )
    """
    parameters: list[Any] = [since, name]
    if watchlists is not None:
        where += " AND hits.watchlist IN (SELECT value FROM json_each(?))"
        parameters.append(json.dumps(sorted(watchlists)))
    return where, parameters


class DigestRecords:
    """The digest part of `Store` (see `monitor.store.database`)."""

    path: Path
    _db: Connections
    _alert_routes: AlertRoutes

    def claim_digest(
        self,
        key: str,
        *,
        now: datetime,
        name: str = DEFAULT_DIGEST_NAME,
        watchlists: Collection[str] | None = None,
        passed_over: Collection[str] = (),
        allow_empty: bool = False,
    ) -> ClaimedDigest | None:
        """Reserve for the digest `name` the hits of its period `key`.

        Each digest has its own exactly-once record: a hit goes out once in every
        digest whose `watchlists` (None: all) include its watchlist, and only in digests
        that existed when it was found (see `_digest_since`). Returns, in order of
        precedence:

        1. a digest of `name` left in state ``sending`` by a crash or an uncertain send,
           *whatever its key*, unless its key is in `passed_over` (already tried by the
           caller), with its own hits and Message-ID: send it again, then finish or
           release it using ``claimed.key`` and claim again;
        2. None if `key` was already sent or ran empty, or is itself left sending;
        3. a new digest holding every hit of its watchlists it has not carried yet
           (quiet backfills excepted), or None after recording `key` as empty; with
           `allow_empty` (something else to report), a digest without hits instead.
        """
        message_id = _message_id(self.path, key)
        skipped = list(passed_over)
        with self._db.write(f"claiming digest {key}") as conn:
            stuck = conn.execute(
                f"""
                SELECT * FROM digests
                WHERE name = ? AND state = 'sending'
                    AND key NOT IN ({", ".join("?" * len(skipped))})
                ORDER BY created_at, key LIMIT 1
                """,
                [name, *skipped],
            ).fetchone()
            if stuck is not None:
                conn.execute(
                    "UPDATE digests SET attempts = attempts + 1 WHERE key = ?", [stuck["key"]]
                )
                return self._claimed(conn, stuck["key"])
            row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
            if row is not None and row["state"] in ("sent", "empty", "sending"):
                return None
            since = self._digest_since(conn, name, now)
            where, parameters = _unsent(name, since, watchlists)
            pending = conn.execute(f"SELECT COUNT(*) FROM hits WHERE {where}", parameters)
            count = pending.fetchone()[0]
            state = "sending" if count or allow_empty else "empty"
            # A failed earlier attempt keeps its row (and Message-ID): it was never delivered.
            conn.execute(
                """
                INSERT INTO digests (key, name, message_id, state, created_at, attempts)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                    attempts = attempts + excluded.attempts
                """,
                [key, name, message_id, state, to_db(now), 1 if state == "sending" else 0],
            )
            if state == "empty":
                return None
            conn.execute(
                f"""
                INSERT INTO digest_hits (name, hit_id, digest_key)
                SELECT ?, id, ? FROM hits WHERE {where}
                """,
                [name, key, *parameters],
            )
            # The first digest to carry a hit is also noted on the hit (`monitor hits`).
            conn.execute(
                """
                UPDATE hits SET digest_key = ? WHERE digest_key IS NULL
                    AND id IN (SELECT hit_id FROM digest_hits WHERE digest_key = ?)
                """,
                [key, key],
            )
            return self._claimed(conn, key)

    def _digest_since(self, conn: sqlite3.Connection, name: str, now: datetime) -> str:
        """Where the hits of the digest `name` start, recorded when it is first seen: the
        last time any digest was made. A digest added to the configuration carries the
        hits no digest has looked at yet, not a backlog that others already sent; the
        first digest of a database carries every hit."""
        known, since = _recorded_since(conn, name)
        if known:
            return since
        conn.execute(
            "INSERT INTO digest_names (name, since, registered_at) VALUES (?, ?, ?)",
            [name, since, to_db(now)],
        )
        return since

    def register_digest(self, name: str, *, now: datetime) -> datetime | None:
        """Note that the digest `name` exists from `now`, if it was not known; returns when
        it was first seen (None for the digest that predates this record). The daemon
        calls it before asking whether the digest is due: a new digest's first issue is
        at its first scheduled time after that, not at once."""
        with self._db.write(f"registering digest {name}") as conn:
            self._digest_since(conn, name, now)
            row = conn.execute(
                "SELECT registered_at FROM digest_names WHERE name = ?", [name]
            ).fetchone()
        return from_db(row["registered_at"] or None)

    def digest_registered(self, name: str) -> tuple[bool, datetime | None]:
        """(known, first seen) of the digest `name`, without recording anything."""
        rows = self._db.read(
            f"reading digest {name}",
            "SELECT registered_at FROM digest_names WHERE name = ?",
            [name],
        )
        if not rows:
            return False, None
        return True, from_db(rows[0]["registered_at"] or None)

    def preview_digest(
        self,
        *,
        now: datetime,
        name: str = DEFAULT_DIGEST_NAME,
        watchlists: Collection[str] | None = None,
    ) -> ClaimedDigest | None:
        """What a new digest `name` would hold now (for ``--dry-run``); claims and records
        nothing. A digest left ``sending`` by a crash is not included: it is re-sent as it was.
        """
        with self._db.errors(f"previewing digest {name}"):
            conn = self._db.connection()
            _, since = _recorded_since(conn, name)
            where, parameters = _unsent(name, since, watchlists)
            rows = conn.execute(
                f"SELECT {HIT_COLUMNS} {HIT_JOINS} WHERE {where} ORDER BY hits.id", parameters
            ).fetchall()
        if not rows:
            return None
        with self._db.errors("reading the other copies of the hits' stories"):
            hits = with_copies(self._db.connection(), [stored_hit(row) for row in rows])
        return ClaimedDigest(
            key="preview",
            message_id=_message_id(self.path, "preview"),
            hits=tuple(hits),
            created_at=now,
            attempts=0,
        )

    def pending_digest(self, name: str | None = None) -> ClaimedDigest | None:
        """A digest (of `name`, or any) left in state ``sending`` (killed or uncertain
        mid-send), if any."""
        rows = self._db.read(
            "looking for an unfinished digest",
            """
            SELECT key FROM digests WHERE state = 'sending' AND (? IS NULL OR name = ?)
            ORDER BY created_at, key LIMIT 1
            """,
            [name, name],
        )
        if not rows:
            return None
        with self._db.errors(f"reading digest {rows[0]['key']}"):
            return self._claimed(self._db.connection(), rows[0]["key"])

    def last_digest_done(self, name: str) -> datetime | None:
        """When the digest `name` last ran to the end: sent, or found nothing to send.
        A scheduled period that starts before this is not due any more."""
        rows = self._db.read(
            f"reading the history of digest {name}",
            """
            SELECT MAX(COALESCE(sent_at, created_at)) AS done FROM digests
            WHERE name = ? AND state IN ('sent', 'empty')
            """,
            [name],
        )
        return from_db(rows[0]["done"]) if rows else None

    def last_digest_sent(self, name: str) -> datetime | None:
        """When the digest `name` was last delivered: where its next issue's period starts."""
        rows = self._db.read(
            f"reading the history of digest {name}",
            "SELECT MAX(sent_at) AS sent FROM digests WHERE name = ? AND state = 'sent'",
            [name],
        )
        return from_db(rows[0]["sent"]) if rows else None

    def finish_digest(self, key: str, *, now: datetime) -> None:
        """The message was accepted (or written): its hits are sent for good."""
        with self._db.write(f"marking digest {key} as sent") as conn:
            state = self._digest_state(conn, key)
            if state == "sent":
                return
            if state != "sending":
                raise StorageError(
                    f"digest {key} in {self.path} is {state}, not being sent: "
                    "only a claimed digest can be finished"
                )
            conn.execute(
                "UPDATE digests SET state = 'sent', sent_at = ?, error = NULL WHERE key = ?",
                [to_db(now), key],
            )

    def release_digest(self, key: str, *, now: datetime, error: str) -> None:
        """Sending definitely failed: detach the hits so the next digest carries them."""
        with self._db.write(f"releasing digest {key}") as conn:
            state = self._digest_state(conn, key)
            if state != "sending":
                raise StorageError(
                    f"digest {key} in {self.path} is {state}, not being sent: "
                    "only a claimed digest can be released"
                )
            conn.execute("UPDATE hits SET digest_key = NULL WHERE digest_key = ?", [key])
            conn.execute("DELETE FROM digest_hits WHERE digest_key = ?", [key])
            conn.execute(
                "UPDATE digests SET state = 'failed', error = ? WHERE key = ?",
                [f"{to_db(now)}: {error}", key],
            )

    def digest_done_for(self, key: str) -> bool:
        """True when a digest with this key was sent, or ran with nothing to send."""
        rows = self._db.read(
            f"reading digest {key}", "SELECT state FROM digests WHERE key = ?", [key]
        )
        return bool(rows) and rows[0]["state"] in ("sent", "empty")

    def _digest_state(self, conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
        if row is None:
            raise StorageError(f"no digest with key {key} in {self.path}: claim it first")
        state: str = row["state"]
        return state

    def _claimed(self, conn: sqlite3.Connection, key: str) -> ClaimedDigest:
        digest = conn.execute("SELECT * FROM digests WHERE key = ?", [key]).fetchone()
        rows = conn.execute(
            f"""
            SELECT {HIT_COLUMNS} {HIT_JOINS}
            JOIN digest_hits ON digest_hits.hit_id = hits.id
            WHERE digest_hits.digest_key = ? ORDER BY hits.id
            """,
            [key],
        ).fetchall()
        return ClaimedDigest(
            key=key,
            message_id=digest["message_id"],
            hits=tuple(with_copies(conn, [stored_hit(row) for row in rows])),
            created_at=required_time(digest["created_at"]),
            attempts=digest["attempts"],
        )
