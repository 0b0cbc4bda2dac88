"""bipartite_normalized_graph against a dense construction; CSRGraph helpers."""
import pytest
import torch

from recbole_hnlm.ops import CSRGraph, bipartite_normalized_graph, drop_edges, transpose_positions


def dense_normalized_adjacency(users, items, n_users, n_items):
    """A_hat built the textbook way: dense R, block matrix, D^-1/2 A D^-1/2 with 0 for isolated nodes."""
    R = torch.zeros(n_users, n_items, dtype=torch.float64)
    R[users, items] = 1.0  # duplicates collapse
    A = torch.zeros(n_users + n_items, n_users + n_items, dtype=torch.float64)
    A[:n_users, n_users:] = R
    A[n_users:, :n_users] = R.T
    deg = A.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv[:, None] * A * inv[None, :]


def test_docstring_example():
    g = bipartite_normalized_graph(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1]), 2, 3)
    assert g.rowptr.tolist() == [0, 2, 3, 3, 5, 6]
    assert g.col.tolist() == [3, 4, 3, 0, 1, 0]
    assert g.num_nodes == 5 and g.nnz == 6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_dense_construction(seed):
    gen = torch.Generator().manual_seed(seed)
    n_users, n_items, n_edges = 13, 17, 60
    users = torch.randint(0, n_users - 1, (n_edges,), generator=gen)  # last user isolated
    items = torch.randint(1, n_items - 2, (n_edges,), generator=gen)  # items 0, n-2, n-1 isolated
    users = torch.cat([users, users[:10]])  # explicit duplicate pairs
    items = torch.cat([items, items[:10]])
    g = bipartite_normalized_graph(users, items, n_users, n_items)
    expected = dense_normalized_adjacency(users, items, n_users, n_items)
    torch.testing.assert_close(g.to_dense().double(), expected, atol=1e-7, rtol=1e-6)
    dense = g.to_dense()
    assert torch.equal(dense, dense.T)  # exactly symmetric
    unique_pairs = torch.unique(users * n_items + items).numel()
    assert g.nnz == 2 * unique_pairs
    assert g.rowptr.dtype == torch.int32 and g.col.dtype == torch.int32 and g.val.dtype == torch.float32
    degree = g.rowptr.diff()
    for isolated in (n_users - 1, n_users + 0, n_users + n_items - 2, n_users + n_items - 1):
        assert degree[isolated] == 0
    for r in range(g.num_nodes):  # sorted columns within each row
        row_cols = g.col[g.rowptr[r] : g.rowptr[r + 1]]
        assert torch.all(row_cols[1:] > row_cols[:-1])
    g.validate()


def test_no_interactions_gives_empty_rows():
    g = bipartite_normalized_graph(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 3, 4)
    assert g.num_nodes == 7 and g.nnz == 0 and g.rowptr.tolist() == [0] * 8


def test_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="item_ids"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([5]), 2, 5)
    with pytest.raises(ValueError, match="user_ids"):
        bipartite_normalized_graph(torch.tensor([-1]), torch.tensor([0]), 2, 5)
    with pytest.raises(ValueError, match="same length"):
        bipartite_normalized_graph(torch.tensor([0, 1]), torch.tensor([0]), 2, 5)


def test_rejects_ids_and_counts_that_are_not_integers():
    """Float ids were truncated (0.7 -> user 0), 2-D ids flattened, a float count failed inside bincount."""
    with pytest.raises(TypeError, match="user_ids must hold integer ids, got torch.float32"):
        bipartite_normalized_graph(torch.tensor([0.7, 1.2]), torch.tensor([0, 1]), 2, 2)
    with pytest.raises(TypeError, match="item_ids must hold integer ids, got torch.bool"):
        bipartite_normalized_graph(torch.tensor([0, 1]), torch.tensor([True, False]), 2, 2)
    with pytest.raises(ValueError, match=r"user_ids must be 1-D, got shape \(2, 3\)"):
        bipartite_normalized_graph(torch.zeros(2, 3, dtype=torch.long), torch.zeros(6, dtype=torch.long), 2, 2)
    with pytest.raises(TypeError, match="n_users must be an integer, got 2.0"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0]), 2.0, 2)
    with pytest.raises(ValueError, match="n_items must be >= 0"):
        bipartite_normalized_graph(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 2, -1)
    g = bipartite_normalized_graph([], [], torch.tensor(2), 3)  # empty lists, an integer scalar tensor
    assert g.num_nodes == 5 and isinstance(g.num_nodes, int) and g.nnz == 0


