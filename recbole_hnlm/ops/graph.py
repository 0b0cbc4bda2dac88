"""The user-item graph as a CSR matrix: the symmetric normalized adjacency of LightGCN / NGCF.

Reference: algorithms.md §0 (LightGCN backbone); Xiangnan He et al. "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation." in SIGIR 2020, Eq. (7).
"""
import operator
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CSRGraph", "bipartite_normalized_graph", "transpose_positions", "drop_edges"]


@dataclass
class CSRGraph:
    r"""A square sparse matrix in CSR form, normally :math:`\hat A = D^{-1/2} A D^{-1/2}`.

    The propagation ops use ``graph`` as its own transpose in the backward pass, so a ``CSRGraph`` given to
    :func:`~recbole_hnlm.ops.spmm` or :func:`~recbole_hnlm.ops.lightgcn_propagate` must be **symmetric**, as every
    graph built by :func:`bipartite_normalized_graph` is. The values are constants (no gradient flows to ``val``).
    Before a gradient flows through a graph not built so, the ops check its symmetry once (:meth:`validate_symmetric`):
    a row-normalised :math:`D^{-1} A`, say, would get :math:`\hat A G` where :math:`\hat A^\top G` is due.

    Attributes:
        rowptr (Tensor): ``[num_nodes + 1]`` row offsets, int32 (int64 when nnz or num_nodes exceeds int32).
        col (Tensor): ``[nnz]`` column indices, same dtype as ``rowptr``, sorted within each row.
        val (Tensor): ``[nnz]`` float32 edge weights.
        num_nodes (int): number of rows (= columns).
        symmetric (bool): the builder's promise that the matrix equals its transpose (set by
            :func:`bipartite_normalized_graph` and kept by :func:`drop_edges` and :meth:`to`); ``False`` lets the
            ops check it. (default: ``False``)
    """

    rowptr: Tensor
    col: Tensor
    val: Tensor
    num_nodes: int
    symmetric: bool = field(default=False, compare=False)

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    def to(self, device) -> "CSRGraph":
        """A copy on ``device`` (``self`` when it is already there)."""
        device = torch.device(device)
        if self.rowptr.device == device:
            return self
        return CSRGraph(self.rowptr.to(device), self.col.to(device), self.val.to(device), self.num_nodes,
                        self.symmetric)

    def to_sparse_csr(self, dtype=None) -> Tensor:
        """The same matrix as a ``torch.sparse_csr_tensor`` (used by the reference ops); ``dtype`` casts ``val``."""
        import warnings

        val = self.val.detach() if dtype is None else self.val.detach().to(dtype)  # constants, as in the kernels
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
            # check_invariants=False reads the index tensors' storage as if contiguous: a strided rowptr/col
            # (e.g. a column of an [nnz, 2] edge list) gave wrong products, or a segmentation fault
            return torch.sparse_csr_tensor(
                self.rowptr.contiguous(), self.col.contiguous(), val.contiguous(), (self.num_nodes, self.num_nodes),
                check_invariants=False,
            )

    def row_indices(self) -> Tensor:
        """The row of every stored entry (int64, aligned with ``col`` and ``val``): the COO form's rows."""
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.device), self.rowptr.diff().long())

    def to_dense(self) -> Tensor:
        """Dense ``[num_nodes, num_nodes]`` matrix in ``val``'s dtype, for tests on small graphs; duplicate entries add
        up, as in the ops."""
        dense = torch.zeros(self.num_nodes, self.num_nodes, dtype=self.val.dtype, device=self.device)
        dense.index_put_((self.row_indices(), self.col.long()), self.val.detach(), accumulate=True)
        return dense

    def validate_once(self) -> "CSRGraph":
        """:meth:`validate` unless these very tensors, their indices unmodified, passed it before (the fallback ops
        call this on every call; a pass over the indices, with host reads, each time would cost the fallback dearly).
        A replaced ``val`` is checked again: torch's sparse ops would read past the end of a shorter one."""
        key = (self.rowptr.data_ptr(), self.col.data_ptr(), self.rowptr._version, self.col._version,
               self.rowptr.numel(), self.col.numel(), self.val.data_ptr(), self.val.shape, self.num_nodes)
        if getattr(self, "_validated", None) != key:
            self.validate()
            self._validated = key
        return self

    def validate_symmetric(self, rtol: float = 1e-5) -> "CSRGraph":
        """Check that the matrix equals its transpose: each entry ``(r, c)`` has its mirror ``(c, r)``, with a value
        equal within ``rtol`` (two 16-bit rounding steps for float16/bfloat16 values; duplicate entries add up, as in
        the ops, and a stored zero is no entry). Sorts the entries twice (about 2 s for Yelp2018's 3M on a 2-core
        CPU: the ops run it once per graph not built symmetric). Call :meth:`validate` first. Raises ``ValueError``
        naming an entry, or NaN values."""
        n, rows, cols = self.num_nodes, self.row_indices(), self.col.long()
        val = self.val.detach().to(torch.float64 if self.val.dtype == torch.float64 else torch.float32)
        if self.val.dtype in (torch.float16, torch.bfloat16):  # mirrors rounded apart to adjacent 16-bit values
            rtol = max(rtol, 2 * torch.finfo(self.val.dtype).eps)
        if self.nnz and bool(torch.isnan(val).any()):
            raise ValueError("graph.val holds NaN: the graph's values must be finite numbers")
        entries = torch.sparse_coo_tensor(torch.stack([rows, cols]), val, (n, n), check_invariants=False).coalesce()
        mirrors = torch.sparse_coo_tensor(torch.stack([cols, rows]), val, (n, n), check_invariants=False).coalesce()
        entries, mirrors = (_without_zeros(t) for t in (entries, mirrors))  # a stored zero is no entry
        keys = entries.indices()[0] * n + entries.indices()[1]  # sorted: coalesce orders the entries
        mirror_keys = mirrors.indices()[0] * n + mirrors.indices()[1]
        if torch.equal(keys, mirror_keys):
            wrong = ~torch.isclose(entries.values(), mirrors.values(), rtol=rtol, atol=0)
        else:
            wrong = ~torch.isin(keys, mirror_keys)
        if bool(wrong.any()):
            k = int(wrong.nonzero()[0])
            r, c = int(entries.indices()[0, k]), int(entries.indices()[1, k])
            at = torch.searchsorted(mirror_keys, torch.tensor([r * n + c], device=keys.device))
            mirror = float(mirrors.values()[at]) if at < mirror_keys.numel() and mirror_keys[at] == r * n + c else None
            found = "absent" if mirror is None else f"{mirror:.6g}"
            raise ValueError(f"the graph is not symmetric: entry ({r}, {c}) is {float(entries.values()[k]):.6g} but "
                             f"({c}, {r}) is {found}. The ops' backward uses the graph as its own transpose: build it "
                             "with bipartite_normalized_graph, or symmetrize it (e.g. D^-1/2 A D^-1/2).")
        return self

    def validate_symmetric_once(self) -> "CSRGraph":
        """:meth:`validate_once`, then :meth:`validate_symmetric` unless the graph is built symmetric or these very
        tensors, unmodified, passed it before (the ops call this whenever a gradient will flow through them)."""
        self.validate_once()
        if self.symmetric:
            return self
        key = self._validated + (self.val._version,)
        if getattr(self, "_validated_symmetric", None) != key:
            self.validate_symmetric()
            self._validated_symmetric = key
        return self

    def validate_structure(self) -> "CSRGraph":
        """The shape, dtype and device invariants only (no pass over the data, no host sync); raises ``ValueError``
        (``TypeError`` for a field that is no tensor)."""
        for name in ("rowptr", "col", "val"):
            if not isinstance(getattr(self, name), Tensor):
                raise TypeError(f"CSRGraph.{name} must be a Tensor, got {type(getattr(self, name)).__name__}")
        if not (self.rowptr.device == self.col.device == self.val.device):
            raise ValueError(f"rowptr, col and val must be on one device, got {self.rowptr.device}, "
                             f"{self.col.device} and {self.val.device}")
        if self.rowptr.dim() != 1 or self.rowptr.numel() != self.num_nodes + 1:
            raise ValueError(f"rowptr must have num_nodes + 1 = {self.num_nodes + 1} entries, got {self.rowptr.shape}")
        if self.rowptr.dtype not in (torch.int32, torch.int64) or self.col.dtype != self.rowptr.dtype:
            raise ValueError(
                f"rowptr and col must share an int32/int64 dtype, got {self.rowptr.dtype}, {self.col.dtype}")
        if self.col.shape != self.val.shape or self.col.dim() != 1:
            raise ValueError(f"col and val must be 1-D of equal length, got {self.col.shape} and {self.val.shape}")
        return self

    def validate(self) -> "CSRGraph":
        """Check the CSR invariants (one pass over the indices); return ``self``. Raises ``ValueError``."""
        self.validate_structure()
        if int(self.rowptr[0]) != 0 or int(self.rowptr[-1]) != self.nnz or bool((self.rowptr.diff() < 0).any()):
            raise ValueError("rowptr must start at 0, end at nnz and be non-decreasing")
        if self.nnz and (int(self.col.min()) < 0 or int(self.col.max()) >= self.num_nodes):
            raise ValueError(f"col must lie in [0, {self.num_nodes})")
        return self


