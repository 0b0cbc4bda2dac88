"""Side-car store of one negative embedding per (user, item) training pair (paper eq. 5 / §4.3 output).

File layout (``docs/llm.md`` §File format)::

    <dir>/<ds>.hnlm-<variant>.safetensors
        emb   float16|float32 [P, D]   one row per pair
        user  int64 [P]                original RecBole user token (only when every token is integer-like)
        item  int64 [P]                original RecBole item token (idem)
        __metadata__ = {"format": FORMAT, "manifest": <JSON manifest>}
    <ds>.hnlm-<variant>.safetensors.manifest.json   the same manifest, human readable
    <ds>.hnlm-<variant>.safetensors.keys.tsv        "user<TAB>item" per row, when tokens are not integer-like

``<dir>`` is :func:`recbole_hnlm.llm.paths.artifact_dir`: next to the atomic files, or ``./saved/hnlm/<ds>/`` when
those sit inside an installed package (RecBole's bundled ml-100k) or a read-only folder.

Tokens are the *original* tokens of the atomic files, so the store survives RecBole's filtering and id remapping;
:meth:`PairEmbeddingStore.align` maps them to internal ids of a concrete RecBole ``Dataset``.
"""
import hashlib
import json
import os
import re
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from recbole_hnlm.errors import DataError

from recbole_hnlm.files import atomic_path, file_sha256, write_json_atomic
from .paths import artifact_dir

__all__ = [
    "FORMAT", "IDENTITY_FIELDS", "StoreError", "default_store_path", "file_sha256", "write_pair_store",
    "PairEmbeddingStore", "AlignedPairEmbeddings", "manifest_mismatch", "split_sha256", "dataset_split_sha256",
]

FORMAT = "recbole_hnlm/pair-neg-emb/v1"
# Manifest fields that must be equal for a stored file to count as a cache hit for a requested run.
IDENTITY_FIELDS = ("format", "variant", "dataset", "dataset_hash", "pairs_hash", "generator", "encoder",
                   "prompt_version", "negatives_per_pair", "adapter_hash", "teacher_hash", "max_pairs", "seed",
                   "settings", "dtype", "answer_checks")
_REQUIRED_FIELDS = ("format", "variant", "dataset", "dataset_hash", "dim", "num_pairs", "key_type", "dtype")
_INT_TOKEN = re.compile(r"0|-?[1-9][0-9]*")  # not "-0": int() would give it back as "0"
_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "BF16": None, "I64": np.int64}


class StoreError(DataError):
    """A side-car file is missing, malformed, or does not match what was asked for."""


def default_store_path(data_path: str, dataset: str, variant: str) -> str:
    return os.path.join(artifact_dir(data_path, dataset), f"{dataset}.hnlm-{variant}.safetensors")


def _integer_like(tokens: Sequence[str]) -> bool:
    """True when every token round-trips through int64 unchanged ("7" yes, "007" and "x7" no)."""
    return all(_INT_TOKEN.fullmatch(t) is not None and abs(int(t)) < 2 ** 63 for t in tokens)


def split_sha256(pairs) -> str:
    """SHA-256 of the distinct ``(user, item)`` token pairs a store was built from (its manifest's ``split_hash``:
    the training split whose histories and teacher made its negatives; every interaction under ``--split all``),
    independent of their order and repeats."""
    lines = sorted({f"{user}\t{item}\n" for user, item in pairs})  # one join: ~2 s for Yelp2018's 1.2M pairs
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def dataset_split_sha256(dataset) -> str:
    """:func:`split_sha256` of a RecBole dataset's interactions (a run's training split)."""
    users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())
    return split_sha256(zip(users.tolist(), items.tolist()))


def manifest_mismatch(stored: Dict, wanted: Dict, fields: Sequence[str] = IDENTITY_FIELDS) -> Optional[str]:
    """Return a message naming every differing identity field (the settings before the hashes they explain, e.g.
    ``max_pairs`` before ``pairs_hash``), or None when ``stored`` satisfies ``wanted``."""
    differing = [field for field in fields if field in wanted and stored.get(field) != wanted[field]]
    differing.sort(key=lambda field: field.endswith("_hash"))  # stable: file order otherwise
    if not differing:
        return None
    return "; ".join(_difference(field, stored.get(field), wanted[field]) for field in differing)