def test_validate_catches_broken_csr():
    g = bipartite_normalized_graph(torch.tensor([0, 1]), torch.tensor([1, 0]), 2, 2)
    bad = CSRGraph(g.rowptr, g.col.clone(), g.val, g.num_nodes)
    bad.col[0] = g.num_nodes
    with pytest.raises(ValueError, match="col"):
        bad.validate()
    with pytest.raises(ValueError, match="rowptr"):
        CSRGraph(g.rowptr[:-1], g.col, g.val, g.num_nodes).validate()


def test_to_same_device_is_identity():
    g = bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0]), 1, 1)
    assert g.to("cpu") is g
    assert g.device == torch.device("cpu")


def test_drop_edges_keeps_the_graph_symmetric_and_scales_the_kept_values():
    torch.manual_seed(0)
    graph = bipartite_normalized_graph(torch.randint(0, 40, (600,)), torch.randint(0, 70, (600,)), 40, 70)
    dense = graph.to_dense()
    transpose = transpose_positions(graph)
    assert torch.equal(graph.col.long()[transpose], graph.row_indices())
    dropped = drop_edges(graph, 0.3, transpose).validate()
    out = dropped.to_dense()
    assert torch.equal(out, out.T) and dropped.rowptr.dtype == graph.rowptr.dtype
    kept = out != 0
    assert bool((dense[kept] != 0).all()) and torch.allclose(out[kept], dense[kept] / 0.7)
    assert 0.6 < kept.sum() / (dense != 0).sum() < 0.8
    assert drop_edges(graph, 0.0) is graph
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\)"):
        drop_edges(graph, 1.0)
    one_way = CSRGraph(torch.tensor([0, 1, 1], dtype=torch.int32), torch.tensor([1], dtype=torch.int32),
                       torch.ones(1), 2)
    with pytest.raises(ValueError, match="symmetric sparsity pattern"):
        transpose_positions(one_way)


def test_a_pair_stored_twice_is_mirrored_copy_by_copy():
    """With a pair stored twice, both copies of (r, c) mapped to the first copy of (c, r): drop_edges never kept the
    second mirrored copy and returned an asymmetric graph (half the draws), which the ops' backward cannot use."""
    rowptr = torch.tensor([0, 3, 5, 7], dtype=torch.int32)  # (0,1) x2, (0,2); (1,0) x2; (2,0), (2,2) self-loop
    col = torch.tensor([1, 1, 2, 0, 0, 0, 2], dtype=torch.int32)
    graph = CSRGraph(rowptr, col, torch.arange(1.0, 8.0), 3)
    transpose = transpose_positions(graph)
    assert transpose.tolist() == [3, 4, 5, 0, 1, 2, 6]
    assert torch.equal(transpose[transpose], torch.arange(graph.nnz))
    torch.manual_seed(0)
    for _ in range(20):
        dropped = drop_edges(graph, 0.5, transpose)
        pattern = torch.zeros(3, 3, dtype=torch.long)
        pattern.index_put_((dropped.row_indices(), dropped.col.long()), torch.ones(dropped.nnz, dtype=torch.long),
                           accumulate=True)  # counts the copies kept of every pair
        assert torch.equal(pattern, pattern.T)
    fewer_copies = CSRGraph(torch.tensor([0, 2, 3]), torch.tensor([1, 1, 0]), torch.ones(3), 2)
    with pytest.raises(ValueError, match="symmetric sparsity pattern"):
        transpose_positions(fewer_copies)
    unsorted = CSRGraph(torch.tensor([0, 2, 3, 4]), torch.tensor([2, 1, 0, 0]), torch.ones(4), 3)
    with pytest.raises(ValueError, match="sorted within each row"):
        transpose_positions(unsorted)


