"""Resumable, chunked computation of per-pair embeddings.

Pairs are processed in a fixed order and cut into fixed chunks. Each finished chunk is written atomically to
``<work_dir>/chunk_<k>.safetensors``, ``k`` zero-padded to 6 digits (row indices, float32 embeddings, JSON records
such as generated text or failures). A killed run restarts at the first missing chunk; chunk contents depend only on
the chunk, so a resumed run produces the same tensors and records as an uninterrupted one. ``plan.json`` pins what
the chunks belong to: a different plan discards the stale chunks. A run holds ``<work_dir>.lock`` while it works
(``with ChunkedRun(...)``): a second process computing into the same folder, with the same plan or another, is
refused instead of mixing its chunks into the first one's store.
"""
import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from recbole_hnlm.files import atomic_path, exclusive_lock, lock_file, write_json_atomic

__all__ = ["ChunkedRun", "user_aligned_starts"]

logger = logging.getLogger(__name__)
#: What a chunk's computation returns: succeeded row indices [n], embeddings [n, D], one record per row.
ChunkResult = Tuple[torch.Tensor, torch.Tensor, List[Dict]]


def user_aligned_starts(pairs: Sequence[Tuple[str, str]], chunk_size: int) -> List[int]:
    """Chunk starts that never split a user's contiguous run of pairs: a chunk closes at the first user boundary
    once it holds ``chunk_size`` pairs (so a user's shared prompt prefix runs once, not once per chunk)."""
    starts, size = [], chunk_size
    for row, (user, _) in enumerate(pairs):
        if size >= chunk_size and (row == 0 or user != pairs[row - 1][0]):
            starts.append(row)
            size = 0
        size += 1
    return starts


#: Work folders whose lock this process holds from before its models load (:func:`hold_work_folder`): their
#: :class:`ChunkedRun` works under it (a second ``flock`` of this process on the file would be refused).
_HELD_WORK = set()


@contextlib.contextmanager
def hold_work_folder(work_dir: str):
    """Take ``work_dir``'s lock now and hold it for the block, which loads the models, writes the profiles and runs
    the :class:`ChunkedRun` (which then takes no lock of its own); ``ConcurrentWriterError`` at once when another
    process holds it. A lock taken and let go at once only looked: two runs started together both passed it, both
    loaded the LLM (and wrote the same profiles), and the second was refused only at its chunks. Nested blocks of one
    folder hold it once."""
    key = os.path.abspath(lock_file(work_dir))
    if key in _HELD_WORK:
        yield
        return
    with exclusive_lock(lock_file(work_dir), _what(work_dir)):
        _HELD_WORK.add(key)
        try:
            yield
        finally:
            _HELD_WORK.discard(key)


def finished_meanwhile(store_path: str, manifest: Dict, run: "ChunkedRun") -> bool:
    """Whether another process wrote the store of ``manifest`` while this one loaded its models (it held the work
    folder's lock): then this one's ``run`` (entered, so the lock is held now) removes its work folder and reuses the
    store instead of computing it again."""
    from .pipeline import _cached

    if not _cached(store_path, manifest, say=False):
        return False
    logger.info("%s: written by another process meanwhile; reused", store_path)
    run.cleanup()
    return True


def _what(work_dir: str) -> str:
    return f"the chunks of {work_dir}"