def _without_zeros(coalesced: Tensor) -> Tensor:
    """A coalesced sparse tensor without its stored zeros (the same matrix)."""
    keep = coalesced.values() != 0
    if bool(keep.all()):
        return coalesced
    return torch.sparse_coo_tensor(coalesced.indices()[:, keep], coalesced.values()[keep], coalesced.shape,
                                   check_invariants=False, is_coalesced=True)  # a subset keeps order and uniqueness


def bipartite_normalized_graph(user_ids: Tensor, item_ids: Tensor, n_users: int, n_items: int) -> CSRGraph:
    r"""Build :math:`\hat A = D^{-1/2} A D^{-1/2}` with :math:`A = \begin{bmatrix}0 & R\\ R^\top & 0\end{bmatrix}`.

    Node ``u`` (``0 <= u < n_users``) is a user and node ``n_users + i`` is item ``i``. Duplicate ``(u, i)`` pairs
    count once; nodes without interactions (e.g. RecBole's padding item 0) keep an empty row, so they are isolated
    and :math:`\hat A` has no entry for them. Column indices are sorted within each row. Pure torch, runs on the
    device of the inputs.

    Args:
        user_ids (Tensor): ``[E]`` integer user ids of the training interactions.
        item_ids (Tensor): ``[E]`` integer item ids, same length.
        n_users (int): number of users (ids are ``< n_users``).
        n_items (int): number of items (ids are ``< n_items``).

    Returns:
        CSRGraph: ``num_nodes = n_users + n_items``, ``nnz = 2 * #unique pairs``, float32 values
        :math:`1/\sqrt{d_u d_i}`.

    Example:
        >>> g = bipartite_normalized_graph(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1]), 2, 3)
        >>> g.rowptr.tolist(), g.col.tolist()
        ([0, 2, 3, 3, 5, 6], [3, 4, 3, 0, 1, 0])
    """
    user_ids, item_ids = _id_vector(user_ids, "user_ids"), _id_vector(item_ids, "item_ids")
    if user_ids.shape != item_ids.shape:
        raise ValueError(
            f"user_ids and item_ids must have the same length, got {user_ids.numel()} and {item_ids.numel()}")
    if user_ids.device != item_ids.device:
        raise ValueError(f"user_ids and item_ids must be on one device, got {user_ids.device} and {item_ids.device}")
    n_users, n_items = nonnegative_int(n_users, "n_users"), nonnegative_int(n_items, "n_items")
    if n_users * n_items >= 2**63:  # the int64 keys user * n_items + item would wrap around
        raise ValueError(f"n_users * n_items must be < 2**63, got {n_users} * {n_items}")
    if user_ids.numel():
        if int(user_ids.min()) < 0 or int(user_ids.max()) >= n_users:
            raise ValueError(f"user_ids must lie in [0, {n_users})")
        if int(item_ids.min()) < 0 or int(item_ids.max()) >= n_items:
            raise ValueError(f"item_ids must lie in [0, {n_items})")
    device = user_ids.device
    num_nodes = n_users + n_items
    pairs = torch.unique(user_ids * n_items + item_ids)  # sorted, deduplicated
    users, items = pairs // n_items if n_items else pairs, pairs % n_items if n_items else pairs
    del pairs
    # Rows in (row, col) order without sorting both directions: the user rows are the pairs in their sorted order,
    # the item rows the same pairs stably sorted by item (users ascending within an item). Each half is written
    # straight into the int32/float32 result: the 2 x nnz int64 row/col/key arrays and float64 value products of
    # sorting the two directions together peaked at ~9x the graph's own bytes (170-200 MB at Yelp2018's size, kept by
    # glibc for the rest of the process); this peaks at ~4x (tests/ops/test_graph_memory.py).
    n_pairs = users.numel()
    degree = torch.cat([torch.bincount(users, minlength=n_users), torch.bincount(items, minlength=n_items)])
    inv_sqrt = degree.double().clamp(min=1).rsqrt()
    index_dtype = torch.int32 if max(num_nodes, 2 * n_pairs) < 2**31 - 1 else torch.long
    col = torch.empty(2 * n_pairs, dtype=index_dtype, device=device)
    val = torch.empty(2 * n_pairs, dtype=torch.float32, device=device)
    items += n_users  # node ids
    col[:n_pairs] = items
    val[:n_pairs] = inv_sqrt[users].mul_(inv_sqrt[items])
    by_item = torch.argsort(items, stable=True)
    users = users[by_item]  # one at a time: each old array is freed before the next gather
    items = items[by_item]
    del by_item
    col[n_pairs:] = users
    val[n_pairs:] = inv_sqrt[items].mul_(inv_sqrt[users])
    del users, items, inv_sqrt
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=device)
    torch.cumsum(degree, 0, out=rowptr[1:])
    return CSRGraph(rowptr.to(index_dtype), col, val, num_nodes, symmetric=True)


