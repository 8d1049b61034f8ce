"""What tells a watcher that a file changed: its inode, size and modification time."""

from __future__ import annotations

import os
from pathlib import Path

FileStamp = tuple[int, int, int]


def file_stamp(path: str | Path) -> FileStamp | None:
    """The file's stamp now; None when it is not there (or cannot be looked at)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
