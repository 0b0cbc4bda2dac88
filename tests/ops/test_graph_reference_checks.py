"""Behaviour of ops/graph.py and ops/reference.py that the other ops tests leave open (found by a mutation audit)."""
import math

import pytest
import torch

from recbole_hnlm.ops import CSRGraph, bipartite_normalized_graph, drop_edges
from recbole_hnlm.ops.reference import (
    candidate_scores_reference,
    lightgcn_propagate_reference,
    mixgcf_mix_official,
    mixgcf_mix_reference,
    select_candidates_reference,
    spmm_reference,
)


def small_graph():
    """3 users, 4 items, a few interactions: a symmetric graph built by the builder."""
    return bipartite_normalized_graph(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 2, 2, 0, 3]), 3, 4)


def pair(val, dtype=torch.float32, n=2):
    """A 2-entry graph ``(0, 1) = val[0]``, ``(1, 0) = val[1]`` on ``n`` nodes."""
    rowptr = torch.tensor([0, 1, 2] + [2] * (n - 2))
    return CSRGraph(rowptr, torch.tensor([1, 0]), torch.tensor(val, dtype=dtype), n)


# ----------------------------------------------------------------------------------------------- CSRGraph helpers


def test_to_moves_every_tensor_and_keeps_the_fields():
    """``to`` moves rowptr, col and val (not only rowptr, which ``device`` reads), and keeps num_nodes and the flag."""
    for g in (small_graph(), CSRGraph(small_graph().rowptr, small_graph().col, small_graph().val, 7)):
        moved = g.to("meta")
        assert {moved.rowptr.device.type, moved.col.device.type, moved.val.device.type} == {"meta"}
        assert moved.num_nodes == g.num_nodes and moved.symmetric == g.symmetric
        assert moved.val.dtype == g.val.dtype and moved.col.dtype == g.col.dtype


def test_to_sparse_csr_and_the_spmm_reference_detach_the_values():
    """The values are constants: no gradient reaches a ``val`` that requires grad, through the reference either."""
    g = small_graph()
    g = CSRGraph(g.rowptr, g.col, g.val.clone().requires_grad_(), g.num_nodes, symmetric=True)
    assert not g.to_sparse_csr().requires_grad and not g.to_sparse_csr(torch.float64).requires_grad
    x = torch.randn(g.num_nodes, 3, requires_grad=True)
    spmm_reference(g, x).sum().backward()
    assert g.val.grad is None and x.grad is not None


def test_to_dense_keeps_the_value_dtype():
    """``to_dense`` is in ``val``'s dtype: a float64 graph is not rounded to float32."""
    g = pair([1 / 3, 1 / 3], torch.float64)
    dense = g.to_dense()
    assert dense.dtype == torch.float64 and dense[0, 1].item() == 1 / 3


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("make, message", [
    (lambda g: CSRGraph(g.rowptr[None], g.col, g.val, g.num_nodes), r"rowptr must have num_nodes \+ 1 = 8 entries"),
    (lambda g: CSRGraph(g.rowptr, g.col[None], g.val[None], g.num_nodes), r"col and val must be 1-D of equal length"),
    (lambda g: CSRGraph(g.rowptr, g.col, g.val[:-1], g.num_nodes), r"col and val must be 1-D of equal length"),
    (lambda g: CSRGraph(g.rowptr.short(), g.col.short(), g.val, g.num_nodes),
     r"rowptr and col must share an int32/int64 dtype, got torch.int16, torch.int16"),
])
def test_validate_structure_names_each_broken_shape(make, message):
    """A 2-D rowptr or col (even with the right number of entries), a short val and 16-bit indices are refused with
    the message that names the rule."""
    with pytest.raises(ValueError, match=message):
        make(small_graph()).validate_structure()


def test_validate_names_the_column_range_and_refuses_a_negative_column():
    """``col`` must lie in ``[0, num_nodes)``: -1 is refused as well as num_nodes, and the message gives the range."""
    for bad in (-1, 2):
        with pytest.raises(ValueError, match=r"col must lie in \[0, 2\)"):
            CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, bad]), torch.ones(2), 2).validate()
    CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.ones(2), 2).validate()


def test_validate_accepts_empty_rows_anywhere():
    """Isolated nodes (empty rows, a zero step in rowptr) are valid, at the start, middle and end."""
    CSRGraph(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([3, 1]), torch.ones(2), 5).validate()