class ChunkedRun:
    """Work folder of one precompute run; use it as a context manager (``with ChunkedRun(...) as run:``), which
    locks the folder, then discards chunks of another plan.

    Args:
        work_dir: folder for ``plan.json`` and chunk files.
        plan: JSON-serialisable description of the run (manifest identity, pair count, chunk size).
        num_rows: number of pairs to process.
        chunk_size: pairs per chunk.
        starts: first row of every chunk (from :func:`user_aligned_starts`); None = fixed ``chunk_size`` cuts.
    """

    def __init__(self, work_dir: str, plan: Dict, num_rows: int, chunk_size: int,
                 starts: Optional[List[int]] = None):
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.work_dir, self.num_rows, self.chunk_size = work_dir, int(num_rows), int(chunk_size)
        if starts is None:
            starts = list(range(0, self.num_rows, self.chunk_size))
        if starts and (starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= num_rows):
            raise ValueError(f"chunk starts must rise strictly from 0 below {num_rows}, got {starts[:5]}...")
        self.starts = [int(s) for s in starts] + [self.num_rows]
        self.plan = dict(plan, num_rows=self.num_rows, chunk_size=self.chunk_size,
                         chunk_starts_sha256=hashlib.sha256(json.dumps(self.starts).encode()).hexdigest())
        self._lock = None

    def __enter__(self) -> "ChunkedRun":
        held = os.path.abspath(lock_file(self.work_dir)) in _HELD_WORK  # by this process: hold_work_folder
        self._lock = contextlib.nullcontext() if held else exclusive_lock(lock_file(self.work_dir),
                                                                          _what(self.work_dir))
        self._lock.__enter__()
        try:
            self._adopt_plan()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(None, None, None)

    def _adopt_plan(self) -> None:
        """Keep the chunks of this plan; discard those of another one."""
        plan_path = os.path.join(self.work_dir, "plan.json")
        if os.path.exists(plan_path):
            try:
                with open(plan_path, encoding="utf-8") as handle:
                    old = json.load(handle)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:  # edited, or cut by a copy: start over
                logger.warning("%s: unreadable (%s); its %d chunk(s) are computed again", plan_path, error,
                               len(self._chunk_files()))
                shutil.rmtree(self.work_dir)
            else:
                if old != json.loads(json.dumps(self.plan)):
                    logger.warning("%s: plan changed, discarding %d stale chunk(s)", self.work_dir,
                                   len(self._chunk_files()))
                    shutil.rmtree(self.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        if not os.path.exists(plan_path):
            write_json_atomic(plan_path, self.plan)
        self._drop_unreadable_chunks()

    def _drop_unreadable_chunks(self) -> None:
        """Remove chunk files that cannot be read (cut by a full disk or a copy, edited), so they are computed again:
        each was otherwise taken as done and failed the merge after every other chunk, on every rerun. Chunks are
        written atomically, so a killed run leaves none; the check reads each chunk's header, rows and records (not
        its embeddings: :meth:`_chunk_problem`)."""
        from safetensors import SafetensorError, safe_open

        for path in self._chunk_files():
            try:
                with safe_open(path, framework="pt") as handle:
                    complete = {"rows", "emb"} <= set(handle.keys()) and "records" in (handle.metadata() or {})
                    why = "rows, emb or records missing" if not complete else self._chunk_problem(path, handle)
                    complete = why is None
            except (SafetensorError, OSError) as error:
                complete, why = False, f"{type(error).__name__}: {error}"
            if not complete:
                folder = os.path.isdir(path) and not os.path.islink(path)  # a folder of that name (copied, unpacked)
                logger.warning("%s: unreadable chunk (%s); it is computed again", path, "a folder" if folder else why)
                if folder:
                    shutil.rmtree(path)
                else:
                    os.remove(path)

    def _chunk_problem(self, path: str, handle) -> Optional[str]:
        """What makes an open chunk file unusable for this plan (rows of another chunk, shapes, records), or None."""
        try:
            k = int(os.path.basename(path)[len("chunk_"):-len(".safetensors")])
        except ValueError:
            return "not a chunk file name"
        if not 0 <= k < self.num_chunks:
            return f"chunk {k} is not in this plan of {self.num_chunks} chunks"
        rows = handle.get_tensor("rows")
        emb_shape = handle.get_slice("emb").get_shape()
        if rows.dim() != 1 or rows.dtype != torch.int64 or len(emb_shape) != 2 or emb_shape[0] != rows.shape[0]:
            return f"rows {rows.dtype} {tuple(rows.shape)} vs emb {tuple(emb_shape)}"
        span = self.chunk_rows(k)
        if rows.numel() and (int(rows.min()) < span.start or int(rows.max()) >= span.stop
                             or rows.unique().numel() != rows.numel()):
            return f"rows outside the chunk's pairs {span.start}..{span.stop - 1} or repeated"
        try:
            records = json.loads(handle.metadata()["records"])
        except json.JSONDecodeError as error:
            return f"records: {error}"
        if not isinstance(records, list):
            return "records is not a JSON list"
        return None

    def _check_locked(self) -> None:
        if self._lock is None:
            raise RuntimeError("use the run as a context manager: with ChunkedRun(...) as run")

    @property
    def num_chunks(self) -> int:
        return len(self.starts) - 1

    def chunk_rows(self, k: int) -> range:
        return range(self.starts[k], self.starts[k + 1])

    def chunk_path(self, k: int) -> str:
        return os.path.join(self.work_dir, f"chunk_{k:06d}.safetensors")

    def _chunk_files(self) -> List[str]:
        return sorted(glob.glob(os.path.join(self.work_dir, "chunk_*.safetensors")))

    def pending(self) -> List[int]:
        return [k for k in range(self.num_chunks) if not os.path.exists(self.chunk_path(k))]

    #: Seconds between the progress lines of a run without a bar (``show_progress`` off; ``--quiet`` hides INFO).
    LOG_EVERY_SECONDS = 300

    def run_pending(self, compute: Callable[[range, Callable[[int], None]], ChunkResult], desc: str,
                    progress: bool = True, on_chunk: Optional[Callable[[int], None]] = None) -> None:
        """Compute and save every missing chunk, with a tqdm bar that starts at the rows already done; without a bar
        (``progress`` False), INFO lines: one before the first chunk, then one every :attr:`LOG_EVERY_SECONDS`.

        Args:
            compute: maps a chunk's row range and ``advance(n)`` (moves the bar by ``n`` rows of the chunk, for
                chunks that take minutes; the rest is counted when the chunk is saved) to ``(rows, emb [n, D],
                records)`` for :meth:`save_chunk`.
            on_chunk: called with the chunk index after each chunk is saved (tests use it to simulate a kill).
        """
        self._check_locked()
        pending = self.pending()
        if len(pending) < self.num_chunks:
            logger.info("%s: resuming, %d/%d chunks already done", self.work_dir, self.num_chunks - len(pending),
                        self.num_chunks)
        done = self.num_rows - sum(len(self.chunk_rows(k)) for k in pending)
        if pending and not progress:  # minutes of silence otherwise (an embed of 814 pairs on a loaded CPU: 4)
            logger.info("%s: %d of %d pairs to compute", desc, self.num_rows - done, self.num_rows)
        said = [time.monotonic()]

        def say(rows_done: int) -> None:  # within a chunk too: a semantic chunk takes ~10 minutes on a CPU
            if not progress and time.monotonic() - said[0] >= self.LOG_EVERY_SECONDS:
                logger.info("%s: %d/%d pairs done", desc, rows_done, self.num_rows)
                said[0] = time.monotonic()

        with tqdm(total=self.num_rows, initial=done, desc=desc, unit="pair", disable=not progress) as bar:
            for k in pending:
                rows, moved = self.chunk_rows(k), [0]

                def advance(n: int, rows=rows, moved=moved) -> None:
                    n = max(0, min(n, len(rows) - moved[0]))
                    moved[0] += n
                    bar.update(n)
                    say(done + moved[0])

                self.save_chunk(k, *compute(rows, advance))
                bar.update(len(rows) - moved[0])
                done += len(rows)
                say(done)
                if on_chunk is not None:
                    on_chunk(k)

    def save_chunk(self, k: int, rows: torch.Tensor, emb: torch.Tensor, records: List[Dict]) -> None:
        """Atomically store chunk ``k``: ``rows`` [n] int64 pair indices that succeeded, ``emb`` [n, D]."""
        from safetensors.torch import save_file

        self._check_locked()
        if emb.dim() != 2 or rows.shape[0] != emb.shape[0]:
            raise ValueError(f"chunk {k}: rows {tuple(rows.shape)} vs emb {tuple(emb.shape)}")
        tensors = {"rows": rows.to(torch.int64).contiguous(), "emb": emb.detach().float().contiguous()}
        with atomic_path(self.chunk_path(k)) as tmp:
            save_file(tensors, tmp, metadata={"records": json.dumps(records)})

    def merge(self) -> Tuple[torch.Tensor, torch.Tensor, List[Dict]]:
        """Concatenate all chunks in order -> (rows [n], emb [n, D] float32, records)."""
        from safetensors import safe_open

        missing = self.pending()
        if missing:
            raise RuntimeError(f"{self.work_dir}: chunks {missing[:5]}... not finished")
        rows, embs, records = [], [], []
        for k in range(self.num_chunks):
            with safe_open(self.chunk_path(k), framework="pt") as handle:
                rows.append(handle.get_tensor("rows"))
                embs.append(handle.get_tensor("emb"))
                records.extend(json.loads(handle.metadata()["records"]))
        dim = max((e.shape[1] for e in embs), default=0)
        embs = [e if e.shape[0] else e.reshape(0, dim) for e in embs]
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64), torch.cat(embs), records

    def cleanup(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
