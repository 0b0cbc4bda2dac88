"""Teacher file for HNLMRec fine-tuning (§4.2, algorithms.md §10.13): CF embeddings and MixGCF hard negatives.

``<dir>/<ds>.hnlm-teacher.safetensors``::

    user_emb  float32 [U, d]   pooled CF embedding per user   (row r <-> user_tokens[r])
    item_emb  float32 [I, d]   pooled CF embedding per item   (row r <-> item_tokens[r])
    pair_user int64 [P]        row into user_emb of each training pair
    pair_item int64 [P]        row into item_emb of each training pair
    neg_emb   float32 [P, d]   MixGCF pooled synthetic hard negative of the pair (one draw, fixed seed)
    __metadata__: {"format", "user_tokens" (JSON list), "item_tokens" (JSON list), "dataset", "seed", "source",
                   "training" (JSON object; only when teacher_training trained it: what it was trained with)}

Tokens are original RecBole tokens, so the file survives re-filtering just like the side-car store.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.files import atomic_path, file_sha256, is_safetensors_file
from recbole_hnlm.rng_state import torch_streams_forked

from .paths import artifact_dir
from .recbole_pairs import recbole_dataset

__all__ = ["TEACHER_FORMAT", "Teacher", "export_teacher", "default_teacher_path", "training_settings",
           "check_replaceable_teacher"]

TEACHER_FORMAT = "recbole_hnlm/teacher/v1"
_TENSORS = ("user_emb", "item_emb", "pair_user", "pair_item", "neg_emb")


def default_teacher_path(data_path: str, dataset: str) -> str:
    return os.path.join(artifact_dir(data_path, dataset), f"{dataset}.hnlm-teacher.safetensors")


def _train_ids(dataset, train_data_pairs) -> Tuple[torch.Tensor, torch.Tensor]:
    """Internal (user, item) ids of the training pairs from a RecBole Dataset/dataloader or an id pair tuple."""
    source = recbole_dataset(train_data_pairs)
    if source is not None:
        feat = source.inter_feat
        return torch.as_tensor(feat[dataset.uid_field]).long(), torch.as_tensor(feat[dataset.iid_field]).long()
    users, items = train_data_pairs
    return torch.as_tensor(users).long(), torch.as_tensor(items).long()


@torch.no_grad()
def export_teacher(model, dataset, train_data_pairs, path: str, batch_size: int = 4096, seed: int = 2020,
                   training: Optional[Dict] = None) -> str:
    """Write the teacher file from a trained plugin model (MixGCF sampler).

    Args:
        model: provides ``pooled_embeddings() -> (user [n_users, d], item [n_items, d])`` and
            ``hard_negatives(user_ids, pos_ids) -> [B, d]`` (internal ids, no grad).
        dataset: the RecBole Dataset the model was built on (token <-> id maps).
        train_data_pairs: the training split: a RecBole Dataset / train dataloader, or ``(user_ids, item_ids)``.
        path: output file (written atomically).
        training: the settings the model was trained with (JSON-able), stored as the ``training`` metadata.
    """
    from safetensors.torch import save_file

    users, items = _train_ids(dataset, train_data_pairs)
    user_all, item_all = model.pooled_embeddings()
    user_tokens = [str(t) for t in dataset.field2id_token[dataset.uid_field]]
    item_tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field]]
    if user_all.shape[0] != len(user_tokens) or item_all.shape[0] != len(item_tokens):
        raise ValueError(f"pooled_embeddings() shapes {tuple(user_all.shape)}, {tuple(item_all.shape)} do not match "
                         f"the dataset ({len(user_tokens)} users, {len(item_tokens)} items incl. [PAD])")
    device = user_all.device
    negs = []
    # the caller's streams go on as before: the CPU's, and the GPU's the negatives are drawn on
    with torch_streams_forked(device):
        torch.manual_seed(seed)
        for start in range(0, users.numel(), batch_size):
            u = users[start:start + batch_size].to(device)
            i = items[start:start + batch_size].to(device)
            negs.append(model.hard_negatives(u, i).detach().float().cpu())
    neg = torch.cat(negs) if negs else torch.zeros(0, user_all.shape[1])
    # row 0 of RecBole's tables is [PAD]: drop it, so rows are r = id - 1
    tensors = {"user_emb": user_all[1:].detach().float().cpu().contiguous(),
               "item_emb": item_all[1:].detach().float().cpu().contiguous(),
               "pair_user": (users - 1).contiguous(), "pair_item": (items - 1).contiguous(),
               "neg_emb": neg.contiguous()}
    metadata = {"format": TEACHER_FORMAT, "user_tokens": json.dumps(user_tokens[1:]),
                "item_tokens": json.dumps(item_tokens[1:]), "dataset": str(getattr(dataset, "dataset_name", "")),
                "seed": str(seed), "source": type(model).__name__}
    if training is not None:
        metadata["training"] = json.dumps(training, sort_keys=True)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def _something_else(path: str) -> Optional[str]:
    """Why an existing ``path`` is no teacher file at all (a folder, not safetensors), or None."""
    if os.path.isdir(path):
        return f"{path} is a folder: hnlm_teacher_path names the teacher's .safetensors file"
    if not is_safetensors_file(path):
        return f"{path} is not a safetensors file, so not a teacher file"
    return None


def _unreadable(path: str, error) -> DataError:
    """A teacher file that is not one (truncated by a killed copy, another kind of file)."""
    other = _something_else(path)
    if other is not None:
        return DataError(f"{other}: check hnlm_teacher_path (a teacher is written by `python -m recbole_hnlm.llm "
                         "teacher`, or by the run script when it is missing)")
    return DataError(f"{path}: not a readable teacher file ({error}). Delete it, or point hnlm_teacher_path at a "
                     "teacher file: `python -m recbole_hnlm.llm teacher --overwrite` (or the run script, when it is "
                     "missing) trains it again.")


def check_replaceable_teacher(path: str) -> None:
    """Refuse to train a teacher into ``path`` when something other than a teacher is there: a folder, a file that is
    not safetensors (a data file named by mistake), or a safetensors file of another format (a store). A damaged
    teacher file may be replaced."""
    from safetensors import SafetensorError, safe_open

    if not os.path.exists(path):
        return
    other = _something_else(path)
    if other is not None:
        raise ConfigError(f"{other}; it is not replaced. Check hnlm_teacher_path, or move it away")
    try:
        with safe_open(path, framework="pt") as handle:
            kind = (handle.metadata() or {}).get("format")
    except (SafetensorError, OSError):
        return  # a damaged teacher
    if kind != TEACHER_FORMAT:
        raise ConfigError(f"{path} is a safetensors file of format {kind!r}, not a teacher: it is not replaced. Check "
                          "hnlm_teacher_path, or move the file away")


def training_settings(path: str) -> Optional[Dict]:
    """The ``training`` metadata of a teacher file (``None`` for files exported without it), read without its
    tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            return _training_of(_teacher_metadata(path, handle))
    except DataError:
        raise
    except (SafetensorError, OSError, ValueError) as error:
        raise _unreadable(path, error) from error


