"""Atomic reads and writes: every file appears whole or not at all.

A step that crashes half-way leaves only ``*.tmp-*`` files behind, which readers never see and the next
write replaces, so the last good state stays in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it over ``target`` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, target: Path) -> Path:
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    return target


def write_json(obj: Any, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return target


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy a file byte for byte; readers see the old file or the whole new one."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst
