"""spmm / lightgcn_propagate: kernel vs reference (values, gradients), gradcheck, saved tensors, fallback.

Tolerances: float32 atol=rtol=1e-5, float64 1e-10, bfloat16/float16 2e-2 (float32 accumulation on both sides).
"""
import contextlib
import os
import subprocess
import sys

import pytest
import torch

from recbole_hnlm.ops import CSRGraph, WITH_EXT, bipartite_normalized_graph, drop_edges, lightgcn_propagate, spmm
from recbole_hnlm.ops import _ext
from recbole_hnlm.ops.reference import lightgcn_propagate_reference, spmm_reference

# switched off by RECBOLE_HNLM_DISABLE_EXT, the kernel-vs-reference tests would compare the reference with itself
requires_ext = pytest.mark.skipif(not (WITH_EXT and _ext.is_enabled()),
                                  reason="recbole_hnlm._C is not built, or RECBOLE_HNLM_DISABLE_EXT switches it off")

TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-2, rtol=2e-2),
}


def random_graph(n_users, n_items, n_edges, seed=0, hub=False):
    """Random bipartite graph; the last user and item 0 are isolated; ``hub`` links item 1 to every user."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, max(n_users - 1, 1), (n_edges,), generator=gen)
    items = torch.randint(1, n_items, (n_edges,), generator=gen)
    if hub:
        users = torch.cat([users, torch.arange(n_users - 1)])
        items = torch.cat([items, torch.ones(n_users - 1, dtype=torch.long)])
    return bipartite_normalized_graph(users, items, n_users, n_items)


GRAPHS = {
    "tiny": lambda: random_graph(3, 4, 4, seed=1),
    "isolated_hub": lambda: random_graph(40, 30, 120, seed=2, hub=True),
    # large enough for several nnz-balanced parts, with a hub of degree ~2000
    "balanced_parts": lambda: random_graph(2000, 1500, 30000, seed=3, hub=True),
    "no_edges": lambda: bipartite_normalized_graph(torch.empty(0, dtype=torch.long),
                                                   torch.empty(0, dtype=torch.long), 3, 2),
}


@pytest.fixture(scope="module", params=list(GRAPHS))
def graph(request):
    return GRAPHS[request.param]()


def kernels(on: bool):
    """The enclosed calls run on the compiled kernels (``on``) or on the PyTorch fallback."""
    return contextlib.nullcontext() if on else _ext.disabled()


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype])


@requires_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 7, 64])
def test_spmm_matches_reference(graph, dtype, d):
    x = torch.randn(graph.num_nodes, d, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, ref = spmm(graph, x), spmm_reference(graph, x_ref)
    assert_close(out, ref, dtype)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    ref.backward(upstream)
    assert_close(x.grad, x_ref.grad, dtype)


@requires_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_layers", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("return_layers", [False, True])
def test_lightgcn_propagate_matches_reference(graph, dtype, num_layers, return_layers):
    d = 64 if num_layers % 2 else 5  # both the fixed-width and the generic kernel
    ego = torch.randn(graph.num_nodes, d, dtype=dtype, requires_grad=True)
    ego_ref = ego.detach().clone().requires_grad_()
    out = lightgcn_propagate(graph, ego, num_layers, return_layers)
    ref = lightgcn_propagate_reference(graph, ego_ref, num_layers, return_layers)
    expected_shape = (graph.num_nodes, num_layers + 1, d) if return_layers else (graph.num_nodes, d)
    assert out.shape == expected_shape
    assert_close(out, ref, dtype)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    ref.backward(upstream)
    assert_close(ego.grad, ego_ref.grad, dtype)


@requires_ext
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_accumulates_in_float32(dtype):
    g = GRAPHS["isolated_hub"]()
    ego = torch.randn(g.num_nodes, 64).to(dtype)
    expected = lightgcn_propagate_reference(g, ego.float(), 3)
    assert lightgcn_propagate(g, ego, 3).dtype == dtype
    assert_close(lightgcn_propagate(g, ego, 3).float(), expected, dtype)
    assert_close(lightgcn_propagate(g, ego, 3, True).float(), lightgcn_propagate_reference(g, ego.float(), 3, True),
                 dtype)
    assert_close(spmm(g, ego).float(), spmm_reference(g, ego.float()), dtype)


@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernel", "reference"])
def test_layer_stack_stored_in_bfloat16(use_kernels):
    """float32 ego, bf16 stack: the stack against the float64 chain on the rounded ego, and the float32 gradient of
    ego against the float64 chain's (bf16 tolerance: the stack and the backward sweeps are bf16)."""
    layers_dtype = torch.bfloat16
    if use_kernels and not (WITH_EXT and _ext.is_enabled()):
        pytest.skip("recbole_hnlm._C is not built, or RECBOLE_HNLM_DISABLE_EXT switches it off")
    g = GRAPHS["balanced_parts"]()
    ego = torch.randn(g.num_nodes, 64, requires_grad=True)
    with _ext.library(_ext.LIBRARY) if use_kernels else _ext.disabled():
        stack = lightgcn_propagate(g, ego, 3, return_layers=True, layers_dtype=layers_dtype)
    assert stack.dtype == layers_dtype and stack.shape == (g.num_nodes, 4, 64)
    assert ("LightGCN" in type(stack.grad_fn).__name__) == use_kernels
    expected = lightgcn_propagate_reference(g, ego.detach().to(layers_dtype).double(), 3, return_layers=True)
    assert_close(stack.double(), expected, layers_dtype)
    upstream = torch.randn(stack.shape).to(layers_dtype)
    stack.backward(upstream)
    ego64 = ego.detach().double().requires_grad_()
    lightgcn_propagate_reference(g, ego64, 3, return_layers=True).backward(upstream.double())
    assert ego.grad.dtype == torch.float32
    assert_close(ego.grad.double(), ego64.grad, layers_dtype)