def _teacher_metadata(path: str, handle) -> Dict:
    """The metadata of an open teacher file, whose format is checked."""
    meta = handle.metadata() or {}
    if meta.get("format") != TEACHER_FORMAT:
        raise _unreadable(path, f"format {meta.get('format')!r}, expected {TEACHER_FORMAT!r}")
    return meta


def _training_of(metadata: Dict) -> Optional[Dict]:
    text = metadata.get("training")
    return json.loads(text) if text else None


@dataclass
class Teacher:
    path: str
    user_emb: torch.Tensor
    item_emb: torch.Tensor
    pair_user: torch.Tensor
    pair_item: torch.Tensor
    neg_emb: torch.Tensor
    user_tokens: List[str]
    item_tokens: List[str]
    sha256: str
    training: Optional[Dict] = None

    @property
    def dim(self) -> int:
        return int(self.user_emb.shape[1])

    @classmethod
    def load(cls, path: str) -> "Teacher":
        from safetensors import safe_open

        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path}: teacher file not found (hnlm_teacher_path). `python -m recbole_hnlm.llm teacher --dataset "
                f"<name>` trains it (the run script does so itself with --hnlm_variant=finetuned), or call "
                f"recbole_hnlm.llm.export_teacher(model, dataset, train_data, path) after your own MixGCF run")
        from safetensors import SafetensorError

        try:
            with safe_open(path, framework="pt") as handle:
                meta = _teacher_metadata(path, handle)
                missing = [k for k in _TENSORS if k not in handle.keys()]
                if missing:
                    raise _unreadable(path, f"tensors {missing} missing")
                tensors = {k: handle.get_tensor(k) for k in _TENSORS}
            user_tokens, item_tokens = json.loads(meta["user_tokens"]), json.loads(meta["item_tokens"])
            training = _training_of(meta)
        except DataError:
            raise
        except (SafetensorError, OSError, ValueError, KeyError) as error:
            raise _unreadable(path, error) from error
        teacher = cls(path=path, user_tokens=user_tokens, item_tokens=item_tokens, sha256=file_sha256(path),
                      training=training, **tensors)
        teacher.validate()
        return teacher

    def validate(self) -> None:
        for name in ("user_tokens", "item_tokens"):  # a JSON dict or string would index as something else
            tokens = getattr(self, name)
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError(f"{self.path}: {name} must be a JSON list of strings")
            if len(set(tokens)) != len(tokens):
                raise ValueError(f"{self.path}: {name} holds a token twice")
        for name in ("user_emb", "item_emb", "neg_emb"):
            tensor = getattr(self, name)
            if tensor.dim() != 2 or not tensor.is_floating_point():
                raise ValueError(f"{self.path}: {name} is {tensor.dtype} {tuple(tensor.shape)}, expected float [N, d]")
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{self.path}: {name} holds NaN or inf (a diverged or damaged teacher)")
        for name in ("pair_user", "pair_item"):
            tensor = getattr(self, name)
            if tensor.dim() != 1 or tensor.dtype != torch.int64:
                raise ValueError(f"{self.path}: {name} is {tensor.dtype} {tuple(tensor.shape)}, expected int64 [P]")
        p = self.pair_user.shape[0]
        checks = [
            (self.user_emb.shape[0] == len(self.user_tokens), "user_emb rows != len(user_tokens)"),
            (self.item_emb.shape[0] == len(self.item_tokens), "item_emb rows != len(item_tokens)"),
            (self.pair_item.shape[0] == p and self.neg_emb.shape[0] == p, "pair_user/pair_item/neg_emb lengths"),
            (self.neg_emb.shape[1] == self.user_emb.shape[1] == self.item_emb.shape[1], "embedding dims differ"),
            (p == 0 or (0 <= int(self.pair_user.min()) and int(self.pair_user.max()) < len(self.user_tokens)),
             "pair_user out of range"),
            (p == 0 or (0 <= int(self.pair_item.min()) and int(self.pair_item.max()) < len(self.item_tokens)),
             "pair_item out of range"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{self.path}: {message}")

    def token_pairs(self) -> List[Tuple[str, str]]:
        """The teacher's training pairs as ``(user_token, item_token)``, in file order."""
        users, items = self.user_tokens, self.item_tokens
        return [(users[u], items[i]) for u, i in zip(self.pair_user.tolist(), self.pair_item.tolist())]

    def pairs_outside(self, allowed: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """The teacher's training pairs that are not in ``allowed``."""
        allowed = set(allowed)
        return [pair for pair in self.token_pairs() if pair not in allowed]