def test_validate_symmetric_keeps_float64_values_in_float64():
    """A float64 graph is compared in float64: a tiny value without its mirror is not rounded to a stored zero."""
    one_way = CSRGraph(torch.tensor([0, 1, 1]), torch.tensor([1]), torch.tensor([1e-300], dtype=torch.float64), 2)
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is 1e-300 but \(1, 0\) is absent"):
        one_way.validate().validate_symmetric()


def test_validate_symmetric_treats_a_negative_value_as_an_entry():
    """Only a stored zero is no entry: a negative value without its mirror is an asymmetry."""
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is -0.5 but \(1, 0\) is absent"):
        CSRGraph(torch.tensor([0, 1, 1]), torch.tensor([1]), torch.tensor([-0.5]), 2).validate_symmetric()


def test_validate_symmetric_message_names_both_values():
    """The message gives the entry, its value, the mirror's coordinates and the mirror's value."""
    with pytest.raises(ValueError, match=r"entry \(0, 2\) is 0.5 but \(2, 0\) is 0.25\. The ops' backward"):
        CSRGraph(torch.tensor([0, 1, 1, 2]), torch.tensor([2, 0]), torch.tensor([0.5, 0.25]), 3).validate_symmetric()


def test_validate_symmetric_honours_the_rtol_argument():
    """``rtol`` widens the tolerance, for 16-bit values too (where the floor is two rounding steps)."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        g = pair([1.0, 1.05], dtype)
        with pytest.raises(ValueError, match="not symmetric"):
            g.validate_symmetric()
        assert g.validate_symmetric(rtol=0.1) is g


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_values_two_rounding_steps_apart_pass(dtype):
    """For 16-bit values the tolerance is two rounding steps (2 eps): 1 and 1 + 2 eps pass, 1 and 1 + 3 eps do not."""
    eps = torch.finfo(dtype).eps
    pair([1.0, 1.0 + 2 * eps], dtype).validate_symmetric()
    with pytest.raises(ValueError, match="not symmetric"):
        pair([1.0, 1.0 + 3 * eps], dtype).validate_symmetric()


# ------------------------------------------------------------------------------------------ bipartite builder


def test_values_are_the_correctly_rounded_inverse_square_roots():
    """The values are 1/sqrt(d_u d_i) rounded once to float32 (computed in float64): float32 rsqrt of the degrees
    is one ulp off for degree 6."""
    g = bipartite_normalized_graph(torch.arange(6), torch.zeros(6, dtype=torch.long), 6, 1)
    assert g.val.dtype == torch.float32
    expected = torch.tensor(1 / math.sqrt(6), dtype=torch.float32)
    assert bool((g.val == expected).all())


def test_range_messages_give_the_ranges():
    """Out-of-range ids are named with the range they must lie in."""
    with pytest.raises(ValueError, match=r"user_ids must lie in \[0, 2\)"):
        bipartite_normalized_graph(torch.tensor([2]), torch.tensor([0]), 2, 3)
    with pytest.raises(ValueError, match=r"item_ids must lie in \[0, 3\)"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([-1]), 2, 3)


def test_zero_dimensional_and_complex_ids_are_refused():
    """Ids must be a 1-D integer vector: a scalar tensor is refused (not taken as one interaction), complex ids too."""
    with pytest.raises(ValueError, match=r"user_ids must be 1-D, got shape \(\)"):
        bipartite_normalized_graph(torch.tensor(0), torch.tensor(0), 1, 1)
    with pytest.raises(TypeError, match="item_ids must hold integer ids, got torch.complex64"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0j]), 1, 1)


def test_zero_users_or_items_give_an_empty_graph():
    """Counts of 0 are allowed (>= 0): the graph has the other side's nodes, all isolated."""
    empty = torch.empty(0, dtype=torch.long)
    for n_users, n_items in ((0, 3), (3, 0), (0, 0)):
        g = bipartite_normalized_graph(empty, empty, n_users, n_items).validate()
        assert g.num_nodes == n_users + n_items and g.nnz == 0 and g.rowptr.tolist() == [0] * (g.num_nodes + 1)


# ----------------------------------------------------------------------------------------------- drop_edges


def test_drop_edges_keeps_the_symmetric_flag_as_it_was():
    """``drop_edges`` keeps the input's ``symmetric`` promise: it does not promise symmetry for a graph that did not."""
    g = small_graph()
    unflagged = CSRGraph(g.rowptr, g.col, g.val, g.num_nodes)
    torch.manual_seed(0)
    assert drop_edges(g, 0.5).symmetric is True
    assert drop_edges(unflagged, 0.5).symmetric is False