def test_layers_dtype_validation():
    g = GRAPHS["tiny"]()
    ego = torch.randn(g.num_nodes, 4)
    with pytest.raises(ValueError, match="return_layers=True"):
        lightgcn_propagate(g, ego, 2, layers_dtype=torch.bfloat16)
    for refused in (torch.float64, torch.float16):  # float16: LightGCN's gradients underflow its range
        with pytest.raises(ValueError, match="layers_dtype must be"):
            lightgcn_propagate(g, ego, 2, return_layers=True, layers_dtype=refused)
    # ego's own dtype is the default, whatever the mode
    assert lightgcn_propagate(g, ego, 2, layers_dtype=torch.float32).shape == ego.shape


@pytest.mark.parametrize("propagate", [lightgcn_propagate, lightgcn_propagate_reference])
def test_return_layers_must_be_a_boolean(propagate):
    """A string for ``return_layers`` is refused, not read as true (``"no"`` returned the stack)."""
    g = GRAPHS["tiny"]()
    ego = torch.randn(g.num_nodes, 4)
    for refused in ("no", "yes", None, 2):
        with pytest.raises(TypeError, match="return_layers must be True or False"):
            propagate(g, ego, 2, return_layers=refused)
    assert propagate(g, ego, 2, return_layers=1).shape == (g.num_nodes, 3, 4)  # 1 == True, as bool(1)
    assert propagate(g, ego, 2, return_layers=False).shape == ego.shape


@requires_ext
def test_non_contiguous_input():
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(9, g.num_nodes).T  # [N, 9] with strides (1, N)
    assert not x.is_contiguous()
    assert_close(spmm(g, x), spmm_reference(g, x), torch.float32)
    assert_close(lightgcn_propagate(g, x, 2), lightgcn_propagate_reference(g, x, 2), torch.float32)


@requires_ext
@pytest.mark.parametrize("return_layers", [False, True])
def test_gradcheck(return_layers):
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(g.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spmm(g, t), (x,))
    assert torch.autograd.gradcheck(lambda t: lightgcn_propagate(g, t, 3, return_layers), (x,))
    assert torch.autograd.gradcheck(lambda t: lightgcn_propagate(g, t, 0, return_layers), (x,))


def saved_tensors(fn):
    """Tensors packed for backward while running ``fn`` (through saved_tensors_hooks)."""
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, packed


@requires_ext
@pytest.mark.parametrize("return_layers", [False, True])
def test_saves_only_the_graph(return_layers):
    g = GRAPHS["balanced_parts"]()
    d = 32
    ego = torch.randn(g.num_nodes, d, requires_grad=True)
    out, packed = saved_tensors(lambda: lightgcn_propagate(g, ego, 3, return_layers))
    graph_bytes = sum(t.numel() * t.element_size() for t in (g.rowptr, g.col, g.val))
    saved_bytes = sum(t.numel() * t.element_size() for t in packed)
    assert saved_bytes == graph_bytes
    assert all(t.shape[0] != g.num_nodes or t.dim() == 1 for t in packed), [t.shape for t in packed]
    # the hook does see dense tensors when an op saves them (guards against a vacuous pass)
    _, packed_dense = saved_tensors(lambda: (ego * ego).sum())
    assert any(t.shape == (g.num_nodes, d) for t in packed_dense)
    out.sum().backward()
    assert ego.grad.shape == ego.shape


