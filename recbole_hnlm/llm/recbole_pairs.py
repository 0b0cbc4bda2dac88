"""Training pairs of a RecBole split as original tokens, the form :func:`ensure_negatives` takes."""
from typing import List, Tuple

__all__ = ["recbole_dataset", "train_pairs_from_dataset"]


def recbole_dataset(train):
    """The RecBole Dataset of ``train`` (a dataloader's ``_dataset`` or ``dataset``, or ``train`` itself), else None.
    The first that has ``inter_feat``: an empty Dataset is falsy (len 0), so an ``or`` chain took its dataloader."""
    return next((found for found in (getattr(train, "_dataset", None), getattr(train, "dataset", None), train)
                 if hasattr(found, "inter_feat")), None)


def train_pairs_from_dataset(train) -> List[Tuple[str, str]]:
    """``(user_token, item_token)`` of every interaction of a RecBole training Dataset (or its dataloader)."""
    dataset = recbole_dataset(train)
    if dataset is None:
        raise TypeError(f"expected a RecBole Dataset or dataloader, got {type(train).__name__}")
    feat = dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return list(zip(users.tolist(), items.tolist()))
