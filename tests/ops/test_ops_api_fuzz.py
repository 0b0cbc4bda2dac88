"""Python-API fuzz findings on recbole_hnlm.ops: bad arguments that gave errors naming no argument (AttributeError,
the dispatcher's "no Meta kernel registered", torch's "repeats can not be negative"), or silently returned
uninitialised memory. Each test pins the clear error the op now raises, on the kernels and on the references."""
import pytest
import torch

from recbole_hnlm.ops import (CSRGraph, _ext, bipartite_normalized_graph, candidate_scores, drop_edges, gather_rows,
                              lightgcn_propagate, mixgcf_mix, select_candidates, spmm, transpose_positions)


@pytest.fixture(params=[True, False], ids=["kernel", "reference"])
def kernel(request):
    if request.param and not _ext.WITH_EXT:
        pytest.skip("recbole_hnlm._C is not built")
    previous = _ext.is_enabled()
    _ext.set_enabled(request.param)
    yield request.param
    _ext.set_enabled(previous)


def graph():
    return bipartite_normalized_graph(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 1, 0]), 3, 3)


def scoring(B=3, d=4, items=5, M=4):
    torch.manual_seed(0)
    return torch.randn(B, d), torch.randn(items, d), torch.randint(0, items, (B, M))


def mixing(B=3, L=2, d=4, items=5, M=4):
    torch.manual_seed(0)
    return (torch.randn(B, d), torch.randn(B, L, d), torch.randn(items, L, d), torch.randint(0, items, (B, M)),
            torch.rand(B, L))


@pytest.mark.parametrize("which", ["graph", "x"])
def test_propagation_ops_refuse_non_tensor_arguments_by_name(kernel, which):
    """spmm(None, x) / spmm(g, ndarray) raised AttributeError ('NoneType' object has no attribute 'num_nodes')."""
    g, x = graph(), torch.randn(6, 2)
    args = (None, x) if which == "graph" else (g, x.numpy())
    with pytest.raises(TypeError, match=f"^{which} must be a"):
        spmm(*args)
    with pytest.raises(TypeError, match=f"^{'graph' if which == 'graph' else 'ego'} must be a"):
        lightgcn_propagate(*(args[0], args[1]) if which == "graph" else (g, x.tolist()), 2)


def test_a_graph_of_lists_is_a_type_error_naming_the_field(kernel):
    """CSRGraph([0, 1, 2], ...) raised "'list' object has no attribute 'device'"."""
    g = CSRGraph([0, 1, 2], [1, 0], [1.0, 1.0], 2)
    with pytest.raises(TypeError, match="CSRGraph.rowptr must be a Tensor, got list"):
        spmm(g, torch.ones(2, 1))


@pytest.mark.parametrize("field", ["col", "val"])
def test_graph_fields_on_another_device_are_refused_by_name(kernel, field):
    """col or val on another device than rowptr reached the dispatcher ("no Meta kernel registered") on the kernel
    path and "Values and crow_indices need to be on the same device" on the reference."""
    g = graph()
    setattr(g, field, getattr(g, field).to("meta"))
    with pytest.raises(ValueError, match="rowptr, col and val must be on one device"):
        spmm(g, torch.randn(6, 2))


@pytest.mark.parametrize("name", ["query", "item_layers", "candidates", "alpha"])
def test_mixgcf_mix_refuses_an_argument_on_another_device_by_name(kernel, name):
    args = dict(zip(["query", "pos_layers", "item_layers", "candidates", "alpha"], mixing()))
    args[name] = args[name].to("meta")
    with pytest.raises(ValueError, match=f"^{name} is on meta but the other arguments are on cpu"):
        mixgcf_mix(**args)


@pytest.mark.parametrize("name", ["items", "candidates", "target"])
def test_scoring_ops_refuse_an_argument_on_another_device_by_name(kernel, name):
    user, items, candidates = scoring()
    args = dict(user=user, items=items, candidates=candidates, target=torch.zeros(3))
    args[name] = args[name].to("meta")
    with pytest.raises(ValueError, match=f"^{name} is on meta"):
        select_candidates(**args)
    if name != "target":
        args.pop("target")
        with pytest.raises(ValueError, match=f"^{name} is on meta"):
            candidate_scores(**args)


@pytest.mark.parametrize("name,value", [("alpha", 0.5), ("query", None), ("candidates", [[0, 1]] * 3)])
def test_mixgcf_mix_refuses_non_tensor_arguments_by_name(kernel, name, value):
    args = dict(zip(["query", "pos_layers", "item_layers", "candidates", "alpha"], mixing()))
    args[name] = value
    with pytest.raises(TypeError, match=f"^{name} must be a Tensor"):
        mixgcf_mix(**args)