# ------------------------------------------------------------------------------------------------ references


def test_propagate_reference_accepts_ego_dtype_as_layers_dtype():
    """``layers_dtype`` equal to ego's dtype is the default, also without ``return_layers``."""
    g, ego = small_graph(), torch.randn(7, 3)
    torch.testing.assert_close(lightgcn_propagate_reference(g, ego, 2, layers_dtype=torch.float32),
                               lightgcn_propagate_reference(g, ego, 2), rtol=0, atol=0)


def test_propagate_reference_refuses_bad_layer_options():
    """A bfloat16 stack needs ``return_layers``; float16 stacks and negative layer counts are refused."""
    g, ego = small_graph(), torch.randn(7, 3)
    with pytest.raises(ValueError, match="pass return_layers=True or leave it None"):
        lightgcn_propagate_reference(g, ego, 2, layers_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"layers_dtype must be torch.float32 \(ego's dtype\) or torch.bfloat16"):
        lightgcn_propagate_reference(g, ego, 2, return_layers=True, layers_dtype=torch.float16)
    with pytest.raises(ValueError, match="num_layers must be >= 0, got -1"):
        lightgcn_propagate_reference(g, ego, -1)


def test_propagate_reference_with_zero_layers_returns_ego():
    """0 layers: the mean of the single layer E_0 is ego itself."""
    g, ego = small_graph(), torch.randn(7, 3)
    assert torch.equal(lightgcn_propagate_reference(g, ego, 0), ego)
    assert torch.equal(lightgcn_propagate_reference(g, ego, 0, return_layers=True), ego[:, None])


def test_bfloat16_stack_is_computed_from_ego_rounded_first():
    """A bfloat16 stack holds the layers of ego rounded to bfloat16 (computed in float32), as documented; each layer
    is A_hat applied to the previous one."""
    torch.manual_seed(0)
    g, ego = small_graph(), torch.randn(7, 16, dtype=torch.float32)
    stack = lightgcn_propagate_reference(g, ego, 2, return_layers=True, layers_dtype=torch.bfloat16)
    assert stack.dtype == torch.bfloat16 and stack.shape == (7, 3, 16)
    adj = g.to_dense().double()
    e0 = ego.to(torch.bfloat16).double()
    for k, layer in enumerate([e0, adj @ e0, adj @ adj @ e0]):
        torch.testing.assert_close(stack[:, k].double(), layer.to(torch.bfloat16).double(), rtol=0, atol=0)


def test_propagate_reference_returns_16_bit_ego_in_its_dtype():
    """bfloat16/float16 ego: computed in float32, returned in ego's dtype."""
    g = small_graph()
    for dtype in (torch.bfloat16, torch.float16):
        ego = torch.randn(7, 3).to(dtype)
        assert lightgcn_propagate_reference(g, ego, 2).dtype == dtype
        assert spmm_reference(g, ego).dtype == dtype


def mix_inputs(dtype=torch.float32, B=3, L=2, d=4, n_items=6, M=3):
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(B, d, generator=gen).to(dtype)
    pos = torch.randn(B, L, d, generator=gen).to(dtype)
    items = torch.randn(n_items, L, d, generator=gen).to(dtype)
    candidates = torch.randint(0, n_items, (B, M), generator=gen)
    alpha = torch.rand(B, L, generator=gen)
    return query, pos, items, candidates, alpha


def test_mix_reference_leaves_alpha_without_gradient():
    """Z is differentiable w.r.t. pos_layers and item_layers only: no gradient reaches alpha."""
    query, pos, items, candidates, alpha = mix_inputs()
    pos.requires_grad_()
    alpha.requires_grad_()
    z, _ = mixgcf_mix_reference(query, pos, items, candidates, alpha)
    z.sum().backward()
    assert alpha.grad is None and pos.grad is not None


def test_mix_reference_returns_16_bit_inputs_in_their_dtype():
    """bfloat16 layers: Z comes back in bfloat16 (computed in float32) and matches the official formulation."""
    query, pos, items, candidates, alpha = mix_inputs(torch.bfloat16)
    z, chosen = mixgcf_mix_reference(query, pos, items, candidates, alpha)
    assert z.dtype == torch.bfloat16 and chosen.dtype == torch.int64
    z32, chosen32 = mixgcf_mix_reference(query.float(), pos.float(), items.float(), candidates, alpha)
    assert torch.equal(chosen, chosen32) and torch.equal(z, z32.to(torch.bfloat16))


