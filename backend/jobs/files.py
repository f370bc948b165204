"""Reading a job's files for the API while its worker may still be writing them: bounded, and a line still being
written (no newline yet) is left for the next call."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_LOG_TAIL_BYTES = 256 * 1024  # the most of a log one answer reads, whatever tail_lines says


def read_log_tail(path: Path, lines: int, *, max_bytes: int = MAX_LOG_TAIL_BYTES) -> str:
    """The last `lines` lines of the log ("" when there is none yet), from at most its last `max_bytes`."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            chunk = f.read(max_bytes)
    except FileNotFoundError:
        return ""
    text = chunk.decode("utf-8", errors="replace")
    parts = text.splitlines(keepends=True)
    if start > 0 and parts:
        parts = parts[1:]  # began mid-line
    return "".join(parts[-lines:]) if lines > 0 else ""


def read_metrics(path: Path, *, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Records of metrics.jsonl after its first `after` lines, at most `limit`; returns (records, next `after`).

    Lines that are not a JSON object (a crash mid-write) are skipped but counted, so line numbers stay stable."""
    records: list[dict[str, Any]] = []
    index = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):  # still being written
                    break
                index += 1
                if index <= after:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if isinstance(record, dict):
                    records.append(record)
                if index - after >= limit:
                    break
    except FileNotFoundError:
        return [], after
    return records, max(index, after)
