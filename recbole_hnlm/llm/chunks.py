"""Resumable, chunked computation of per-pair embeddings.

Pairs are processed in a fixed order and cut into fixed chunks. Each finished chunk is written atomically to
``<work_dir>/chunk_<k>.safetensors`` (row indices, float32 embeddings, JSON records such as generated text or
failures). A killed run restarts at the first missing chunk; chunk contents depend only on the chunk, so a resumed
run produces the same bytes as an uninterrupted one. ``plan.json`` pins what the chunks belong to: a different plan
discards the stale chunks.
"""
import glob
import json
import logging
import os
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import torch
from tqdm.auto import tqdm

from .atomic import atomic_path, write_json_atomic

__all__ = ["ChunkedRun"]

logger = logging.getLogger(__name__)


class ChunkedRun:
    """Work folder of one precompute run.

    Args:
        work_dir: folder for ``plan.json`` and chunk files.
        plan: JSON-serialisable description of the run (manifest identity, pair count, chunk size).
        num_rows: number of pairs to process.
        chunk_size: pairs per chunk.
    """

    def __init__(self, work_dir: str, plan: Dict, num_rows: int, chunk_size: int):
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.work_dir, self.num_rows, self.chunk_size = work_dir, int(num_rows), int(chunk_size)
        self.plan = dict(plan, num_rows=self.num_rows, chunk_size=self.chunk_size)
        plan_path = os.path.join(work_dir, "plan.json")
        if os.path.exists(plan_path):
            with open(plan_path, encoding="utf-8") as handle:
                old = json.load(handle)
            if old != json.loads(json.dumps(self.plan)):
                logger.warning("%s: plan changed, discarding %d stale chunk(s)", work_dir, len(self._chunk_files()))
                shutil.rmtree(work_dir)
        os.makedirs(work_dir, exist_ok=True)
        if not os.path.exists(plan_path):
            write_json_atomic(plan_path, self.plan)

    @property
    def num_chunks(self) -> int:
        return (self.num_rows + self.chunk_size - 1) // self.chunk_size

    def chunk_rows(self, k: int) -> range:
        return range(k * self.chunk_size, min((k + 1) * self.chunk_size, self.num_rows))

    def chunk_path(self, k: int) -> str:
        return os.path.join(self.work_dir, f"chunk_{k:06d}.safetensors")

    def _chunk_files(self) -> List[str]:
        return sorted(glob.glob(os.path.join(self.work_dir, "chunk_*.safetensors")))

    def pending(self) -> List[int]:
        return [k for k in range(self.num_chunks) if not os.path.exists(self.chunk_path(k))]

    def run_pending(self, compute: Callable[[range], Tuple[torch.Tensor, torch.Tensor, List[Dict]]], desc: str,
                    progress: bool = True, on_chunk: Optional[Callable[[int], None]] = None) -> None:
        """Compute and save every missing chunk, with a tqdm bar that starts at the rows already done.

        Args:
            compute: maps a chunk's row range to ``(rows, emb [n, D], records)`` for :meth:`save_chunk`.
            on_chunk: called with the chunk index after each chunk is saved (tests use it to simulate a kill).
        """
        pending = self.pending()
        if len(pending) < self.num_chunks:
            logger.info("%s: resuming, %d/%d chunks already done", self.work_dir, self.num_chunks - len(pending),
                        self.num_chunks)
        done = self.num_rows - sum(len(self.chunk_rows(k)) for k in pending)
        with tqdm(total=self.num_rows, initial=done, desc=desc, unit="pair", disable=not progress) as bar:
            for k in pending:
                self.save_chunk(k, *compute(self.chunk_rows(k)))
                bar.update(len(self.chunk_rows(k)))
                if on_chunk is not None:
                    on_chunk(k)

    def save_chunk(self, k: int, rows: torch.Tensor, emb: torch.Tensor, records: List[Dict]) -> None:
        """Atomically store chunk ``k``: ``rows`` [n] int64 pair indices that succeeded, ``emb`` [n, D]."""
        from safetensors.torch import save_file

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
