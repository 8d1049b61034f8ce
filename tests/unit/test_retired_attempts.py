"""Retired-domain attempts are written for the report, but a records store that is down
never slows the milter's RCPT replies."""

from __future__ import annotations

from postwacht.app import RetiredAttempts
from postwacht.records.store import RecordsError
from postwacht.telemetry import ErrorKind, NoTelemetry


class Store:
    def __init__(self) -> None:
        self.down = False
        self.written: list[tuple[str, str, str]] = []
        self.tried = 0

    def record_retired_attempt(self, sender: str, client: str, domain: str,
                               monitored: bool = False) -> None:
        self.tried += 1
        if self.down:
            raise RecordsError("cannot record in PostgreSQL at postgresql://db/mail: refused")
        self.written.append((sender, client, domain))


class Errors(NoTelemetry):
    def __init__(self) -> None:
        self.errors: list[ErrorKind] = []

    def error(self, kind: ErrorKind) -> None:
        self.errors.append(kind)


def test_after_a_failed_write_attempts_are_only_counted_until_the_backoff_passes() -> None:
    store, telemetry, now = Store(), Errors(), [100.0]
    attempts = RetiredAttempts(store, telemetry, backoff=30.0,
                               clock=lambda: now[0])
    attempts.record("a@samen-veilig.nl", "smtp", "bjzutrecht.nl")
    store.down = True
    attempts.record("b@samen-veilig.nl", "smtp", "bjzutrecht.nl")
    now[0] += 29
    attempts.record("c@samen-veilig.nl", "smtp", "bjzutrecht.nl")  # not even tried
    assert store.tried == 2
    assert telemetry.errors == [ErrorKind.RECORDS, ErrorKind.RECORDS]
    store.down = False
    now[0] += 2
    attempts.record("d@samen-veilig.nl", "smtp", "bjzutrecht.nl")
    assert [w[0] for w in store.written] == ["a@samen-veilig.nl", "d@samen-veilig.nl"]