def test_official_mix_keeps_the_layers_dtype_for_a_float64_alpha():
    """alpha is cast to the layers' dtype: float32 layers with a float64 alpha give a float32 Z."""
    query, pos, items, candidates, alpha = mix_inputs()
    z, _ = mixgcf_mix_official(query, pos, items, candidates, alpha.double())
    assert z.dtype == torch.float32


def test_candidate_scores_dtype_and_precision():
    """Scores come back in the user's dtype, computed in float64 for float64 inputs (1 + 1e-12 survives)."""
    items = torch.tensor([[1.0 + 1e-12]], dtype=torch.float64)
    s = candidate_scores_reference(torch.ones(1, 1, dtype=torch.float64), items, torch.zeros(1, 1, dtype=torch.long))
    assert s.dtype == torch.float64 and s.item() == 1.0 + 1e-12
    user16, items16 = torch.randn(2, 3).bfloat16(), torch.randn(5, 3).bfloat16()
    assert candidate_scores_reference(user16, items16, torch.tensor([[0, 1], [2, 3]])).dtype == torch.bfloat16


def test_select_compares_float64_scores_in_float64():
    """DNS on float64 inputs: scores 1 and 1 + 1e-12 (equal in float32) pick the larger."""
    items = torch.tensor([[1.0], [1.0 + 1e-12]], dtype=torch.float64)
    pos = select_candidates_reference(torch.ones(1, 1, dtype=torch.float64), items, torch.tensor([[0, 1]]))
    assert pos.tolist() == [1]


def test_select_compares_bfloat16_scores_in_float32():
    """bfloat16 inputs: scores 1 and 1 + 2^-8 (equal once rounded to bfloat16) are compared in float32."""
    user = torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16)
    items = torch.tensor([[1.0, 0.0], [1.0, 2.0 ** -8]], dtype=torch.bfloat16)
    assert select_candidates_reference(user, items, torch.tensor([[0, 1]])).tolist() == [1]


def test_select_casts_the_target_to_the_score_precision():
    """AHNS with float32 scores 1 and 3 and a float64 target 2 + 1e-12: cast to float32 it is 2, a tie, and the first
    position wins (compared in float64 the second would)."""
    user = torch.ones(1, 1)
    items = torch.tensor([[1.0], [3.0]])
    target = torch.tensor([2.0 + 1e-12], dtype=torch.float64)
    assert select_candidates_reference(user, items, torch.tensor([[0, 1]]), target).tolist() == [0]


def test_validate_symmetric_once_trusts_the_builders_flag():
    """A graph flagged ``symmetric`` is not sorted for the check (the builders' promise is taken); the same tensors
    without the flag are checked and refused."""
    asym = pair([0.5, 0.25])
    flagged = CSRGraph(asym.rowptr, asym.col, asym.val, 2, symmetric=True)
    assert flagged.validate_symmetric_once() is flagged
    with pytest.raises(ValueError, match="not symmetric"):
        asym.validate_symmetric_once()


def test_official_mix_backward_reaches_the_layers():
    """The official formulation is differentiable w.r.t. pos_layers and item_layers through the selected mixed rows:
    its gradients equal the reference's (a Wp to pos, (1 - a) to each chosen item row)."""
    query, pos, items, candidates, alpha = mix_inputs(torch.float64)
    grads = []
    for mix in (mixgcf_mix_official, mixgcf_mix_reference):
        p, it = pos.clone().requires_grad_(), items.clone().requires_grad_()
        z, _ = mix(query, p, it, candidates, alpha)
        (z * torch.arange(1.0, z.numel() + 1, dtype=z.dtype).reshape(z.shape)).sum().backward()
        grads.append((p.grad, it.grad))
    assert grads[0][0] is not None and grads[0][1] is not None
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("flag", [True, False, torch.tensor(True)])
def test_a_bool_is_no_count(flag):
    """``num_layers=True`` (a slip for ``return_layers=True``) ran one layer, and ``n_users=False`` built an empty
    side: bools are ints to ``operator.index``; integer tensors are still taken."""
    from recbole_hnlm.ops import lightgcn_propagate

    g = bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0]), 1, 1)
    with pytest.raises(TypeError, match="num_layers must be an integer"):
        lightgcn_propagate(g, torch.ones(2, 1), flag)
    with pytest.raises(TypeError, match="n_users must be an integer"):
        bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0]), flag, 1)
    assert lightgcn_propagate(g, torch.ones(2, 1), torch.tensor(1)).shape == (2, 1)
