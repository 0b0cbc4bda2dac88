"""Training pairs of a RecBole split as original tokens, the form :func:`ensure_negatives` takes."""
from typing import List, Tuple

__all__ = ["train_pairs_from_dataset"]


def train_pairs_from_dataset(train) -> List[Tuple[str, str]]:
    """``(user_token, item_token)`` of every interaction of a RecBole training Dataset (or its dataloader)."""
    dataset = getattr(train, "_dataset", None) or getattr(train, "dataset", None) or train
    if not hasattr(dataset, "inter_feat"):
        raise TypeError(f"expected a RecBole Dataset or dataloader, got {type(train).__name__}")
    feat = dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return list(zip(users.tolist(), items.tolist()))
