"""Where each file of a run folder lives, how shards are planned, and how files are written atomically.

Shard ``i`` always holds the dataset positions ``[i * shard_size, (i + 1) * shard_size)``:
boundaries depend on image positions only, never on timing, rank or a previous interruption,
which is what makes a resumed or distributed run identical to an uninterrupted one. A shard is
*committed* once its Parquet table exists; the table is renamed into place last.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

TMP_MARK = ".tmp-"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``index`` covers dataset positions ``start`` (inclusive) to ``stop`` (exclusive)."""

    index: int
    start: int
    stop: int


def plan_shards(n_images: int, shard_size: int) -> list[ShardPlan]:
    return [
        ShardPlan(i, start, min(start + shard_size, n_images)) for i, start in enumerate(range(0, n_images, shard_size))
    ]


def shards_for_rank(plans: list[ShardPlan], rank: int, world_size: int) -> list[ShardPlan]:
    """Round-robin: rank r owns shards r, r + W, r + 2W, ... (balanced, and independent of run history)."""
    return plans[rank::world_size]


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def errors(self) -> Path:
        return self.root / "errors.jsonl"

    @property
    def autoencoder(self) -> Path:
        return self.root / "autoencoder.pt"

    @property
    def shard_dir(self) -> Path:
        return self.root / "shards"

    def table(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.parquet"

    def maps(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.npz"

    def shard_errors(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.errors.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    def is_committed(self, shard: int) -> bool:
        return self.table(shard).exists()

    def committed_shards(self) -> list[Path]:
        """The tables of every committed shard (what a run has to keep)."""
        return sorted(self.shard_dir.glob("shard-*.parquet"))

    def discard_partial(self) -> list[Path]:
        """Delete temporary files left by a killed writer; returns what was removed.

        Only call it while holding the folder's :class:`RunLock`: then no other process writes
        here, and a temporary file whose writer (by the PID in its name) is still alive on this
        machine is kept all the same - nobody deletes another process's files.
        """
        removed = []
        for p in [*self.shard_dir.glob(f"*{TMP_MARK}*"), *self.root.glob(f"*{TMP_MARK}*")]:
            pid = p.name.rpartition(TMP_MARK)[2]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            p.unlink(missing_ok=True)
            removed.append(p)
        return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive ``fcntl.flock`` on ``<run folder>/.lock`` for as long as a run writes there.

    A second process is refused at once with the holder's PID (written into the lock file). The
    kernel drops the lock when its holder dies, so a killed run never leaves a held lock; the file it
    leaves (with its PID) is taken over with a warning.
    """

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self._fh = None
        self._created: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        """Lock the folder (creating it if needed); a CemapError naming the holder's PID when another process has it."""
        from ..errors import CemapError

        if self._fh is not None:
            return
        root = self.layout.root
        if root.exists() and not root.is_dir():
            raise CemapError(f"--out {root} is a file, not a folder", "choose a folder for the run")
        self._created = [p for p in [root, *root.parents] if not p.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CemapError(
                f"cannot create the run folder {root} ({exc.strerror or exc})", "choose a writable --out"
            ) from exc
        path = self.layout.lock
        while True:
            try:
                fh = open(path, "a+")
            except OSError as exc:
                raise CemapError(
                    f"cannot write to the run folder {root} ({exc.strerror or exc})", "choose a writable --out"
                ) from exc
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                from ..errors import CemapError

                raise CemapError(
                    f"{self.layout.root} is in use by another cemap run (PID {holder})",
                    "wait for it to finish or stop it, then continue with --resume; or choose another --out",
                ) from None
            try:  # the file we locked may have been removed and recreated meanwhile: lock the current one
                same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fh.close()
        fh.seek(0)
        left = fh.read().strip()
        if left and left != str(os.getpid()):  # a lock file of a run that was killed: the kernel released its lock
            from ..errors import warn

            warn(f"took over the lock of {root}: PID {left}, which left it, no longer runs there")
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Unlock and remove the lock file, so no finished or failed run leaves a PID behind (a process that opened the
        old file meanwhile sees it gone and locks a new one, see :meth:`acquire`). A run that failed before writing
        config.json leaves nothing at all: the folders this lock created are removed again while empty."""
        if self._fh is None:
            return
        started = self.layout.config.exists()
        self.layout.lock.unlink(missing_ok=True)
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None
        if not started:
            for folder in [self.layout.shard_dir, *self._created]:
                try:
                    folder.rmdir()
                except OSError:
                    pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary sibling, fsync, then rename over ``path``: readers never see half a file."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk: one line naming the file, never half a file
        from ..cache import is_disk_full, torch_writer_error, write_failed

        if isinstance(exc, OSError) or is_disk_full(exc) or torch_writer_error(exc):
            raise write_failed(path, exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: dict) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
