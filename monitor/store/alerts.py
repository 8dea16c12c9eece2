"""Alert deliveries in the store: one row per new hit and alert destination, written in
the transaction that records the hit, then marked sent, retried or given up."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from monitor.models import AlertDestinationStatus, AlertFailure, AlertRoutes, AlertTarget, DueAlert
from monitor.store.connections import Connections
from monitor.store.rows import HIT_COLUMNS, from_db, required_time, stored_hit, to_db


class AlertRecords:
    """The alert part of `Store` (see `monitor.store.database`)."""

    path: Path
    _db: Connections
    _alert_routes: AlertRoutes

    def set_alert_routes(self, routes: AlertRoutes) -> None:
        """Announce new hits of these watchlists to these destinations from the next
        `record` on (set from the configuration at start and at each reload)."""
        self._alert_routes = dict(routes)

    def _queue_alerts(
        self,
        conn: sqlite3.Connection,
        article_id: int,
        watchlist: str,
        targets: Sequence[AlertTarget],
        found_at: str | None,
    ) -> None:
        # Same transaction as the hit: either both are stored or neither.
        hit_id = conn.execute(
            "SELECT id FROM hits WHERE article_id = ? AND watchlist = ?", [article_id, watchlist]
        ).fetchone()["id"]
        conn.executemany(
            """
            INSERT OR IGNORE INTO alert_deliveries
                (hit_id, alert, url_key, destination, next_attempt, created_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """,
            [
                (hit_id, target.alert, target.url_key, target.destination, found_at, found_at)
                for target in targets
            ],
        )

    def due_alerts(self, now: datetime, *, limit: int = 1000) -> list[DueAlert]:
        """Deliveries waiting to be tried at `now`, the longest waiting first."""
        rows = self._db.read(
            "listing alerts to send",
            f"""
            SELECT {HIT_COLUMNS}, alert_deliveries.id AS delivery_id, alert_deliveries.alert,
                alert_deliveries.url_key, alert_deliveries.destination,
                alert_deliveries.attempts, alert_deliveries.created_at AS delivery_created
            FROM alert_deliveries
            JOIN hits ON hits.id = alert_deliveries.hit_id
            JOIN articles ON articles.id = hits.article_id
            JOIN feeds ON feeds.id = articles.first_feed_id
            WHERE alert_deliveries.state = 'pending' AND alert_deliveries.next_attempt <= ?
            ORDER BY alert_deliveries.next_attempt, alert_deliveries.id
            LIMIT ?
            """,
            [to_db(now), limit],
        )
        return [
            DueAlert(
                delivery_id=row["delivery_id"],
                hit=stored_hit(row),
                alert=row["alert"],
                url_key=row["url_key"],
                destination=row["destination"],
                attempts=row["attempts"],
                created_at=required_time(row["delivery_created"]),
            )
            for row in rows
        ]

    def alert_sent(self, delivery_id: int, *, now: datetime) -> None:
        """The destination accepted the alert: it is never sent again."""
        with self._db.write(f"marking alert delivery #{delivery_id} as sent") as conn:
            conn.execute(
                """
                UPDATE alert_deliveries SET state = 'sent', sent_at = ?, finished_at = ?,
                    attempts = attempts + 1, last_error = NULL
                WHERE id = ? AND state = 'pending'
                """,
                [to_db(now), to_db(now), delivery_id],
            )

    def alert_failed(
        self, delivery_id: int, *, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """An attempt failed: try again at `retry_at`, or give up (state failed) when None."""
        with self._db.write(f"recording a failed alert delivery #{delivery_id}") as conn:
            if retry_at is None:
                conn.execute(
                    """
                    UPDATE alert_deliveries SET state = 'failed', finished_at = ?,
                        attempts = attempts + 1, last_error = ?
                    WHERE id = ? AND state = 'pending'
                    """,
                    [to_db(now), error, delivery_id],
                )
            else:
                conn.execute(
                    """
                    UPDATE alert_deliveries SET next_attempt = ?, attempts = attempts + 1,
                        last_error = ?
                    WHERE id = ? AND state = 'pending'
                    """,
                    [to_db(retry_at), error, delivery_id],
                )

    def alert_cancelled(self, delivery_id: int, *, now: datetime, reason: str) -> None:
        """Never to be sent: its destination left the configuration (the digest still has the hit)."""
        with self._db.write(f"cancelling alert delivery #{delivery_id}") as conn:
            conn.execute(
                """
                UPDATE alert_deliveries SET state = 'cancelled', finished_at = ?, last_error = ?
                WHERE id = ? AND state = 'pending'
                """,
                [to_db(now), reason, delivery_id],
            )

    def failed_alerts(self, since: datetime) -> list[AlertFailure]:
        """Destinations whose alerts were given up on at or after `since`, for the digest's
        health section: how many hits each missed, and the last error."""
        rows = self._db.read(
            "listing failed alerts",
            """
            SELECT alert, url_key, COUNT(*) AS hits, MIN(finished_at) AS since,
                (SELECT destination FROM alert_deliveries AS latest
                 WHERE latest.alert = failed.alert AND latest.url_key = failed.url_key
                   AND latest.state = 'failed' ORDER BY latest.finished_at DESC, latest.id DESC
                 LIMIT 1) AS destination,
                (SELECT last_error FROM alert_deliveries AS latest
                 WHERE latest.alert = failed.alert AND latest.url_key = failed.url_key
                   AND latest.state = 'failed' ORDER BY latest.finished_at DESC, latest.id DESC
                 LIMIT 1) AS last_error
            FROM alert_deliveries AS failed
            WHERE state = 'failed' AND finished_at >= ?
            GROUP BY alert, url_key
            ORDER BY alert, destination
            """,
            [to_db(since)],
        )
        return [
            AlertFailure(
                alert=row["alert"],
                destination=row["destination"],
                hits=row["hits"],
                last_error=row["last_error"] or "",
                since=required_time(row["since"]),
            )
            for row in rows
        ]

    def alert_statuses(self) -> list[AlertDestinationStatus]:
        """Every destination that ever had a delivery: counts by state, last success,
        the latest error and the next try."""
        rows = self._db.read(
            "summarising alert deliveries",
            """
            SELECT alert, url_key,
                (SELECT destination FROM alert_deliveries AS latest
                 WHERE latest.alert = d.alert AND latest.url_key = d.url_key
                 ORDER BY latest.id DESC LIMIT 1) AS destination,
                SUM(state = 'pending') AS pending, SUM(state = 'sent') AS sent,
                SUM(state = 'failed') AS failed, MAX(sent_at) AS last_sent,
                MIN(CASE WHEN state = 'pending' THEN next_attempt END) AS next_attempt,
                (SELECT last_error FROM alert_deliveries AS latest
                 WHERE latest.alert = d.alert AND latest.url_key = d.url_key
                   AND latest.last_error IS NOT NULL AND latest.state IN ('pending', 'failed')
                 ORDER BY COALESCE(latest.finished_at, latest.next_attempt) DESC, latest.id DESC
                 LIMIT 1) AS last_error
            FROM alert_deliveries AS d
            GROUP BY alert, url_key
            ORDER BY alert, destination
            """,
        )
        return [
            AlertDestinationStatus(
                alert=row["alert"],
                url_key=row["url_key"],
                destination=row["destination"],
                pending=row["pending"],
                sent=row["sent"],
                failed=row["failed"],
                last_sent=from_db(row["last_sent"]),
                last_error=row["last_error"],
                next_attempt=from_db(row["next_attempt"]),
            )
            for row in rows
        ]
