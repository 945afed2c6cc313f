"""Stage records: each stage's outputs' SHA-256 in ``OUT/stages/<stage>.json``, and whether a
stage can be skipped (outputs intact, same inputs, upstream unchanged)."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes, sha256_file, write_json_atomic, write_text_atomic

log = logging.getLogger("edgesep.pipeline")


def digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative names and SHA-256s)."""
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_bytes("".join(f"{f.relative_to(path)}:{sha256_file(f)}\n"
                                for f in files).encode())


def run_stage(out: Path, name: str, fn: Callable[[], dict], outputs: list[Path],
              inputs: dict | None, upstream: str) -> tuple[dict, str]:
    """Run ``fn`` unless the stage's record in ``out`` says its outputs are intact, its
    ``inputs`` the same and its ``upstream`` digest unchanged; record it after. Returns the
    stage's summary and its record's digest (the next stage's upstream)."""
    record_path = out / "stages" / f"{name}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        intact = all(
            (out / rel).exists() and digest(out / rel) == sha
            for rel, sha in record["outputs"].items()
        )
        if intact and record.get("upstream") == upstream and record.get("inputs") == inputs:
            log.info("[%s] up to date, skipped", name)
            return record["summary"], record["digest"]
        log.info("[%s] outputs or inputs changed, or upstream re-ran: running again", name)
    log.info("[%s] running", name)
    started = time.monotonic()
    try:
        summary = fn()
    except EdgesepError as exc:
        raise EdgesepError(f"pipeline stage '{name}' failed: {exc}") from None
    except Exception as exc:  # an internal error: keep the traceback in the log file
        write_text_atomic(out / "pipeline-error.log", traceback.format_exc())
        raise EdgesepError(
            f"pipeline stage '{name}' failed: {type(exc).__name__}: {exc} "
            f"(traceback in {out / 'pipeline-error.log'})"
        ) from None
    checksums = {str(p.relative_to(out)): digest(p) for p in outputs}
    record = {"stage": name, "outputs": checksums, "upstream": upstream, "summary": summary}
    if inputs is not None:
        record["inputs"] = inputs
    record["digest"] = sha256_bytes(json.dumps(record, sort_keys=True).encode())
    write_json_atomic(record_path, record)
    log.info("[%s] done in %.0f s", name, time.monotonic() - started)
    return summary, record["digest"]
