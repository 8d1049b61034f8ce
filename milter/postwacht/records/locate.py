"""Which records store a command or the daemon opens, from the one spec a person gives.

No spec: the embedded SQLite file under the state directory (one MTA). A PostgreSQL URL:
the store that several MTAs share. The PostgreSQL backend is imported only when a URL
names it, so that a store on SQLite never loads psycopg.
"""

from __future__ import annotations

from pathlib import Path

from postwacht.records.sql import redact
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import RecordsError, RecordStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_records(spec: str | None, state_dir: str | Path, *, create: bool,
                 mta: str) -> RecordStore:
    """The store `spec` names (None: SQLite under `state_dir`; `create` False: only an
    existing file). Raises RecordsError naming the spec (password hidden) when it names
    no store this Postwacht knows, or the store cannot be opened."""
    if spec is None:
        return SqliteRecords(state_dir, create=create, mta=mta)
    if spec.lower().startswith(POSTGRES_SCHEMES):
        from postwacht.records.postgres import PostgresRecords  # noqa: PLC0415

        return PostgresRecords(spec, mta=mta)
    raise RecordsError(f"records store {redact(spec)!r}: not a records URL (expected "
                       "postgresql://USER@HOST[:PORT]/DATABASE, or none for the SQLite "
                       f"file under {state_dir})")
