"""Row gathers whose backward sums repeated rows in a fixed order."""
import torch
from torch import Tensor


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` for an integer ``index`` of any shape: rows of ``table`` along dim 0, with gradients. Ids
    must lie in ``[0, len(table))``: unlike indexing, a negative id is an error (``IndexError`` on the CPU, a
    device-side assertion on a GPU), not a row from the end.

    Advanced indexing's backward (``index_put_`` with ``accumulate=True``) adds the gradients of repeated rows in
    an order set by thread timing on a multi-threaded CPU (PyTorch lists ``__getitem__``'s CPU backward as
    nondeterministic): the same run on a busy machine then drifts in its last bits after a few epochs. The backward
    of ``index_select`` (``index_add_``) adds them in index order on the CPU, and has a deterministic CUDA path
    under ``torch.use_deterministic_algorithms``.
    """
    flat = torch.index_select(table, 0, index.reshape(-1))
    return flat.reshape(*index.shape, *table.shape[1:])
