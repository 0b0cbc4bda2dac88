"""Checks of the Python wrappers around the C++ kernels (propagation.py, negative_mixing.py) and of the loader
(_ext.py) that the other ops tests leave open: argument checks on both paths, autograd plumbing (non-contiguous
incoming gradients, requires_grad of outputs, 16-bit double backward), and the routing/switch logic of ``_ext``.

Kernels are compared with the references of :mod:`recbole_hnlm.ops.reference` on random inputs at the tolerances of
test_propagation.py / test_negative_mixing.py: float64 atol=rtol=1e-10, float32 1e-5; gradients by gradcheck in
float64. Ids are compared exactly.
"""
import os
import subprocess
import sys
import warnings

import pytest
import torch

from recbole_hnlm.ops import WITH_EXT, candidate_scores, lightgcn_propagate, mixgcf_mix, select_candidates, spmm
from recbole_hnlm.ops import _ext
from recbole_hnlm.ops.reference import (
    lightgcn_propagate_reference,
    mixgcf_mix_reference,
    select_candidates_reference,
    spmm_reference,
)
from test_negative_mixing import mixgcf_inputs, requires_ext, scoring_inputs  # tests/ops is on sys.path
from test_propagation import GRAPHS, TOL, kernels
BOTH_PATHS = pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False],
                                     ids=["kernel", "fallback"])


# ---------------------------------------------------------------------------------------------- propagation.py


def transposed(t):
    """The same values as ``t`` ([N, d] or [N, K, d]) in a non-contiguous layout."""
    return t.transpose(0, -1).contiguous().transpose(0, -1)