def _difference(field: str, stored, wanted) -> str:
    """One differing field; for two dicts (``settings``) only the keys that differ, as ``settings.retries``."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = [k for k in sorted(set(stored) | set(wanted), key=str)
                if stored.get(k, _ABSENT) != wanted.get(k, _ABSENT)]
        return "; ".join(f"manifest field '{field}.{k}': stored {stored.get(k, _ABSENT)!r} != requested "
                         f"{wanted.get(k, _ABSENT)!r}" for k in keys)
    if field == "answer_checks":  # a version tag before ~1,000 characters of rules: the whole text buried the rest
        old, new = _checks_version(stored), _checks_version(wanted)
        return (f"manifest field 'answer_checks': stored {old} != requested {new} (the rules that refuse an LLM "
                f"answer {'were reworded' if old == new else 'changed'})")
    return f"manifest field '{field}': stored {stored!r} != requested {wanted!r}"


def _checks_version(value) -> str:
    """The ``vN`` tag an ``answer_checks`` text starts with (its repr when it has none, ``(absent)`` when absent)."""
    if value is None:  # a store of a version before the checks were recorded
        return "(absent)"
    match = re.match(r"v[0-9]+(?=:)", value) if isinstance(value, str) else None
    return match.group(0) if match else repr(value)


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _dtype_name(dtype: torch.dtype) -> str:
    """A store dtype as its manifest writes it (``float16``)."""
    return str(dtype).replace("torch.", "")


def _non_finite_rows(emb: torch.Tensor) -> torch.Tensor:
    """Positions of the rows of a ``[P, D]`` tensor that hold NaN or inf, in order."""
    return (~torch.isfinite(emb).all(1)).nonzero().flatten()


def write_pair_store(path: str, user_tokens: Sequence[str], item_tokens: Sequence[str], emb: torch.Tensor,
                     manifest: Dict, dtype: torch.dtype = torch.float16) -> Dict:
    """Atomically write a store (tensors, manifest, optional keys file). Returns the full manifest written.

    Args:
        user_tokens, item_tokens: original RecBole tokens, one per row of ``emb``.
        emb: ``[P, D]`` embeddings; stored as ``dtype`` (float16 or float32).
        manifest: identity fields (model, prompt version, dataset hash, ...); dims, counts, key type are added here.
    """
    if emb.dim() != 2 or emb.shape[0] != len(user_tokens) or len(user_tokens) != len(item_tokens):
        raise StoreError(f"{path}: emb {tuple(emb.shape)} does not match {len(user_tokens)} users / "
                         f"{len(item_tokens)} items")
    if dtype not in (torch.float16, torch.float32):
        raise StoreError(f"{path}: store dtype must be float16 or float32, got {dtype}")
    stored = emb.detach().to("cpu", dtype).contiguous()
    bad = _non_finite_rows(stored)  # NaN / inf, or past float16's range (65504)
    if bad.numel():
        raise StoreError(f"{path}: {bad.numel()} of {emb.shape[0]} embeddings hold NaN or inf as {dtype} "
                         f"(first row {int(bad[0])}); nothing was written")
    user_tokens = [str(t) for t in user_tokens]
    item_tokens = [str(t) for t in item_tokens]
    key_type = "int64" if _integer_like(user_tokens) and _integer_like(item_tokens) else "tsv"
    full = dict(manifest)
    full.update(format=FORMAT, dim=int(emb.shape[1]), num_pairs=int(emb.shape[0]), key_type=key_type,
                dtype=_dtype_name(dtype))
    tensors = {"emb": stored}
    keys_path = path + ".keys.tsv"
    if key_type == "int64":
        tensors["user"] = torch.tensor([int(t) for t in user_tokens], dtype=torch.int64)
        tensors["item"] = torch.tensor([int(t) for t in item_tokens], dtype=torch.int64)
    else:
        for token in user_tokens + item_tokens:
            if "\t" in token or "\n" in token or "\r" in token:
                raise StoreError(f"{path}: token {token!r} contains a tab or newline and cannot be keyed")
        keys = "".join(f"{u}\t{i}\n" for u, i in zip(user_tokens, item_tokens))
        full["keys_sha256"] = hashlib.sha256(keys.encode("utf-8")).hexdigest()  # pairs the two files (open checks)
    from safetensors.torch import save_file

    side = path + ".manifest.json"
    if os.path.exists(side):  # the old store's: a run stopped after the rename below would leave it "stale"
        os.remove(side)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": FORMAT, "manifest": json.dumps(full, sort_keys=True)})
        with open(tmp, "rb") as handle:  # a disk that reports its lack of room only at fsync: before the keys move
            os.fsync(handle.fileno())
        if key_type == "tsv":  # replaced once the new store is written in full, just before it: a full disk during
            with atomic_path(keys_path) as keys_tmp:  # the store's write left the old store beside the new keys
                with open(keys_tmp, "w", encoding="utf-8") as handle:
                    handle.write(keys)
    write_json_atomic(side, full)
    if key_type == "int64" and os.path.exists(keys_path):
        os.remove(keys_path)  # stale keys from an earlier string-keyed file
    return full


def _read_header(path: str):
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise StoreError(f"{path}: not a safetensors file (too short)")
        size = int.from_bytes(raw, "little")
        if size <= 0 or size > 100 * 2 ** 20:
            raise StoreError(f"{path}: not a safetensors file (header size {size})")
        try:
            header = json.loads(handle.read(size).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{path}: not a safetensors file (unreadable header: {err})") from err
    if not isinstance(header, dict):
        raise StoreError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header, 8 + size


def _mmap_tensor(path: str, info: Dict, data_start: int, name: str) -> torch.Tensor:
    try:
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        begin, end = (int(offset) for offset in info["data_offsets"])
        shape = tuple(int(size) for size in info["shape"])
        if begin < 0 or end < begin or any(size < 0 for size in shape):
            raise ValueError
    except (KeyError, TypeError, ValueError):  # a damaged or foreign header: a store error, so a cache recomputes
        raise StoreError(f"{path}: tensor '{name}' has a malformed header entry {info!r}") from None
    if dtype is None:
        raise StoreError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
    if end - begin != int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise StoreError(f"{path}: tensor '{name}' byte range does not match its shape {shape}")
    if data_start + end > os.path.getsize(path):
        raise StoreError(f"{path}: tensor '{name}' ends past the end of the file (truncated)")
    if end == begin:
        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    # mode "c" (copy-on-write) gives a writable view for torch without ever touching the file
    array = np.memmap(path, dtype=dtype, mode="c", offset=data_start + begin, shape=shape)
    return torch.from_numpy(array)


class PairEmbeddingStore:
    """Read-only view of a side-car file; ``emb`` is memory-mapped.

    Attributes:
        path (str), manifest (dict), dim (int), num_pairs (int),
        user_tokens / item_tokens (list[str]): original tokens per row.
    """

    def __init__(self, path: str, manifest: Dict, emb: torch.Tensor, user_tokens, item_tokens):
        self.path, self.manifest, self.emb = path, manifest, emb
        self.user_tokens, self.item_tokens = user_tokens, item_tokens
        self.dim = int(manifest["dim"])
        self.num_pairs = int(manifest["num_pairs"])

    @classmethod
    def open(cls, path: str) -> "PairEmbeddingStore":
        """Open and validate a store; every error names the file and the failing field."""
        if not os.path.exists(path):
            raise StoreError(f"{path}: side-car store not found (run `python -m recbole_hnlm.llm negatives|embed` "
                             f"or set hnlm_store_path)")
        if os.path.isdir(path):
            raise StoreError(f"{path} is a folder: hnlm_file / hnlm_store_path name the store's .safetensors file")
        header, data_start = _read_header(path)
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict):
            raise StoreError(f"{path}: __metadata__ is not a JSON object")
        if meta.get("format") != FORMAT:
            raise StoreError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        try:
            manifest = json.loads(meta["manifest"])
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise StoreError(f"{path}: __metadata__ has no valid 'manifest' ({err})") from err
        if not isinstance(manifest, dict):
            raise StoreError(f"{path}: __metadata__ 'manifest' is not a JSON object")
        for field in _REQUIRED_FIELDS:
            if field not in manifest:
                raise StoreError(f"{path}: manifest lacks field '{field}'")
        side = path + ".manifest.json"
        if os.path.exists(side):
            try:
                with open(side, encoding="utf-8") as handle:
                    same = json.load(handle) == manifest
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise StoreError(f"{side}: not a JSON manifest ({err})") from err
            if not same:
                raise StoreError(f"{side}: differs from the manifest inside {path} (edited or stale)")
        if "emb" not in header:
            raise StoreError(f"{path}: tensor 'emb' missing")
        emb = _mmap_tensor(path, header["emb"], data_start, "emb")
        if _dtype_name(emb.dtype) != manifest["dtype"]:
            raise StoreError(f"{path}: emb is {emb.dtype}, manifest dtype {manifest['dtype']!r}")
        if emb.dim() != 2 or emb.shape[0] != manifest["num_pairs"] or emb.shape[1] != manifest["dim"]:
            raise StoreError(f"{path}: emb shape {tuple(emb.shape)} != manifest [num_pairs={manifest['num_pairs']}, "
                             f"dim={manifest['dim']}]")
        if manifest["key_type"] == "int64":
            for name in ("user", "item"):
                if name not in header:
                    raise StoreError(f"{path}: tensor '{name}' missing (key_type int64)")
            keys = {name: _mmap_tensor(path, header[name], data_start, name) for name in ("user", "item")}
            for name, tensor in keys.items():
                if tensor.dim() != 1 or tensor.dtype != torch.int64:
                    raise StoreError(f"{path}: tensor '{name}' is {tensor.dtype} {tuple(tensor.shape)}, expected "
                                     f"int64 [num_pairs]")
            users, items = ([str(t) for t in keys[name].tolist()] for name in ("user", "item"))
        elif manifest["key_type"] == "tsv":
            keys = path + ".keys.tsv"
            if not os.path.exists(keys):
                raise StoreError(f"{keys}: keys file missing (key_type tsv)")
            try:
                with open(keys, encoding="utf-8") as handle:
                    text = handle.read()
            except (UnicodeDecodeError, OSError) as err:  # edited, binary, a folder of that name
                raise StoreError(f"{keys}: unreadable keys file ({err}); compute the store again") from err
            digest = manifest.get("keys_sha256")
            if digest is not None and hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
                raise StoreError(f"{keys}: not the keys file written with {path} (a write was cut off between the "
                                 f"two, or one was replaced); compute the store again")
            # at "\n" only, as written: splitlines() also split at "\x1c", "\x85", "\u2028" ... inside a token
            rows = [line.split("\t") for line in text.split("\n")[:-1 if text.endswith("\n") else None]]
            if any(len(r) != 2 for r in rows):
                raise StoreError(f"{keys}: every line must be 'user<TAB>item'")
            users, items = [r[0] for r in rows], [r[1] for r in rows]
        else:
            raise StoreError(f"{path}: manifest key_type {manifest['key_type']!r} is neither 'int64' nor 'tsv'")
        if len(users) != manifest["num_pairs"] or len(items) != manifest["num_pairs"]:
            raise StoreError(f"{path}: {len(users)} keys for num_pairs={manifest['num_pairs']}")
        return cls(path, manifest, emb, users, items)

    def check(self, wanted: Dict) -> None:
        """Raise :class:`StoreError` naming the field when the manifest does not match ``wanted``."""
        message = manifest_mismatch(self.manifest, wanted)
        if message is not None:
            raise StoreError(f"{self.path}: {message}")

    def align(self, dataset) -> "AlignedPairEmbeddings":
        """Map original tokens to ``dataset``'s internal ids; pairs whose user or item RecBole dropped are skipped."""
        uid_map = dataset.field2token_id[dataset.uid_field]
        iid_map = dataset.field2token_id[dataset.iid_field]
        n_items = int(dataset.item_num)
        rows, keys = [], []
        for row, (u, i) in enumerate(zip(self.user_tokens, self.item_tokens)):
            uid, iid = uid_map.get(u), iid_map.get(i)
            if uid is None or iid is None:
                continue
            rows.append(row)
            keys.append(uid * n_items + iid)
        keys_t = torch.tensor(keys, dtype=torch.int64)
        rows_t = torch.tensor(rows, dtype=torch.int64)
        keys_t, order = torch.sort(keys_t, stable=True)  # equal keys in row order: the first row comes first
        rows_t = rows_t[order]
        if keys_t.numel() > 1:  # duplicated pairs: keep the first row of each key
            keep = torch.ones_like(keys_t, dtype=torch.bool)
            keep[1:] = keys_t[1:] != keys_t[:-1]
            keys_t, rows_t = keys_t[keep], rows_t[keep]
        emb = self.emb[rows_t].clone() if rows_t.numel() else torch.zeros(0, self.dim, dtype=self.emb.dtype)
        bad = _non_finite_rows(emb)
        if bad.numel():  # a damaged file (a flipped exponent byte): the sampler would train on NaN
            raise StoreError(f"{self.path}: {bad.numel()} stored embedding(s) hold NaN or inf (row "
                             f"{int(rows_t[bad[0]])}); the file is damaged, compute the store again")
        coverage = keys_t.numel() / self.num_pairs if self.num_pairs else 0.0
        return AlignedPairEmbeddings(keys_t, emb, n_items, coverage)


