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
    if not isinstance(table, Tensor) or not isinstance(index, Tensor):
        raise TypeError(f"table and index must be Tensors, got {type(table).__name__} and {type(index).__name__}")
    if table.dim() < 1:
        raise ValueError("table must have at least one dimension (its rows), got a 0-D tensor")
    if index.device != table.device:  # index_select of a CPU table with a meta index returned uninitialised memory
        raise ValueError(f"index is on {index.device} but table is on {table.device}")
    try:
        flat = torch.index_select(table, 0, index.reshape(-1))
    except IndexError:  # torch's "index out of range in self" names neither the ids nor the table's length
        raise IndexError(f"gather_rows: index holds ids outside [0, {table.size(0)}), the rows of table") from None
    return flat.reshape(*index.shape, *table.shape[1:])