def transpose_positions(graph: CSRGraph) -> Tensor:
    """``[nnz]`` int64: for each stored entry ``(r, c)`` of a symmetric ``graph``, the position of ``(c, r)``.

    A pair stored more than once is matched copy by copy (the k-th ``(r, c)`` with the k-th ``(c, r)``), so the map
    is its own inverse and a permutation.

    Raises:
        ValueError: the sparsity pattern is not symmetric (an entry without its mirror, or fewer copies of it), or
            the columns of a row are not sorted.
    """
    graph.validate_once()  # a malformed rowptr/col raised torch's "repeats can not be negative", naming neither
    n = graph.num_nodes
    keys = graph.row_indices() * n + graph.col.long()  # non-decreasing: rows in order, columns sorted within a row
    if graph.nnz > 1 and bool((keys.diff() < 0).any()):
        raise ValueError("transpose_positions needs a graph whose column indices are sorted within each row")
    copy = torch.arange(graph.nnz, device=graph.device) - torch.searchsorted(keys, keys)  # k-th copy of its pair
    mirrored = graph.col.long() * n + graph.row_indices()
    positions = torch.searchsorted(keys, mirrored) + copy  # past the end when the last key lacks mirrored copies
    found = keys[positions.clamp(max=max(graph.nnz - 1, 0))] == mirrored
    if not bool((found & (positions < graph.nnz)).all()):
        raise ValueError("transpose_positions needs a graph with a symmetric sparsity pattern")
    return positions