class AlignedPairEmbeddings(nn.Module):
    """Pair embeddings addressed by RecBole internal ids (sorted ``uid * n_items + iid`` keys + ``searchsorted``).

    Buffers follow ``.to(device)`` and are not part of ``state_dict`` (``persistent=False``).

    Attributes:
        dim (int): embedding size D.  coverage (float): share of the store's pairs present in the dataset.
    """

    def __init__(self, keys: torch.Tensor, emb: torch.Tensor, n_items: int, coverage: float):
        super().__init__()
        self.register_buffer("keys", keys, persistent=False)
        self.register_buffer("emb", emb, persistent=False)
        self.register_buffer("shift", torch.zeros(emb.shape[1], dtype=torch.float32), persistent=False)
        self.n_items = int(n_items)
        self.dim = int(emb.shape[1])
        self.coverage = float(coverage)
        self.num_pairs = int(keys.numel())

    def _key(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return user.to(self.keys.device, torch.int64) * self.n_items + item.to(self.keys.device, torch.int64)

    def _find(self, user: torch.Tensor, item: torch.Tensor):
        query = self._key(user, item)
        if self.keys.numel() == 0:
            return torch.zeros_like(query), torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return pos, self.keys[pos] == query

    def pairs_outside(self, user: torch.Tensor, item: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user ids, item ids)`` of the stored pairs that are not among the given pairs."""
        outside = self.keys[~torch.isin(self.keys, self._key(user, item))]
        return outside // self.n_items, outside % self.n_items

    def lookup(self, user: torch.Tensor, item: torch.Tensor):
        """Internal ids ``[B]`` -> (``[B, D]`` float32 embeddings on ``user.device``, ``[B]`` bool found mask).

        Rows of pairs without a stored embedding are zeros; callers must use the mask, never the zeros.
        """
        pos, found = self._find(user, item)
        if self.keys.numel() == 0:
            out = torch.zeros(user.shape[0], self.dim, dtype=torch.float32, device=user.device)
        else:
            out = (self.emb[pos].float() - self.shift) * found.unsqueeze(1)
        return out.to(user.device), found.to(user.device)

    @torch.no_grad()
    def center(self, chunk: int = 65536) -> float:
        """Subtract the mean stored vector from every lookup (removes the common direction of anisotropic LLM
        embeddings). Returns the norm of that mean; the stored rows are not copied or changed."""
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.emb.device)
        for start in range(0, self.emb.shape[0], chunk):
            total += self.emb[start:start + chunk].double().sum(0)
        self.shift = (total / max(self.emb.shape[0], 1)).float()
        return float(self.shift.norm())

    def pair_coverage(self, user: torch.Tensor, item: torch.Tensor) -> float:
        """Share of the given pairs that have a stored embedding."""
        if user.numel() == 0:
            return 0.0
        return float(self._find(user, item)[1].float().mean())

    def extra_repr(self) -> str:
        return f"num_pairs={self.num_pairs}, dim={self.dim}, coverage={self.coverage:.4f}"