def test_reference_fallback_through_public_api():
    """The fallback (the reference, which the kernels are tested against) against dense powers of A_hat (whose
    construction test_graph checks against a textbook one): LightGCN eq. 4, E = mean_k A_hat^k E0. It was compared
    with lightgcn_propagate_reference, i.e. with itself, and its gradcheck ran only without the extension built."""
    g = GRAPHS["isolated_hub"]()
    ego = torch.randn(g.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    a_hat = g.to_dense().double()
    powers = [ego.detach()]
    for _ in range(2):
        powers.append(a_hat @ powers[-1])
    with _ext.disabled():
        assert not _ext.use_kernel("lightgcn_mean", ego.device)
        out = lightgcn_propagate(g, ego, 2)
        layers = lightgcn_propagate(g, ego, 2, return_layers=True)
        one = spmm(g, ego)
        assert "LightGCN" not in type(out.grad_fn).__name__  # plain autograd chain, not the fused Function
        assert torch.autograd.gradcheck(lambda t: lightgcn_propagate(g, t, 2), (ego,))
        upstream = torch.randn(out.shape, dtype=torch.float64)
        (grad,) = torch.autograd.grad(out, ego, upstream)
    assert_close(out, torch.stack(powers).mean(0), torch.float64)
    assert_close(layers, torch.stack(powers, dim=1), torch.float64)
    assert_close(one, powers[1], torch.float64)
    # the backward is the same operator (A_hat symmetric): mean_k A_hat^k of the upstream gradient
    assert_close(grad, (upstream + a_hat @ upstream + a_hat @ (a_hat @ upstream)) / 3, torch.float64)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(_ext, "WITH_EXT", False)
    monkeypatch.setattr(_ext, "_warned", set())
    monkeypatch.setattr(_ext, "_enabled", True)
    g = GRAPHS["tiny"]()
    x = torch.randn(g.num_nodes, 4)
    with pytest.warns(RuntimeWarning, match="falls back"):
        out = spmm(g, x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spmm(g, x)  # second call: no warning
        lightgcn_propagate(g, x, 2)
    assert_close(out, spmm_reference(g, x), torch.float32)


@requires_ext
def test_device_without_kernel_is_reported(monkeypatch):
    monkeypatch.setattr(_ext, "_warned", set())
    with pytest.warns(RuntimeWarning, match="no meta kernels"):
        assert not _ext.use_kernel("spmm", torch.device("meta"))
    assert _ext.use_kernel("spmm", torch.device("cpu"))


def test_env_var_disables_extension():
    code = "from recbole_hnlm.ops import _ext; print(_ext.is_enabled())"
    env = dict(os.environ, RECBOLE_HNLM_DISABLE_EXT="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_input_validation():
    g = GRAPHS["tiny"]()
    with pytest.raises(ValueError, match="ego must have shape"):
        lightgcn_propagate(g, torch.randn(g.num_nodes + 1, 4), 2)
    with pytest.raises(ValueError, match="num_layers"):
        lightgcn_propagate(g, torch.randn(g.num_nodes, 4), -1)
    with pytest.raises(TypeError, match="floating"):
        spmm(g, torch.ones(g.num_nodes, 4, dtype=torch.long))


@requires_ext
def test_kernel_errors_name_the_argument():
    g = GRAPHS["tiny"]()
    x = torch.randn(g.num_nodes, 4)
    with pytest.raises(RuntimeError, match="rowptr and col must have the same dtype"):
        torch.ops.recbole_hnlm.spmm(g.rowptr.long(), g.col, g.val, x)
    with pytest.raises(RuntimeError, match=r"x.size\(0\) must be"):
        torch.ops.recbole_hnlm.spmm(g.rowptr, g.col, g.val, x[:-1])
    broken = g.col.clone()
    broken[0] = 1000
    with pytest.raises(ValueError, match="out of range"):  # the graph's contents: the fallback's ValueError
        torch.ops.recbole_hnlm.spmm(g.rowptr, broken, g.val, x)
    with pytest.raises(RuntimeError, match="grad_layers must be 3-D"):
        torch.ops.recbole_hnlm.lightgcn_layers_backward(g.rowptr, g.col, g.val, x)
    decreasing = g.rowptr.clone()
    decreasing[1] = g.rowptr[-1]  # same ends, but row 0 would own every edge and row 1 a negative range
    assert decreasing[1] > decreasing[2]
    with pytest.raises(ValueError, match="non-decreasing"):
        torch.ops.recbole_hnlm.spmm(decreasing, g.col, g.val, x)


def test_custom_csr_graph_int64():
    g = GRAPHS["isolated_hub"]()
    g64 = CSRGraph(g.rowptr.long(), g.col.long(), g.val, g.num_nodes)
    x = torch.randn(g.num_nodes, 6, dtype=torch.float64)
    assert_close(lightgcn_propagate(g64, x, 3), lightgcn_propagate_reference(g, x, 3), torch.float64)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
@pytest.mark.parametrize("op", ["spmm", "mean", "layers"])
def test_second_derivatives(kernel, op):
    """``create_graph=True`` through the ops: gradgradcheck, and a gradient penalty's gradient equal to the
    reference's (the backward nodes were once_differentiable: ``torch.autograd.grad`` then found the input
    unused)."""
    g = GRAPHS["isolated_hub"]()
    run = {
        "spmm": lambda graph, x: spmm(graph, x),
        "mean": lambda graph, x: lightgcn_propagate(graph, x, 3),
        "layers": lambda graph, x: lightgcn_propagate(graph, x, 3, return_layers=True),
    }[op]
    reference = {
        "spmm": spmm_reference,
        "mean": lambda graph, x: lightgcn_propagate_reference(graph, x, 3),
        "layers": lambda graph, x: lightgcn_propagate_reference(graph, x, 3, True),
    }[op]
    x = torch.randn(g.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    with kernels(kernel):
        assert torch.autograd.gradgradcheck(lambda t: run(g, t), (x,))

        def penalty_gradient(fn):
            out = fn(g, x)
            weight = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
            grad_x, = torch.autograd.grad((weight * out.square()).sum(), x, create_graph=True)
            return torch.autograd.grad(grad_x.square().sum(), x)[0]

        ours = penalty_gradient(run)
    expected = penalty_gradient(reference)
    assert expected.abs().max() > 1e-3
    assert_close(ours, expected, torch.float64)


@requires_ext
def test_rowptr_past_nnz_is_refused_before_any_read():
    """A row ending beyond nnz (the ends rowptr[0] = 0 and rowptr[-1] = nnz still hold) would read past ``col`` and
    ``val``; the kernel refuses it at that row, before reading it."""
    g = GRAPHS["tiny"]()
    rowptr = g.rowptr.clone()
    rowptr[1] = g.nnz + 3
    x = torch.randn(g.num_nodes, 4)
    with pytest.raises(ValueError, match=r"rowptr must be non-decreasing from 0 to nnz = \d+, violated at row 0"):
        torch.ops.recbole_hnlm.spmm(rowptr, g.col, g.val, x)
    with pytest.raises(ValueError, match="rowptr must be non-decreasing"):
        lightgcn_propagate(CSRGraph(rowptr, g.col, g.val, g.num_nodes), x, 2, return_layers=True)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
@pytest.mark.parametrize("corrupt", ["rowptr_past_nnz", "col_too_large", "col_negative"])
def test_a_broken_graph_is_a_value_error_on_both_paths(kernel, corrupt):
    """torch's sparse ops do not check a CSR built with check_invariants=False: the fallback validates the graph
    (it returned garbage, or segfaulted, on these); the kernels check while reading it and raise the same
    exception type (they raised RuntimeError, so ``except ValueError`` code failed once the extension was built)."""
    g = GRAPHS["tiny"]()
    rowptr, col = g.rowptr.clone(), g.col.clone()
    if corrupt == "rowptr_past_nnz":
        rowptr[1] = g.nnz + 3
    else:
        col[0] = 1_000_000 if corrupt == "col_too_large" else -5
    broken = CSRGraph(rowptr, col, g.val, g.num_nodes)
    x = torch.randn(g.num_nodes, 4)
    with kernels(kernel):
        with pytest.raises(ValueError, match="rowptr" if corrupt.startswith("rowptr") else "col"):
            spmm(broken, x)
        with pytest.raises(ValueError, match="rowptr" if corrupt.startswith("rowptr") else "col"):
            lightgcn_propagate(broken, x, 2)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_bad_arguments_are_named(kernel):
    g = GRAPHS["tiny"]()
    x = torch.randn(g.num_nodes, 4)
    with kernels(kernel):
        with pytest.raises(TypeError, match="num_layers must be an integer, got 2.7"):
            lightgcn_propagate(g, x, 2.7)
        with pytest.raises(TypeError, match="x must be a dense"):
            spmm(g, x.to_sparse())
        with pytest.raises(TypeError, match="ego must be a dense"):
            lightgcn_propagate(g, x.to_sparse(), 2)


def test_fallback_validates_a_graph_once_until_its_indices_change():
    g = GRAPHS["tiny"]()
    x = torch.randn(g.num_nodes, 4)
    with _ext.disabled():
        spmm(g, x)
        calls = []
        original = CSRGraph.validate
        try:
            CSRGraph.validate = lambda self: calls.append(1) or original(self)
            spmm(g, x)
            lightgcn_propagate(g, x, 2)
            assert calls == []  # already validated, indices unchanged
            g.col[0] = g.num_nodes + 5  # an in-place change bumps the tensor's version: validated again
            with pytest.raises(ValueError, match="col must lie"):
                spmm(g, x)
            assert calls == [1]
        finally:
            CSRGraph.validate = original


def test_fallback_validates_a_replaced_val_again():
    """The validation was remembered by rowptr and col alone: a shorter ``val`` set afterwards made torch's sparse
    ops read past its end (NaN or garbage)."""
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(g.num_nodes, 4)
    with _ext.disabled():
        spmm(g, x)
        g.val = torch.ones(1)
        with pytest.raises(ValueError, match="col and val must be 1-D of equal length"):
            spmm(g, x)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
@pytest.mark.parametrize("val_dtype", [torch.float64, torch.bfloat16, torch.int64])
def test_graph_values_of_another_dtype_are_refused_on_both_paths(kernel, val_dtype):
    """The kernels take ``val`` in float32 or the features' dtype; the fallback cast any other silently."""
    g = GRAPHS["tiny"]()
    other = CSRGraph(g.rowptr, g.col, g.val.to(val_dtype), g.num_nodes)
    with kernels(kernel), pytest.raises(TypeError, match="graph.val must be float32 or x's dtype torch.float32"):
        spmm(other, torch.randn(g.num_nodes, 4))


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_no_gradient_flows_to_the_graph_values_on_either_path(kernel):
    """The values are constants: the kernels give ``val`` no gradient; the fallback filled ``val.grad``."""
    g = GRAPHS["tiny"]()
    val = g.val.clone().requires_grad_()
    x = torch.randn(g.num_nodes, 4, requires_grad=True)
    with kernels(kernel):
        (spmm(CSRGraph(g.rowptr, g.col, val, g.num_nodes), x).sum()
         + lightgcn_propagate(CSRGraph(g.rowptr, g.col, val, g.num_nodes), x, 2).sum()).backward()
    assert val.grad is None and x.grad is not None


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_strided_graph_tensors_give_the_same_products(kernel):
    """A ``CSRGraph`` of strided views (columns of an edge table) passed ``validate``, and the fallback built its
    sparse tensor without checks, reading the storage as if contiguous: wrong products (or a segmentation fault).
    Here every second storage entry is a copy, so the misread indices stay in range and the numbers were wrong."""
    g = GRAPHS["isolated_hub"]()

    def strided(t):
        return torch.stack([t, t], 1)[:, 0]  # the same values, stride 2

    views = CSRGraph(strided(g.rowptr), strided(g.col), strided(g.val), g.num_nodes)
    assert not views.rowptr.is_contiguous() and not views.col.is_contiguous()
    x = torch.randn(g.num_nodes, 8, dtype=torch.float64)
    with kernels(kernel):
        assert_close(spmm(views, x), spmm_reference(g, x), torch.float64)
        assert_close(lightgcn_propagate(views, x, 3), lightgcn_propagate_reference(g, x, 3), torch.float64)
        assert_close(lightgcn_propagate(views, x, 2, return_layers=True),
                     lightgcn_propagate_reference(g, x, 2, return_layers=True), torch.float64)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_float64_graph_values_with_a_bfloat16_stack(kernel):
    """float64 ``val`` and ego (accepted: the ego's dtype) with ``layers_dtype=torch.bfloat16``: the kernel path
    refused it (its stack's dtype is bfloat16) with a message naming the C++ argument, the fallback ran it. Both
    give the float64 chain on the rounded ego, at bfloat16's tolerance, and the gradient in float64."""
    g = GRAPHS["isolated_hub"]()
    g64 = CSRGraph(g.rowptr, g.col, g.val.double(), g.num_nodes)
    ego = torch.randn(g.num_nodes, 16, dtype=torch.float64, requires_grad=True)
    with kernels(kernel):
        stack = lightgcn_propagate(g64, ego, 2, return_layers=True, layers_dtype=torch.bfloat16)
    assert stack.dtype == torch.bfloat16
    expected = lightgcn_propagate_reference(g64, ego.detach().to(torch.bfloat16).double(), 2, return_layers=True)
    assert_close(stack.double(), expected, torch.bfloat16)
    stack.float().sum().backward()
    assert ego.grad.dtype == torch.float64 and ego.grad.abs().max() > 0


@pytest.mark.parametrize("case, message", [
    ("num_nodes", r"rowptr must have num_nodes \+ 1 = 9 entries"),
    ("int16", "rowptr and col must share an int32/int64 dtype"),
    ("mixed", "rowptr and col must share an int32/int64 dtype"),
    ("short_val", "col and val must be 1-D of equal length"),
])
def test_a_malformed_graph_is_the_same_value_error_on_both_paths(case, message):
    """Wrong shapes or index dtypes were a ValueError naming the graph on the fallback, a RuntimeError on the kernel
    path, one of which blamed the features (``x.size(0) must be 5``, for lightgcn_propagate's ``ego``)."""
    g = GRAPHS["tiny"]()  # 7 nodes
    rowptr, col, val, n = g.rowptr, g.col, g.val, g.num_nodes
    if case == "num_nodes":
        n += 1
    elif case == "int16":
        rowptr, col = rowptr.to(torch.int16), col.to(torch.int16)
    elif case == "mixed":
        col = col.long() if col.dtype == torch.int32 else col.int()
    else:
        val = val[:-1]
    broken = CSRGraph(rowptr, col, val, n)
    x = torch.randn(n, 4)
    for on in ([True, False] if WITH_EXT and _ext.is_enabled() else [False]):
        with kernels(on):
            with pytest.raises(ValueError, match=message):
                spmm(broken, x)
            with pytest.raises(ValueError, match=message):
                lightgcn_propagate(broken, x, 2, return_layers=True)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_graph_values_that_require_grad_leave_the_output_without_one(kernel):
    """The values are constants on both paths: an output of x without grad needs none (the kernels' did)."""
    g = GRAPHS["tiny"]()
    graph = CSRGraph(g.rowptr, g.col, g.val.clone().requires_grad_(), g.num_nodes)
    x = torch.randn(g.num_nodes, 4)
    with kernels(kernel):
        outputs = [spmm(graph, x), lightgcn_propagate(graph, x, 2),
                   lightgcn_propagate(graph, x, 2, return_layers=True)]
    assert not any(out.requires_grad for out in outputs)



@pytest.mark.parametrize("change", ["rowptr_in_place", "rowptr_replaced", "val_prefix_view", "num_nodes"])
def test_fallback_validates_again_after_any_structural_change(change):
    """The fallback remembers a validated graph: each of these changes must make it check again (a rowptr changed
    in place and not checked again segfaulted)."""
    g = bipartite_normalized_graph(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3, 3)
    x = torch.randn(g.num_nodes, 4)
    with _ext.disabled():
        spmm(g, x)
        if change == "rowptr_in_place":
            g.rowptr[-1] = g.nnz + 4
        elif change == "rowptr_replaced":
            g.rowptr = torch.cat([g.rowptr[:-1], g.rowptr.new_tensor([g.nnz + 4])])  # a new tensor, version 0
        elif change == "val_prefix_view":
            g.val = g.val[:1]  # the same data pointer, shorter
        else:
            g.num_nodes += 1
            x = torch.randn(g.num_nodes, 4)
        with pytest.raises(ValueError, match="rowptr|col and val"):
            spmm(g, x)


def test_a_graph_without_edges_validates_and_propagates_zeros():
    g = GRAPHS["no_edges"]()
    g.validate()
    with _ext.disabled():
        assert torch.equal(spmm(g, torch.ones(5, 2)), torch.zeros(5, 2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fallback_returns_16_bit_inputs_in_their_dtype(dtype):
    """As the kernels do; the fallback accumulates in float32 and casts back."""
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(g.num_nodes, 4).to(dtype)
    with _ext.disabled():
        assert spmm(g, x).dtype == dtype and lightgcn_propagate(g, x, 2).dtype == dtype
    assert_close(spmm_reference(g, x).float(), spmm_reference(g, x.float()), dtype)


@requires_ext
def test_the_layer_kernel_takes_float64_values_in_float32_for_a_bfloat16_stack_only():
    """A float64 ``val`` reaches the layer kernel in float32 under a bfloat16 stack (what the kernel takes: the same
    bits as a float32 graph), and as it is under a float64 stack (float64 precision kept)."""
    g = GRAPHS["isolated_hub"]()
    g64 = CSRGraph(g.rowptr, g.col, g.val.double() / 3, g.num_nodes)  # values float32 cannot hold exactly
    g32 = CSRGraph(g.rowptr, g.col, g64.val.float(), g.num_nodes)
    ego = torch.randn(g.num_nodes, 16, dtype=torch.float64)
    stack = lightgcn_propagate(g64, ego, 2, return_layers=True, layers_dtype=torch.bfloat16)
    assert torch.equal(stack, lightgcn_propagate(g32, ego, 2, return_layers=True, layers_dtype=torch.bfloat16))
    assert_close(lightgcn_propagate(g64, ego, 2, return_layers=True),
                 lightgcn_propagate_reference(g64, ego, 2, return_layers=True), torch.float64)


def row_normalized(graph):
    """``D^-1 A`` of ``graph``'s pattern: a propagation matrix researchers try, and not symmetric."""
    degree = graph.rowptr.diff().double().clamp(min=1)
    return CSRGraph(graph.rowptr, graph.col, (1.0 / degree).repeat_interleave(graph.rowptr.diff().long()).float(),
                    graph.num_nodes)


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_an_asymmetric_graph_is_refused_before_a_gradient_flows_through_it(kernel):
    """The backward takes the graph as its own transpose: with ``D^-1 A`` the kernels gave ``A_hat G`` where
    ``A_hat^T G`` is due (silently wrong gradients). Forward-only products stay allowed and exact; the builders'
    graphs and their edge-dropped copies are symmetric by construction and not checked again."""
    g = GRAPHS["isolated_hub"]()
    walk = row_normalized(g)
    x = torch.randn(g.num_nodes, 4, dtype=torch.float64)
    dense = walk.to_dense().double()
    with kernels(kernel):
        torch.testing.assert_close(spmm(walk, x), dense @ x)  # no gradient wanted: any square matrix
        with torch.no_grad():
            spmm(walk, x.requires_grad_())
        for op in (lambda graph: spmm(graph, x), lambda graph: lightgcn_propagate(graph, x, 2),
                   lambda graph: lightgcn_propagate(graph, x, 2, return_layers=True)):
            with pytest.raises(ValueError, match=r"the graph is not symmetric: entry \(\d+, \d+\) is [\d.]+ but "
                                                 r"\(\d+, \d+\) is [\d.]+\. The ops' backward"):
                op(walk)
            op(g).sum().backward()  # built symmetric
        assert g.symmetric and drop_edges(g, 0.3).symmetric and g.to("cpu").symmetric
        symmetric_copy = CSRGraph(g.rowptr, g.col, g.val.clone(), g.num_nodes)  # checked once, then passes
        spmm(symmetric_copy, x).sum().backward()
        symmetric_copy.val[0] *= 2  # changed in place: checked again
        with pytest.raises(ValueError, match="not symmetric"):
            spmm(symmetric_copy, x)


def test_validate_symmetric_names_a_missing_mirror_and_adds_duplicates():
    """An entry without its mirror is named as absent; duplicates add up before the comparison (the ops add them),
    and values may differ by rounding (rtol 1e-5)."""
    one_way = CSRGraph(torch.tensor([0, 1, 1, 1]), torch.tensor([2]), torch.tensor([0.5]), 3)
    with pytest.raises(ValueError, match=r"entry \(0, 2\) is 0.5 but \(2, 0\) is absent"):
        one_way.validate().validate_symmetric()
    split = CSRGraph(torch.tensor([0, 2, 3]), torch.tensor([1, 1, 0]), torch.tensor([0.25, 0.25, 0.5]), 2)
    assert split.validate().validate_symmetric() is split  # 0.25 + 0.25 = 0.5
    rounded = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([0.3, 0.3 * (1 + 1e-7)]), 2)
    assert rounded.validate_symmetric() is rounded
    off = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([0.3, 0.3 * (1 + 1e-3)]), 2)
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is 0.3 but \(1, 0\) is 0.3003"):
        off.validate_symmetric()


def test_validate_symmetric_judges_tiny_values_relatively_and_names_an_entry_past_every_mirror():
    """No absolute tolerance hides an asymmetry among small values (D^-1 A of high-degree nodes); an entry whose
    mirror key would sort past every stored mirror is named as absent (not an IndexError)."""
    tiny = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([1e-9, 3e-9]), 2)
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is 1e-09 but \(1, 0\) is 3e-09"):
        tiny.validate().validate_symmetric()
    last = CSRGraph(torch.tensor([0, 0, 0, 1]), torch.tensor([0]), torch.tensor([0.5]), 3)  # (2, 0) alone
    with pytest.raises(ValueError, match=r"entry \(2, 0\) is 0.5 but \(0, 2\) is absent"):
        last.validate().validate_symmetric()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_16_bit_graph_symmetric_up_to_its_rounding_passes_the_symmetry_check(dtype):
    """Mirror values one float32 rounding apart can round to adjacent 16-bit values (one ulp: 1e-3 relative in float16,
    8e-3 in bfloat16), which rtol = 1e-5 refused; a gap of several ulps is still refused."""
    ulp = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}[dtype]
    a = 1 + ulp / 2  # halfway between two 16-bit values: rounds to even (down)
    g32 = CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([a, a * (1 + 1e-7)]), 2)
    g32.validate_symmetric()
    CSRGraph(g32.rowptr, g32.col, g32.val.to(dtype), 2).validate_symmetric()  # 1 and 1 + ulp
    apart = CSRGraph(g32.rowptr, g32.col, torch.tensor([1.0, 1.0 + 4 * ulp], dtype=dtype), 2)
    with pytest.raises(ValueError, match="not symmetric"):
        apart.validate_symmetric()


def test_stored_zeros_are_no_entries_and_nan_is_named():
    """A stored zero without its mirror (or duplicates that cancel) is still a symmetric matrix; NaN values were
    reported as "entry is nan but its mirror is nan"."""
    CSRGraph(torch.tensor([0, 1, 1]), torch.tensor([1]), torch.tensor([0.0]), 2).validate_symmetric()
    CSRGraph(torch.tensor([0, 2, 2]), torch.tensor([1, 1]), torch.tensor([1.0, -1.0]), 2).validate_symmetric()
    with pytest.raises(ValueError, match="graph.val holds NaN"):
        CSRGraph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.full((2,), float("nan")), 2).validate_symmetric()


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False], ids=["kernel", "fallback"])
def test_the_symmetry_check_runs_once_per_graph_and_never_for_built_ones(kernel, monkeypatch):
    """The builders' graphs, their edge-dropped copies and their copies on another device are never sorted for the
    check (a LightGCN/NGCF step must not pay for it); another graph is checked once, and again when its ``val`` is
    replaced by another tensor."""
    calls = []
    check = CSRGraph.validate_symmetric

    def counted(self, *args, **kwargs):
        calls.append(self)
        return check(self, *args, **kwargs)

    monkeypatch.setattr(CSRGraph, "validate_symmetric", counted)
    g = GRAPHS["isolated_hub"]()
    x = torch.randn(g.num_nodes, 4, requires_grad=True)
    assert g.to("meta").symmetric and drop_edges(g, 0.3).to("meta").symmetric
    assert not CSRGraph(g.rowptr, g.col, g.val, g.num_nodes).to("meta").symmetric
    with kernels(kernel):
        for _ in range(3):
            spmm(g, x).sum().backward()
            lightgcn_propagate(drop_edges(g, 0.3), x, 2).sum().backward()
        assert calls == []
        copy = CSRGraph(g.rowptr, g.col, g.val.clone(), g.num_nodes)
        for _ in range(3):
            spmm(copy, x).sum().backward()
            lightgcn_propagate(copy, x, 2, return_layers=True).sum().backward()
        assert len(calls) == 1 and calls[0] is copy
        copy.val = row_normalized(g).val  # another tensor, same structure and version: checked again
        with pytest.raises(ValueError, match="not symmetric"):
            spmm(copy, x)