def drop_edges(graph: CSRGraph, rate: float, transpose: Tensor = None) -> CSRGraph:
    r"""Edge dropout of a symmetric graph: each undirected edge is dropped with probability ``rate`` and the kept
    values are scaled by :math:`1 / (1 - \text{rate})`, without renormalising (NGCF's node dropout as RecBole's
    ``SparseDropout`` and MixGCF's ``_sparse_dropout`` apply it). Both directions of an edge are kept or dropped
    together, so the result stays symmetric, as the propagation ops' backward pass needs; those two implementations
    drop the two stored entries independently (the same expectation). Draws from torch's global generator on the
    graph's device.

    Args:
        graph (CSRGraph): a symmetric graph (e.g. from :func:`bipartite_normalized_graph`).
        rate (float): drop probability in ``[0, 1)``; 0 returns ``graph`` itself.
        transpose (Tensor, optional): :func:`transpose_positions` of ``graph``, when the caller keeps it.
    """
    if isinstance(rate, (str, bytes)) or not hasattr(rate, "__float__"):  # None, '0.5': a comparison error before
        raise TypeError(f"rate must be a number in [0, 1), got {rate!r}")
    if not 0 <= rate < 1:
        raise ValueError(f"rate must lie in [0, 1), got {rate}")
    if rate == 0 or graph.nnz == 0:
        return graph
    transpose = transpose_positions(graph) if transpose is None else transpose
    if not isinstance(transpose, Tensor) or transpose.shape != (graph.nnz,) or transpose.dtype != torch.int64:
        raise ValueError(f"transpose must be the [nnz={graph.nnz}] int64 transpose_positions(graph), got "
                         f"{tuple(transpose.shape) if isinstance(transpose, Tensor) else type(transpose).__name__}")
    rows = graph.row_indices()
    upper = (rows <= graph.col.long()).nonzero(as_tuple=True)[0]  # one stored entry per undirected edge
    keep_edge = torch.rand(upper.numel(), device=graph.device) >= rate
    keep = torch.zeros(graph.nnz, dtype=torch.bool, device=graph.device)
    keep[upper] = keep_edge
    keep[transpose[upper]] = keep_edge  # a diagonal entry is its own transpose
    degree = torch.bincount(rows[keep], minlength=graph.num_nodes)
    rowptr = torch.zeros(graph.num_nodes + 1, dtype=torch.long, device=graph.device)
    torch.cumsum(degree, 0, out=rowptr[1:])
    return CSRGraph(rowptr.to(graph.rowptr.dtype), graph.col[keep], graph.val[keep] / (1.0 - rate), graph.num_nodes,
                    graph.symmetric)


def _id_vector(ids, name: str) -> Tensor:
    """``ids`` as a 1-D int64 tensor; floating, boolean or multi-dimensional ids are refused, not truncated."""
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(ids.shape)}")
    if ids.numel() and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):  # [] is float32
        raise TypeError(f"{name} must hold integer ids, got {ids.dtype}")
    return ids.long()


def nonnegative_int(n, name: str) -> int:
    """``n`` as a Python int >= 0 (an integer scalar tensor is taken, a bool is not: ``True`` layers is a slip);
    errors name the argument ``name``."""
    if isinstance(n, bool) or (isinstance(n, torch.Tensor) and n.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {n!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    if n >= 2**63:  # the kernels take an int64: torch's own error read "expected type 'int', found type 'int'"
        raise ValueError(f"{name} must be < 2**63, got {n}")
    return n