@BOTH_PATHS
@pytest.mark.parametrize("op", ["spmm", "mean", "layers"])
def test_non_contiguous_incoming_gradients_give_the_reference_gradients(kernel, op):
    """The backward nodes make the incoming gradient contiguous before the kernels read it: the gradient, and the
    gradient of the backward w.r.t. the incoming gradient, against the reference chain in float64 (1e-10)."""
    g = GRAPHS["isolated_hub"]()
    run = {"spmm": lambda t: spmm(g, t), "mean": lambda t: lightgcn_propagate(g, t, 3),
           "layers": lambda t: lightgcn_propagate(g, t, 3, return_layers=True)}[op]
    reference = {"spmm": lambda t: spmm_reference(g, t), "mean": lambda t: lightgcn_propagate_reference(g, t, 3),
                 "layers": lambda t: lightgcn_propagate_reference(g, t, 3, return_layers=True)}[op]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(g.num_nodes, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    with kernels(kernel):
        out = run(x)
    upstream = transposed(torch.randn(out.shape, dtype=torch.float64, generator=gen))
    assert not upstream.is_contiguous()
    (grad,) = torch.autograd.grad(out, x, upstream)
    x_ref = x.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(reference(x_ref), x_ref, upstream)
    torch.testing.assert_close(grad, expected, **TOL[torch.float64])
    weight = transposed(torch.randn(grad.shape, dtype=torch.float64, generator=gen))
    # the double backward through the incoming gradient (grad-of-grad w.r.t. the upstream)
    up = upstream.detach().requires_grad_()
    with kernels(kernel):
        (g1,) = torch.autograd.grad(run(x), x, up, create_graph=True)
    (gg,) = torch.autograd.grad(g1, up, weight)
    up_ref = upstream.detach().requires_grad_()
    (g1_ref,) = torch.autograd.grad(reference(x_ref), x_ref, up_ref, create_graph=True)
    (gg_ref,) = torch.autograd.grad(g1_ref, up_ref, weight)
    torch.testing.assert_close(gg, gg_ref, **TOL[torch.float64])


@requires_ext
def test_the_gradient_through_a_bfloat16_stack_reaches_ego_in_its_dtype():
    """float64 ego, bfloat16 stack: the gradient arrives in float64 and equals the float64 chain's on a
    bfloat16-exact upstream, to bfloat16 precision (the backward sweeps run on the bfloat16 gradient)."""
    g = GRAPHS["isolated_hub"]()
    ego = torch.randn(g.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    stack = lightgcn_propagate(g, ego, 2, return_layers=True, layers_dtype=torch.bfloat16)
    upstream = torch.randn(stack.shape).to(torch.bfloat16)
    (grad,) = torch.autograd.grad(stack, ego, upstream)
    assert grad.dtype == torch.float64
    ego_ref = ego.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(lightgcn_propagate_reference(g, ego_ref, 2, return_layers=True), ego_ref,
                                      upstream.double())
    torch.testing.assert_close(grad, expected, atol=2e-2, rtol=2e-2)


@BOTH_PATHS
@pytest.mark.filterwarnings("ignore:recbole_hnlm has no meta kernels")
def test_features_on_another_device_are_refused(kernel):
    g = GRAPHS["tiny"]()
    x = torch.randn(g.num_nodes, 4, device="meta")
    with kernels(kernel):
        with pytest.raises(ValueError, match="x is on meta but the graph is on cpu"):
            spmm(g, x)
        with pytest.raises(ValueError, match="ego is on meta but the graph is on cpu"):
            lightgcn_propagate(g, x, 2)


@BOTH_PATHS
def test_features_of_the_wrong_rank_are_refused(kernel):
    g = GRAPHS["tiny"]()
    with kernels(kernel):
        with pytest.raises(ValueError, match=r"x must have shape \[num_nodes=7, d\], got \(7,\)"):
            spmm(g, torch.randn(g.num_nodes))
        with pytest.raises(ValueError, match=r"ego must have shape \[num_nodes=7, d\], got \(7, 2, 3\)"):
            lightgcn_propagate(g, torch.randn(g.num_nodes, 2, 3), 1)


# ------------------------------------------------------------------------------------------ negative_mixing.py


@BOTH_PATHS
def test_malformed_candidates_are_a_value_error_naming_them(kernel):
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    user, table, cand = scoring_inputs(3, 4, 5, 6)
    bad = {"no_columns": cand[:, :0], "one_d": cand[:, 0], "three_d": cand[:, :, None], "batch": cand[:2]}
    with kernels(kernel):
        for name, c in bad.items():
            with pytest.raises(ValueError, match=r"candidates must have shape \[B=3, M>=1\]"):
                mixgcf_mix(query, pos, items, c, alpha)
            with pytest.raises(ValueError, match=r"candidates must have shape \[B=3, M>=1\]"):
                candidate_scores(user, table, c)
            with pytest.raises(ValueError, match=r"candidates must have shape \[B=3, M>=1\]"):
                select_candidates(user, table, c)


@pytest.mark.parametrize("value", [-1, 6, 7])
def test_fallback_names_the_candidate_range(value):
    """The fallback checks the ids itself (the kernels check while reading), with the range in the message; the
    first id past the end (I = 6) is refused as well."""
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    user, table, cand = scoring_inputs(3, 4, 5, 6)
    candidates[2, 3] = cand[2, 3] = value
    with _ext.disabled():
        with pytest.raises(IndexError, match=r"candidates must lie in \[0, 6\)"):
            mixgcf_mix(query, pos, items, candidates, alpha)
        with pytest.raises(IndexError, match=r"candidates must lie in \[0, 6\)"):
            candidate_scores(user, table, cand)
        with pytest.raises(IndexError, match=r"candidates must lie in \[0, 6\)"):
            select_candidates(user, table, cand, torch.zeros(3))


@BOTH_PATHS
def test_an_empty_batch_runs_on_both_paths(kernel):
    query, pos, items, candidates, alpha = mixgcf_inputs(0, 4, 2, 5, 6, torch.float64, True)
    user, table, cand = scoring_inputs(0, 4, 5, 6, torch.float64)
    with kernels(kernel):
        z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
        scores = candidate_scores(user, table, cand)
        picked = select_candidates(user, table, cand, torch.zeros(0, dtype=torch.float64))
    assert z.shape == (0, 2, 5) and chosen.shape == (0, 2) and scores.shape == (0, 4) and picked.shape == (0,)


@BOTH_PATHS
def test_mixgcf_shape_checks_name_the_argument(kernel):
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    with kernels(kernel):
        with pytest.raises(ValueError, match=r"pos_layers must be \[B, L, d\] with L >= 1, got \(3, 5\)"):
            mixgcf_mix(query, pos[:, 0], items, candidates, alpha)
        with pytest.raises(ValueError, match=r"item_layers must be \[I, L=2, d=5\], got \(6, 1, 5\)"):
            mixgcf_mix(query, pos, items[:, :1], candidates, alpha)
        with pytest.raises(ValueError, match=r"item_layers must be \[I, L=2, d=5\], got \(6, 2, 4\)"):
            mixgcf_mix(query, pos, items[..., :4], candidates, alpha)
        with pytest.raises(ValueError, match=r"alpha must be \[B=3, L=2\], got \(3, 3\)"):
            mixgcf_mix(query, pos, items, candidates, torch.rand(3, 3))
        with pytest.raises(ValueError, match=r"query must be \[B=3, d=5\] or \[B, L=2, d\], got \(3, 4\)"):
            mixgcf_mix(query[:, :4], pos, items, candidates, alpha)
        with pytest.raises(ValueError, match=r"query must be \[B=3, d=5\] or \[B, L=2, d\], got \(3, 3, 5\)"):
            mixgcf_mix(torch.randn(3, 3, 5), pos, items, candidates, alpha)


@BOTH_PATHS
def test_scoring_shape_checks_name_the_argument(kernel):
    user, table, cand = scoring_inputs(3, 4, 5, 6)
    with kernels(kernel):
        for op in (candidate_scores, select_candidates):
            with pytest.raises(ValueError, match=r"user must be \[B, d\] and items \[I, d\], got \(3, 5\) and \(6, "):
                op(user, table[:, :4], cand)
        with pytest.raises(ValueError, match=r"target must be \[B=3\], got \(4,\)"):
            select_candidates(user, table, cand, torch.zeros(4))
        with pytest.raises(ValueError, match=r"target must be \[B=3\], got \(3, 1\)"):
            select_candidates(user, table, cand, torch.zeros(3, 1))


@BOTH_PATHS
@pytest.mark.parametrize("which", ["query", "alpha"])
def test_mixgcf_output_needs_no_grad_when_only_the_query_or_alpha_requires_it(kernel, which):
    """Z is differentiable w.r.t. pos_layers and item_layers only: a query or alpha that requires grad (a model's
    pooled user embedding) gives Z no grad_fn, on the kernel path as on the fallback."""
    query, pos, items, candidates, alpha = mixgcf_inputs(4, 3, 2, 5, 6, torch.float64, False)
    query.requires_grad_(which == "query")
    alpha.requires_grad_(which == "alpha")
    with kernels(kernel):
        z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    assert not z.requires_grad and not chosen.requires_grad


@requires_ext
def test_mixgcf_double_backward_of_a_bfloat16_stack_mixes_in_float32():
    """The gradient of MixGCF's backward w.r.t. the incoming gradient is ``a Wp + (1 - a) Wi[chosen]``, summed in
    float32 with alpha in float32 and rounded to bfloat16 once (bit-exact), as the kernels' forward mixes."""
    query, pos, items, candidates, alpha = mixgcf_inputs(6, 4, 3, 8, 10, torch.float32, False, seed=7)
    query, pos, items = query.bfloat16(), pos.bfloat16().requires_grad_(), items.bfloat16().requires_grad_()
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    upstream = torch.randn(z.shape).bfloat16().requires_grad_()
    grad_pos, grad_items = torch.autograd.grad(z, (pos, items), upstream, create_graph=True)
    weight_pos, weight_items = torch.randn(pos.shape).bfloat16(), torch.randn(items.shape).bfloat16()
    (gg,) = torch.autograd.grad((grad_pos * weight_pos).sum() + (grad_items * weight_items).sum(), upstream)
    a = alpha[..., None]
    expected = (a * weight_pos.float() + (1 - a) * weight_items.float()[chosen, torch.arange(3)]).bfloat16()
    assert gg.dtype == torch.bfloat16
    assert torch.equal(gg, expected)


@requires_ext
def test_nan_scores_select_as_torch_argmax_and_argmin_do():
    """A NaN embedding row: the first NaN score wins, in DNS, AHNS and MixGCF, as in the references."""
    user, table, cand = scoring_inputs(6, 5, 4, 8, seed=2)
    table[3] = float("nan")
    cand[0], cand[1] = torch.tensor([1, 3, 5, 3, 2]), torch.tensor([5, 6, 0, 1, 3])
    for target in (None, torch.zeros(6), torch.randn(6)):
        picked = select_candidates(user, table, cand, target)
        assert torch.equal(picked, select_candidates_reference(user, table, cand, target))
        assert picked[:2].tolist() == [1, 4]
    query, pos, items, candidates, alpha = mixgcf_inputs(4, 5, 2, 4, 8, torch.float32, False)
    items[3, 1] = float("nan")
    candidates[0] = torch.tensor([1, 3, 5, 3, 2])
    chosen = mixgcf_mix(query, pos, items, candidates, alpha)[1]
    assert torch.equal(chosen, mixgcf_mix_reference(query, pos, items, candidates, alpha)[1])
    assert chosen[0, 1].item() == 3


@pytest.mark.parametrize("kernel, d", [pytest.param(True, 0, marks=requires_ext),
                                       pytest.param(True, 3, marks=requires_ext), (False, 0), (False, 3)],
                         ids=["kernel-0", "kernel-3", "fallback-0", "fallback-3"])
def test_mixgcf_double_backward_with_any_embedding_width(kernel, d):
    """create_graph=True through MixGCF with d = 0 (which the forward and first backward accept, on both paths): the
    gradient w.r.t. the incoming gradient is a Wp + (1 - a) Wi[chosen] (empty for d = 0)."""
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, d, 5, torch.float64, False, seed=1)
    pos.requires_grad_(), items.requires_grad_()
    with kernels(kernel):
        z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
        upstream = torch.randn(z.shape, dtype=torch.float64).requires_grad_()
        grad_pos, grad_items = torch.autograd.grad(z, (pos, items), upstream, create_graph=True)
        weight_pos = torch.randn(pos.shape, dtype=torch.float64)
        weight_items = torch.randn(items.shape, dtype=torch.float64)
        (gg,) = torch.autograd.grad((grad_pos * weight_pos).sum() + (grad_items * weight_items).sum(), upstream)
    a = alpha[..., None]
    expected = a * weight_pos + (1 - a) * weight_items[chosen, torch.arange(2)]
    torch.testing.assert_close(gg, expected, **TOL[torch.float64])


@requires_ext
def test_mixgcf_gradcheck_with_only_one_differentiable_stack():
    """gradcheck (float64) with only pos_layers, then only item_layers requiring grad: the backward returns the
    gradient of the one that asks for it."""
    query, pos, items, candidates, alpha = mixgcf_inputs(4, 5, 3, 4, 6, torch.float64, True, seed=11)
    assert torch.autograd.gradcheck(lambda p: mixgcf_mix(query, p, items, candidates, alpha)[0],
                                    (pos.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(lambda i: mixgcf_mix(query, pos, i, candidates, alpha)[0],
                                    (items.clone().requires_grad_(),))


# ----------------------------------------------------------------------------------------------------- _ext.py

_ROUTED = "qa42g_routed"  # a library with the ops' schemas: spmm with a CPU kernel, candidate_scores without one
_SCHEMAS_ONLY = "qa42g_schemas_only"  # the same schemas, no kernel at all
_routed_calls = []


def _spmm_by_index_add(rowptr, col, val, x):
    _routed_calls.append("spmm")
    rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr.diff())
    return torch.zeros_like(x).index_add_(0, rows, val.to(x.dtype)[:, None] * x[col.long()])


_libraries = []
for _namespace in (_ROUTED, _SCHEMAS_ONLY):
    _lib = torch.library.Library(_namespace, "DEF")
    _lib.define("spmm(Tensor rowptr, Tensor col, Tensor val, Tensor x) -> Tensor")
    _lib.define("candidate_scores(Tensor user, Tensor items, Tensor candidates) -> Tensor")
    _libraries.append(_lib)
_libraries[0].impl("spmm", _spmm_by_index_add, "CPU")


@pytest.fixture
def fresh_ext(monkeypatch):
    """``_ext``'s warnings and kernel lookups as in a new process, kernels enabled."""
    monkeypatch.setattr(_ext, "_warned", set())
    monkeypatch.setattr(_ext, "_kernel_cache", {})
    monkeypatch.setattr(_ext, "_enabled", True)
    return _ext


def test_routing_to_another_library_reports_and_runs_its_kernels(fresh_ext):
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(g.num_nodes, 3, dtype=torch.float64)
    _routed_calls.clear()
    with _ext.library(_ROUTED):
        assert _ext.has_kernels("cpu")
        assert _ext.kernels_in_use("cpu") == f"kernels of torch.ops.{_ROUTED}"
        assert _ext.ops.spmm is getattr(torch.ops, _ROUTED).spmm
        out = spmm(g, x)
    assert _routed_calls == ["spmm"]
    torch.testing.assert_close(out, spmm_reference(g, x), **TOL[torch.float64])
    assert _ext.ops.spmm is torch.ops.recbole_hnlm.spmm


def test_a_routed_library_without_kernels_falls_back_per_library_and_op(fresh_ext):
    """Kernel lookups are remembered per (library, op, device): an op with a kernel in recbole_hnlm but none in the
    routed library falls back there (with a warning naming that library), and the library without any CPU
    kernel is reported as running the references."""
    with _ext.library(_SCHEMAS_ONLY):
        assert not _ext.has_kernels("cpu")
        assert _ext.kernels_in_use("cpu") == f"PyTorch references on cpu (torch.ops.{_SCHEMAS_ONLY} has no cpu kernels)"
    if WITH_EXT:
        assert _ext.use_kernel("candidate_scores", torch.device("cpu"))  # recbole_hnlm: remembered as present
    with _ext.library(_ROUTED):
        with pytest.warns(RuntimeWarning, match=f"{_ROUTED} has no cpu kernels \\(op candidate_scores\\)"):
            assert not _ext.use_kernel("candidate_scores", torch.device("cpu"))
        assert _ext.use_kernel("spmm", torch.device("cpu"))


def test_the_fallback_warning_points_at_the_line_that_called_the_op(fresh_ext):
    """The warning named the wrapper's line inside recbole_hnlm/ops, not the caller's."""
    g = GRAPHS["isolated_hub"]()
    with _ext.library(_SCHEMAS_ONLY), pytest.warns(RuntimeWarning, match="has no cpu kernels") as caught:
        spmm(g, torch.randn(g.num_nodes, 3, dtype=torch.float64))
    assert [os.path.basename(w.filename) for w in caught] == [os.path.basename(__file__)]


def test_a_routed_library_runs_without_recbole_hnlm_c(fresh_ext, monkeypatch):
    """Without ``recbole_hnlm._C`` the routed library (e.g. the CUDA emulator) still runs its kernels."""
    monkeypatch.setattr(_ext, "WITH_EXT", False)
    with _ext.library(_ROUTED), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.use_kernel("spmm", torch.device("cpu")) and _ext.has_kernels("cpu")
        assert _ext.kernels_in_use("cpu") == f"kernels of torch.ops.{_ROUTED}"
    assert _ext.kernels_in_use("cpu").startswith("PyTorch references (recbole_hnlm._C is not available")


def test_the_switches_restore_the_previous_state_even_on_errors(fresh_ext):
    with pytest.raises(KeyError):
        with _ext.library(_ROUTED):
            raise KeyError("inside")
    assert _ext.ops.spmm is torch.ops.recbole_hnlm.spmm
    with _ext.disabled():
        with _ext.disabled():
            pass
        assert not _ext.is_enabled()  # the outer block is still off
    assert _ext.is_enabled()
    _ext.set_enabled(0)
    assert _ext.is_enabled() is False
    _ext.set_enabled(1)
    assert _ext.is_enabled() is True


@requires_ext
def test_a_device_without_kernels_warns_once_per_device_type(fresh_ext):
    with pytest.warns(RuntimeWarning, match="no meta kernels"):
        assert not _ext.use_kernel("spmm", torch.device("meta"))
    if not _ext.WITH_CUDA_EXT:
        with pytest.warns(RuntimeWarning, match="no cuda kernels"):
            assert not _ext.use_kernel("spmm", torch.device("cuda"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _ext.use_kernel("lightgcn_mean", torch.device("meta"))


def test_cuda_kernels_are_looked_up_under_the_cuda_key():
    assert _ext.WITH_CUDA_EXT == (WITH_EXT and torch._C._dispatch_has_kernel_for_dispatch_key("recbole_hnlm::spmm",
                                                                                              "CUDA"))
    assert _ext._has_kernel("no_such_op", "CPU") is False
    with _ext.library(_ROUTED):
        assert _ext._has_kernel("spmm", "CPU", _ROUTED) and not _ext._has_kernel("spmm", "CUDA", _ROUTED)


def test_kernel_experiments_lists_only_the_variables_set_to_a_value(monkeypatch):
    first, second, third = _ext.KERNEL_EXPERIMENTS
    monkeypatch.setenv(first, "")
    monkeypatch.setenv(second, "2")
    monkeypatch.delenv(third, raising=False)
    assert _ext.kernel_experiments() == {second: "2"}


def test_the_disable_variable_accepts_the_usual_spellings():
    """RECBOLE_HNLM_DISABLE_EXT read at import: "1", "true", "yes", "on" in any case and with spaces disable."""
    code = "\n".join([
        "import importlib, os, sys",
        "import recbole_hnlm.ops._ext as ext",
        "for value in sys.argv[1:]:",
        "    os.environ['RECBOLE_HNLM_DISABLE_EXT'] = value",
        "    print(repr(value), importlib.reload(ext).is_enabled())",
    ])
    values = ["1", " TRUE ", "Yes", "on", "0", "", "false", "off", "2"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, *values], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.splitlines() == [f"{value!r} {value.strip().lower() not in ('1', 'true', 'yes', 'on')}"
                                        for value in values]


def test_bad_input_is_refused_before_the_fallback_warning(fresh_ext):
    """Each op checks its input before it decides on a kernel: on a device without kernels (meta here; a machine
    without the extension alike) bad input is one error and no fallback warning (the warning came first, and was
    then spent: a later good call on that device had none)."""
    g = GRAPHS["tiny"]().to("meta")
    n, d = g.num_nodes, 4
    user, items = torch.randn(3, d, device="meta"), torch.randn(5, d, device="meta")
    layers = torch.randn(3, 2, d, device="meta")
    bad_calls = [
        (ValueError, lambda: spmm(g, torch.randn(n + 1, d, device="meta"))),
        (TypeError, lambda: lightgcn_propagate(g, torch.zeros(n, d, dtype=torch.int64, device="meta"), 2)),
        (ValueError, lambda: lightgcn_propagate(g, torch.randn(n, d, device="meta"), 2, True, torch.float16)),
        (TypeError, lambda: candidate_scores(user, items, torch.zeros(3, 2, dtype=torch.int32, device="meta"))),
        (ValueError, lambda: select_candidates(user, items, torch.zeros(3, 2, dtype=torch.int64, device="meta"),
                                               torch.randn(4, device="meta"))),
        (ValueError, lambda: select_candidates(user, items, torch.zeros(2, 2, dtype=torch.int64, device="meta"))),
        (TypeError, lambda: mixgcf_mix(user, layers, torch.randn(5, 2, d, device="meta"),
                                       torch.zeros(3, 2, device="meta"), torch.rand(3, 2, device="meta"))),
    ]
    for error, call in bad_calls:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(error):
                call()
        assert not [w for w in seen if "kernels" in str(w.message)], (error, [str(w.message) for w in seen])
    with pytest.warns(RuntimeWarning, match="no meta kernels"):  # not spent by the bad calls
        assert not _ext.use_kernel("spmm", torch.device("meta"))