def test_select_candidates_refuses_a_python_float_target(kernel):
    user, items, candidates = scoring()
    with pytest.raises(TypeError, match="^target must be a Tensor, got float"):
        select_candidates(user, items, candidates, 0.5)


def test_gather_rows_refuses_an_index_on_another_device():
    """A CPU table with a meta index returned uninitialised memory, no error."""
    with pytest.raises(ValueError, match="index is on meta but table is on cpu"):
        gather_rows(torch.randn(5, 3), torch.tensor([1], device="meta"))


def test_gather_rows_refuses_a_0d_table_and_names_the_range():
    """A 0-D table was read as one row (table[index] refuses it); an id outside the table said only "index out of
    range in self"."""
    with pytest.raises(ValueError, match="table must have at least one dimension"):
        gather_rows(torch.tensor(1.0), torch.tensor([0]))
    with pytest.raises(IndexError, match=r"outside \[0, 5\)"):
        gather_rows(torch.randn(5, 3), torch.tensor([-1]))
    table = torch.randn(5, 3)
    assert torch.equal(gather_rows(table, torch.tensor([[4, 0]])), table[torch.tensor([[4, 0]])])


def test_bipartite_graph_refuses_ids_on_two_devices_and_overflowing_keys():
    """Mixed devices raised "Tensor.item() cannot be called on meta tensors"; n_users * n_items >= 2**63 wrapped the
    int64 pair keys and raised bincount's "only supports 1-d non-negative integral inputs"."""
    with pytest.raises(ValueError, match="user_ids and item_ids must be on one device"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0], device="meta"), 1, 1)
    with pytest.raises(ValueError, match=r"n_users \* n_items must be < 2\*\*63"):
        bipartite_normalized_graph(torch.tensor([3]), torch.tensor([0]), 4, 2**62)


def test_num_layers_beyond_int64_is_a_value_error_naming_it():
    """num_layers = 2**63 reached the op schema: "Expected a value of type 'int' ... but instead found type 'int'"
    (and the reference looped over 2**63 layers: not run here, a hang on the old code)."""
    with pytest.raises(ValueError, match=r"num_layers must be < 2\*\*63"):
        lightgcn_propagate(graph(), torch.randn(6, 2), 2**63)


def test_transpose_positions_validates_the_graph_first():
    """A decreasing rowptr raised torch's "repeats can not be negative"; a column outside the graph was reported as
    an asymmetric pattern."""
    bad_rowptr = CSRGraph(torch.tensor([0, 5, 1]), torch.tensor([1]), torch.tensor([1.0]), 2)
    with pytest.raises(ValueError, match="rowptr must start at 0, end at nnz and be non-decreasing"):
        transpose_positions(bad_rowptr)
    bad_col = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 7]), torch.tensor([1.0, 1.0]), 2)
    with pytest.raises(ValueError, match=r"col must lie in \[0, 2\)"):
        drop_edges(bad_col, 0.5)


@pytest.mark.parametrize("rate", [None, "0.5"])
def test_drop_edges_refuses_a_rate_that_is_no_number(rate):
    """rate=None raised "'<=' not supported between instances of 'int' and 'NoneType'"."""
    with pytest.raises(TypeError, match="rate must be a number in"):
        drop_edges(graph(), rate)


def test_drop_edges_refuses_a_transpose_of_the_wrong_length():
    """A short transpose raised "index 1 is out of bounds for dimension 0 with size 1"; a right one still works."""
    g = graph()
    with pytest.raises(ValueError, match=r"transpose must be the \[nnz=8\] int64"):
        drop_edges(g, 0.5, torch.tensor([0]))
    torch.manual_seed(0)
    dropped = drop_edges(g, 0.5, transpose_positions(g)).to_dense()
    assert torch.equal(dropped, dropped.t())


def test_the_raw_mixgcf_backward_op_refuses_an_integer_alpha():
    """Called directly (the wrapper refuses it first), mixgcf_mix_backward took an int64 alpha and computed the
    gradients with alpha = 0."""
    if not _ext.WITH_EXT:
        pytest.skip("recbole_hnlm._C is not built")
    grad_z, chosen = torch.randn(2, 2, 3), torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(RuntimeError, match="alpha must be a floating tensor"):
        _ext.ops.mixgcf_mix_backward(grad_z, chosen, torch.zeros(2, 2, dtype=torch.long), 5)
    grad_pos, grad_items = _ext.ops.mixgcf_mix_backward(grad_z, chosen, torch.full((2, 2), 0.25), 5)
    torch.testing.assert_close(grad_pos, 0.25 * grad_z)  # the positive's share of z = alpha * pos + ...
    assert grad_items.shape == (5, 2, 3)