def test_to_dense_adds_duplicate_entries_as_the_ops_do():
    """Two stored entries of one position: ``to_dense`` kept the last (0.5) while spmm adds them (0.75)."""
    from recbole_hnlm.ops import spmm

    graph = CSRGraph(torch.tensor([0, 2, 2], dtype=torch.int32), torch.tensor([0, 0], dtype=torch.int32),
                     torch.tensor([0.25, 0.5]), 2)
    x = torch.randn(2, 3)
    assert graph.to_dense().tolist() == [[0.75, 0.0], [0.0, 0.0]]
    assert graph.validate_structure() is graph
    learnt = CSRGraph(graph.rowptr, graph.col, graph.val.clone().requires_grad_(), 2)
    assert not learnt.to_dense().requires_grad  # a constant, as the ops take the values
    torch.testing.assert_close(graph.to_dense() @ x, spmm(graph, x))


def small_graph():
    """Users 0-2, items 0-2: (0, 0), (0, 1), (1, 1), (2, 2)."""
    return bipartite_normalized_graph(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3, 3)


def test_ids_just_outside_the_range_are_refused():
    """A user id of ``n_users`` would become item 0, an item id of -1 the previous user's last item."""
    with pytest.raises(ValueError, match="user_ids"):
        bipartite_normalized_graph(torch.tensor([2]), torch.tensor([0]), 2, 5)
    with pytest.raises(ValueError, match="item_ids"):
        bipartite_normalized_graph(torch.tensor([1]), torch.tensor([-1]), 2, 5)


def test_transpose_positions_refuses_a_missing_mirror_that_sorts_before_another_entry():
    """(0, 1) without (1, 0): the search for (1, 0) lands on (1, 2), a larger key, which must not count as found
    (only a missing mirror sorting last was tested)."""
    g = CSRGraph(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 1]), torch.ones(3), 3)
    with pytest.raises(ValueError, match="symmetric sparsity pattern"):
        transpose_positions(g)


def test_drop_edges_refuses_a_negative_rate():
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\)"):
        drop_edges(small_graph(), -0.5)


def test_drop_edges_finds_the_mirrors_itself():
    """The public call without a precomputed ``transpose`` (NGCF always passes one): a symmetric, smaller graph."""
    g = small_graph()
    torch.manual_seed(0)
    out = drop_edges(g, 0.5).validate()
    dense = out.to_dense()
    assert torch.equal(dense, dense.T) and out.nnz < g.nnz


def test_drop_edges_keeps_a_self_loop_with_probability_one_minus_rate():
    """A diagonal entry is its own mirror: kept or dropped like any edge, not always dropped."""
    g = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.ones(2), 2)
    torch.manual_seed(0)
    kept = sum(drop_edges(g, 0.5).nnz for _ in range(200))
    assert 150 < kept < 250  # 200 expected of 400 stored entries; the binomial's sd is 10


@pytest.mark.parametrize("corrupt", ["rowptr_too_long", "rowptr_starts_at_1", "rowptr_ends_past_nnz",
                                     "rowptr_ends_before_nnz", "col_dtype_differs"])
def test_validate_refuses_each_invariant_broken_alone(corrupt):
    """The other corruption tests break two rules at once; on the fallback, a rowptr ending before nnz alone gave
    wrong products and one ending past it a segmentation fault."""
    g = small_graph()
    rowptr, col = g.rowptr.clone(), g.col.clone()
    if corrupt == "rowptr_too_long":
        rowptr = torch.cat([rowptr, rowptr[-1:]])
    elif corrupt == "rowptr_starts_at_1":
        rowptr[0] = 1  # still non-decreasing, still ends at nnz
    elif corrupt == "rowptr_ends_past_nnz":
        rowptr[-1] = g.nnz + 2  # still non-decreasing
    elif corrupt == "rowptr_ends_before_nnz":
        rowptr[-1] = rowptr[-2]  # the last row's entries would be ignored
    else:
        col = col.long()
    with pytest.raises(ValueError, match="rowptr"):
        CSRGraph(rowptr, col, g.val, g.num_nodes).validate()
