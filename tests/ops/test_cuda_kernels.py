"""CUDA kernels against the PyTorch references, on two backends of the same sources in csrc/cuda:

* ``cuda``: the real extension on a GPU (skipped without a CUDA build and a GPU; run on the device machine);
* ``emulated``: the .cu files compiled for the host warp emulator (csrc/cuda/emulation, built by
  ``cuda_emulation.py``) on CPU tensors. It runs the kernels and their launchers as written, one warp at a time with
  lockstep shuffles, so it checks their logic (edge ranges, cut rows, argmax, scatter, vector-load alignment, device
  assertions) in CI; it says nothing about speed, memory ordering between warps or the GPU toolchain.

Every case draws fresh random inputs and compares values and gradients with ``recbole_hnlm.ops.reference`` run on
the same device. Tolerances (relative and absolute, ``TOL``, one per dtype for every op): float64 1e-10, float32
1e-4 (set by K=3 layers of atomics, whose summation order is not fixed), bfloat16 / float16 3e-2 (float32
accumulation on both sides). Outputs are
"poisoned": freed NaN-filled blocks of the same size are handed out again (the CUDA caching allocator does so every
time, glibc's malloc often), so a kernel that leaves any output element unwritten fails. Argmax/argmin positions are
compared exactly in float64 (random inputs) and in float32 on dyadic inputs (multiples of 1/4, alpha a multiple of
1/16): every score is then exact in any summation order, so the kernel and the reference must pick the same
candidate, ties included; random float32 inputs could split near-ties (~1e-6 relative) between the two orders.

The emulated backend runs the warps of every launch in a shuffled order (``cuda_emulation.warp_schedule``), one a GPU
may also choose, so no test depends on grid order. The ops that add with atomics (SpMM cut rows, MixGCF's backward
scatter) are also tested under ``torch.use_deterministic_algorithms(True)``, where they sum in a fixed order: the same
bits under every warp schedule (emulated) or run (GPU).
"""
import contextlib

import pytest
import torch

import cuda_emulation  # tests/ops is on sys.path (rootdir-relative, no __init__.py)
from recbole_hnlm.ops import WITH_CUDA_EXT, candidate_scores, lightgcn_propagate
from recbole_hnlm.ops import CSRGraph, mixgcf_mix, select_candidates, spmm
from test_propagation import random_graph
from recbole_hnlm.determinism import deterministic_algorithms
from recbole_hnlm.ops import _ext
from recbole_hnlm.ops.reference import (
    candidate_scores_reference,
    lightgcn_propagate_reference,
    mixgcf_mix_official,
    mixgcf_mix_reference,
    select_candidates_reference,
    spmm_reference,
)

TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
    torch.float16: dict(atol=3e-2, rtol=3e-2),
}
OPS = ("spmm", "lightgcn_mean", "lightgcn_layers", "lightgcn_layers_backward", "mixgcf_mix", "mixgcf_mix_backward",
       "candidate_scores", "select_candidates")
BACKENDS = [
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not (torch.cuda.is_available() and WITH_CUDA_EXT), reason="needs a GPU and recbole_hnlm._C built with CUDA")]),
    pytest.param("emulated", marks=[pytest.mark.emulation, pytest.mark.skipif(
        not cuda_emulation.SUPPORTED, reason=cuda_emulation.UNSUPPORTED_REASON)]),
]


@pytest.fixture(params=BACKENDS)
def dev(request):
    """The device of the backend under test, with the public ops routed to its kernels (never to a reference)."""
    if request.param == "cuda":
        device, routing, schedule = "cuda", _ext.library(_ext.LIBRARY), contextlib.nullcontext()
    else:
        device, routing, schedule = "cpu", _ext.library(cuda_emulation.build()), cuda_emulation.warp_schedule(2020)
    with routing, schedule:
        missing = [op for op in OPS if not _ext.use_kernel(op, torch.device(device))]
        assert not missing, f"{request.param}: no kernels for {missing}; the tests would compare a reference to itself"
        yield device


@pytest.fixture(params=[False, True], ids=["atomic", "deterministic"])
def deterministic(request):
    """The atomic paths, or the fixed-order ones under the run option's torch.use_deterministic_algorithms."""
    assert not torch.are_deterministic_algorithms_enabled(), "deterministic mode was left on"
    with deterministic_algorithms(request.param):
        yield request.param


def poison(dev, *shapes, dtype=torch.float32):
    """Fill and free blocks so the next allocations of these sizes start as NaN (allocator reuse)."""
    blocks = [torch.full(s, float("nan"), dtype=dtype, device=dev) for s in shapes]
    del blocks


def cuda_graph(name, dev):
    builders = {
        "tiny": lambda: random_graph(3, 4, 4, seed=1),
        "isolated_hub": lambda: random_graph(40, 30, 120, seed=2, hub=True),
        # hub of degree ~5000 spans ~80 warps' edge ranges: exercises the boundary atomics
        "hub5000": lambda: random_graph(5001, 800, 20000, seed=3, hub=True),
        "no_edges": lambda: random_graph(3, 2, 0, seed=4),
    }
    return builders[name]().to(dev)


@pytest.mark.parametrize("name", ["tiny", "isolated_hub", "hub5000", "no_edges"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [1, 7, 64, 128, 200])
def test_spmm_matches_reference(dev, deterministic, name, dtype, d):
    graph = cuda_graph(name, dev)
    x = torch.randn(graph.num_nodes, d, device=dev, dtype=dtype)
    poison(dev, (graph.num_nodes, d), dtype=dtype)
    torch.testing.assert_close(spmm(graph, x), spmm_reference(graph, x.double()).to(dtype), **TOL[dtype])


@pytest.mark.parametrize("groups", ["2", "4"])
@pytest.mark.parametrize("name", ["tiny", "isolated_hub", "hub5000"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [7, 64, 200])  # 200: several passes, the last one partly active
def test_spmm_groups_experiment_matches_reference(dev, deterministic, monkeypatch, groups, name, dtype, d):
    """RECBOLE_HNLM_SPMM_GROUPS (2 or 4 rows gathered per load instruction, a benchmark experiment): the same sums,
    gradients through the layer ops too, and in deterministic mode the same bits every run."""
    monkeypatch.setenv("RECBOLE_HNLM_SPMM_GROUPS", groups)
    graph = cuda_graph(name, dev)
    x = torch.randn(graph.num_nodes, d, device=dev, dtype=dtype)
    poison(dev, (graph.num_nodes, d), dtype=dtype)
    out = spmm(graph, x)
    torch.testing.assert_close(out, spmm_reference(graph, x.double()).to(dtype), **TOL[dtype])
    if deterministic:
        assert torch.equal(spmm(graph, x), out)
    if name == "hub5000" and dtype == torch.float32:  # the setting is read: the groups sum in another order
        with monkeypatch.context() as one_group:
            one_group.setenv("RECBOLE_HNLM_SPMM_GROUPS", "1")
            assert not torch.equal(spmm(graph, x), out)
    ego = x.float().requires_grad_()
    layers = lightgcn_propagate(graph, ego, 2, True)
    ref = lightgcn_propagate_reference(graph, ego.detach().double(), 2, True)
    torch.testing.assert_close(layers.double(), ref, **TOL[torch.float32])
    upstream = torch.randn_like(layers)
    (grad,) = torch.autograd.grad(layers, ego, upstream)
    ego_ref = ego.detach().double().requires_grad_()
    (grad_ref,) = torch.autograd.grad(lightgcn_propagate_reference(graph, ego_ref, 2, True), ego_ref, upstream.double())
    torch.testing.assert_close(grad.double(), grad_ref, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spmm_groups_setting_is_checked(dev, monkeypatch, dtype):
    monkeypatch.setenv("RECBOLE_HNLM_SPMM_GROUPS", "3")
    graph = cuda_graph("tiny", dev)
    with pytest.raises(RuntimeError, match="RECBOLE_HNLM_SPMM_GROUPS must be 1, 2 or 4, got '3'"):
        spmm(graph, torch.randn(graph.num_nodes, 8, device=dev, dtype=dtype))


@pytest.mark.parametrize("groups", ["1", "2", "4"])
@pytest.mark.parametrize("name", ["tiny", "isolated_hub", "hub5000", "no_edges"])
@pytest.mark.parametrize("index", [torch.int32, torch.int64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d", [1, 7, 64, 200])
def test_spmm_short_chains_give_the_same_bits(dev, monkeypatch, groups, name, index, dtype, d):
    """RECBOLE_HNLM_SPMM_SHORT_CHAINS=1 (a benchmark experiment: each warp's first row from a searchsorted table
    instead of a binary search, a row's last edges gathered together) adds the same terms in the same order: the
    same bits as without it, for one layer and for the layer stack with its gradient (deterministic mode, where the
    order of cut rows is fixed too). A wrong first row or a tail edge added twice, or not at all, changes them."""
    monkeypatch.setenv("RECBOLE_HNLM_SPMM_GROUPS", groups)
    graph = cuda_graph(name, dev)
    graph = CSRGraph(graph.rowptr.to(index), graph.col.to(index), graph.val, graph.num_nodes)
    x = torch.randn(graph.num_nodes, d, device=dev, dtype=dtype)
    upstream = torch.randn(graph.num_nodes, 3, d, device=dev, dtype=dtype)

    def outputs():
        ego = x.clone().requires_grad_()
        layers = lightgcn_propagate(graph, ego, 2, True)
        return spmm(graph, x), layers, torch.autograd.grad(layers, ego, upstream)[0]

    with deterministic_algorithms(True):
        monkeypatch.setenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS", "0")
        expected = outputs()
        monkeypatch.setenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS", "1")
        poison(dev, (graph.num_nodes, d), (graph.num_nodes, 3, d), dtype=dtype)
        got = outputs()
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    torch.testing.assert_close(got[0], spmm_reference(graph, x.double()).to(dtype), **TOL[dtype])


def test_spmm_short_chains_setting_is_read(dev, monkeypatch):
    """The setting switches the path at every call: with it the op computes the warps' first-row table (one
    aten::searchsorted per op call, seen by the profiler), without it none."""
    graph = cuda_graph("hub5000", dev)
    x = torch.randn(graph.num_nodes, 8, device=dev)

    def searches(setting):
        monkeypatch.setenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS", setting)
        with torch.profiler.profile() as profile:
            spmm(graph, x)
        return sum(event.name == "aten::searchsorted" for event in profile.events())

    assert searches("1") == 1 and searches("0") == 0


def test_spmm_short_chains_setting_is_checked(dev, monkeypatch):
    monkeypatch.setenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS", "yes")
    graph = cuda_graph("tiny", dev)
    with pytest.raises(RuntimeError, match="RECBOLE_HNLM_SPMM_SHORT_CHAINS must be 0 or 1, got 'yes'"):
        spmm(graph, torch.randn(graph.num_nodes, 8, device=dev))


@pytest.mark.parametrize("name", ["tiny", "isolated_hub", "hub5000"])
@pytest.mark.parametrize("return_layers", [False, True])
@pytest.mark.parametrize("num_layers", [0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_propagation_values_and_gradients(dev, deterministic, name, return_layers, num_layers, dtype):
    graph = cuda_graph(name, dev)
    ego = torch.randn(graph.num_nodes, 64, device=dev, dtype=dtype, requires_grad=True)
    ego_ref = ego.detach().clone().requires_grad_()
    out = lightgcn_propagate(graph, ego, num_layers, return_layers)
    ref = lightgcn_propagate_reference(graph, ego_ref, num_layers, return_layers)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, ego, upstream)
    (grad_ref,) = torch.autograd.grad(ref, ego_ref, upstream)
    torch.testing.assert_close(grad, grad_ref, **TOL[dtype])


@pytest.mark.parametrize("return_layers", [False, True])
def test_propagation_low_precision(dev, return_layers):
    graph = cuda_graph("hub5000", dev)
    ego = torch.randn(graph.num_nodes, 64, device=dev)
    for dtype in (torch.bfloat16, torch.float16):
        out = lightgcn_propagate(graph, ego.to(dtype), 3, return_layers)
        ref = lightgcn_propagate_reference(graph, ego.to(dtype).double(), 3, return_layers)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), ref, **TOL[dtype])


def test_layer_stack_in_bfloat16_values_and_gradients(dev):
    """float32 ego, bf16 stack (the layers MixGCF gathers from): bf16 stack and backward sweeps, float32 grad."""
    layers_dtype = torch.bfloat16
    graph = cuda_graph("hub5000", dev)
    ego = torch.randn(graph.num_nodes, 64, device=dev, requires_grad=True)
    poison(dev, (graph.num_nodes, 4, 64), dtype=layers_dtype)
    stack = lightgcn_propagate(graph, ego, 3, return_layers=True, layers_dtype=layers_dtype)
    assert stack.dtype == layers_dtype
    ref = lightgcn_propagate_reference(graph, ego.detach().to(layers_dtype).double(), 3, return_layers=True)
    torch.testing.assert_close(stack.double(), ref, **TOL[layers_dtype])
    upstream = torch.randn(stack.shape, device=dev).to(layers_dtype)
    poison(dev, (graph.num_nodes, 64))
    (grad,) = torch.autograd.grad(stack, ego, upstream)
    ego64 = ego.detach().double().requires_grad_()
    (grad_ref,) = torch.autograd.grad(lightgcn_propagate_reference(graph, ego64, 3, True), ego64, upstream.double())
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad.double(), grad_ref, **TOL[layers_dtype])


def test_propagation_gradcheck_float64(dev):
    graph = cuda_graph("isolated_hub", dev)
    ego = torch.randn(graph.num_nodes, 3, device=dev, dtype=torch.float64, requires_grad=True)
    for return_layers in (False, True):
        assert torch.autograd.gradcheck(lambda e: lightgcn_propagate(graph, e, 2, return_layers), (ego,))


def test_propagation_agrees_with_cpu_kernel(dev):
    graph = random_graph(300, 200, 3000, seed=5, hub=True)
    ego = torch.randn(graph.num_nodes, 64)
    with _ext.library(_ext.LIBRARY):
        cpu = lightgcn_propagate(graph, ego, 3, True)
    gpu = lightgcn_propagate(graph.to(dev), ego.to(dev), 3, True)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("return_layers", [False, True])
def test_int64_indices_give_the_int32_results(dev, deterministic, return_layers):
    """Graphs past 2**31 entries use int64 rowptr/col (bipartite_normalized_graph): the other index instantiation."""
    g32 = cuda_graph("hub5000", dev)
    g64 = CSRGraph(g32.rowptr.long(), g32.col.long(), g32.val, g32.num_nodes)
    ego = torch.randn(g32.num_nodes, 64, device=dev, dtype=torch.float64, requires_grad=True)
    out32 = lightgcn_propagate(g32, ego, 3, return_layers)
    out64 = lightgcn_propagate(g64, ego, 3, return_layers)
    torch.testing.assert_close(out64, out32, **TOL[torch.float64])
    upstream = torch.randn_like(out32)
    grads = [torch.autograd.grad(out, ego, upstream)[0] for out in (out32, out64)]
    torch.testing.assert_close(grads[1], grads[0], **TOL[torch.float64])
    torch.testing.assert_close(spmm(g64, ego.detach()), spmm_reference(g32, ego.detach()), **TOL[torch.float64])


def draw(shape, gen, exact):
    """Standard normal, or (exact) multiples of 1/4 in [-2, 2]: sums of their products are exact in float32."""
    return torch.randint(-8, 9, shape, generator=gen) / 4.0 if exact else torch.randn(shape, generator=gen)


def mix_inputs(dev, B, M, L, d, I, dtype, per_layer_query, seed, exact=False):
    gen = torch.Generator().manual_seed(seed)
    query = draw((B, L, d) if per_layer_query else (B, d), gen, exact)
    pos = draw((B, L, d), gen, exact)
    items = draw((I, L, d), gen, exact)
    candidates = torch.randint(0, I, (B, M), generator=gen)
    alpha = torch.randint(1, 16, (B, L), generator=gen) / 16.0 if exact else torch.rand(B, L, generator=gen)
    return [t.to(dev, dtype) if t.is_floating_point() else t.to(dev) for t in (query, pos, items, candidates, alpha)]


@pytest.mark.parametrize("shape", [(1, 1, 1, 8, 5), (7, 1, 4, 64, 50), (1, 64, 4, 64, 1000), (256, 64, 4, 64, 3000),
                                   (33, 5, 3, 7, 20), (9, 6, 20, 8, 40)])  # (B, M, L, d, I); L = 20: two chunks
@pytest.mark.parametrize("per_layer_query", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixgcf_mix_values_and_gradients(dev, deterministic, shape, per_layer_query, dtype):
    B, M, L, d, I = shape
    query, pos, items, candidates, alpha = mix_inputs(dev, B, M, L, d, I, dtype, per_layer_query, seed=B + M,
                                                      exact=dtype == torch.float32)
    pos.requires_grad_()
    items.requires_grad_()
    poison(dev, (B, L, d), (I, L, d), dtype=dtype)
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    pos_ref, items_ref = pos.detach().clone().requires_grad_(), items.detach().clone().requires_grad_()
    z_ref, chosen_ref = mixgcf_mix_reference(query, pos_ref, items_ref, candidates, alpha)
    assert torch.equal(chosen, chosen_ref)
    torch.testing.assert_close(z, z_ref, **TOL[dtype])
    _, chosen_official = mixgcf_mix_official(query, pos, items, candidates, alpha)
    assert torch.equal(chosen, chosen_official)  # scoring the mixed candidates picks the same ones (exact inputs)
    upstream = torch.randn_like(z)
    grads = torch.autograd.grad(z, [pos, items], upstream)
    grads_ref = torch.autograd.grad(z_ref, [pos_ref, items_ref], upstream)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_mixgcf_repeated_choice_accumulates_on_gpu(dev, deterministic):
    query, pos, items, _, alpha = mix_inputs(dev, 64, 4, 4, 64, 10, torch.float64, False, seed=9)
    candidates = torch.full((64, 4), 3, device=dev)  # every row and layer picks item 3
    items.requires_grad_()
    z, _ = mixgcf_mix(query, pos, items, candidates, alpha)
    (grad,) = torch.autograd.grad(z.sum(), items)
    expected = (1 - alpha).sum(0)[:, None].expand(4, 64)
    torch.testing.assert_close(grad[3], expected)
    assert grad[torch.arange(10, device=dev) != 3].abs().max() == 0


def repeated_runs(dev, fn, runs=4):
    """fn()'s results from `runs` calls: under as many warp schedules (emulated), or repeated (GPU)."""
    results = []
    for seed in range(1, runs + 1):
        with cuda_emulation.warp_schedule(seed) if dev == "cpu" else contextlib.nullcontext():
            results.append([t.detach().clone() for t in fn()])
    return results


ATOMIC_OUTPUTS = ("spmm fp32", "spmm bf16", "layers", "grad ego", "grad items")


def atomic_ops_step(dev):
    """The ops whose CUDA kernels add with atomics: SpMM over a hub row that ~80 warps share (fp32, bf16), LightGCN
    forward and backward over it, and MixGCF's backward scatter where 4 items take 256 rows' gradients."""
    graph = cuda_graph("hub5000", dev)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(graph.num_nodes, 64, generator=gen).to(dev)
    ego = x.clone().requires_grad_()
    upstream = torch.randn(graph.num_nodes, 4, 64, generator=gen).to(dev)
    query, pos, items, candidates, alpha = mix_inputs(dev, 256, 4, 4, 64, 4, torch.float32, False, seed=11)
    items.requires_grad_()
    mix_upstream = torch.randn(256, 4, 64, generator=gen).to(dev)

    def step():
        layers = lightgcn_propagate(graph, ego, 3, return_layers=True)
        (grad_ego,) = torch.autograd.grad(layers, ego, upstream)
        z, _ = mixgcf_mix(query, pos, items, candidates, alpha)
        (grad_items,) = torch.autograd.grad(z, items, mix_upstream)
        return spmm(graph, x), spmm(graph, x.bfloat16()), layers, grad_ego, grad_items
    return step


def test_deterministic_mode_gives_the_same_bits_every_run(dev):
    """torch.use_deterministic_algorithms(True): cut rows and the MixGCF scatter are summed in a fixed order."""
    with deterministic_algorithms(True):
        first, *others = repeated_runs(dev, atomic_ops_step(dev))
    for other in others:
        for name, a, b in zip(ATOMIC_OUTPUTS, first, other):
            assert torch.equal(a, b), f"{name} changed between runs in deterministic mode"


@pytest.mark.emulation
@pytest.mark.skipif(not cuda_emulation.SUPPORTED, reason=cuda_emulation.UNSUPPORTED_REASON)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_deterministic_mixgcf_backward_sums_in_batch_order(dtype):
    """In deterministic mode each item's rows are summed in batch order, the CPU kernel's order: on the emulator
    (no fused multiply-add) the float bits equal the CPU kernel's. A GPU keeps the order but may contract w * g + s
    into one FMA, so there only run-to-run equality is tested. An unstable sort or another order fails here."""
    _, _, _, _, alpha = mix_inputs("cpu", 300, 4, 3, 70, 5, dtype, False, seed=13)
    gen = torch.Generator().manual_seed(14)
    grad_z = torch.randn(300, 3, 70, generator=gen, dtype=dtype)
    chosen = torch.randint(0, 5, (300, 3), generator=gen)  # ~60 rows per item and layer
    cpu = torch.ops.recbole_hnlm.mixgcf_mix_backward(grad_z, chosen, alpha, 5)
    emulated_ops = cuda_emulation.torch_ops()
    with deterministic_algorithms(True), cuda_emulation.warp_schedule(3):
        emulated = emulated_ops.mixgcf_mix_backward(grad_z, chosen, alpha, 5)
    assert not torch.are_deterministic_algorithms_enabled()
    with cuda_emulation.warp_schedule(3):
        atomic = emulated_ops.mixgcf_mix_backward(grad_z, chosen, alpha, 5)
    assert torch.equal(emulated[0], cpu[0]) and torch.equal(emulated[1], cpu[1])
    assert not torch.equal(atomic[1], cpu[1])  # the shuffled atomics do change the order (the test has teeth)


@pytest.mark.emulation
@pytest.mark.skipif(not cuda_emulation.SUPPORTED, reason=cuda_emulation.UNSUPPORTED_REASON)
def test_atomic_sums_depend_on_the_warp_schedule():
    """The other side of the test above: with atomics the same ops give other bits under other warp schedules, so
    the emulator's schedules can tell a fixed summation order from an unfixed one."""
    assert not torch.are_deterministic_algorithms_enabled()
    with _ext.library(cuda_emulation.build()):
        first, *others = repeated_runs("cpu", atomic_ops_step("cpu"))
    for index, name in enumerate(ATOMIC_OUTPUTS):
        if name != "spmm bf16":  # rounded to bf16, the float32 sums' last bits rarely show
            assert any(not torch.equal(first[index], other[index]) for other in others), name


@pytest.mark.parametrize("B,M,d,I", [(1, 1, 64, 3), (2048, 64, 64, 5000), (17, 9, 7, 30)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_scoring_and_selection(dev, B, M, d, I, dtype):
    gen = torch.Generator().manual_seed(B * M)
    exact = dtype == torch.float32
    user = draw((B, d), gen, exact).to(dev, dtype)
    items = draw((I, d), gen, exact).to(dev, dtype)
    candidates = torch.randint(0, I, (B, M), generator=gen).to(dev)
    target = draw((B,), gen, exact).to(dev, dtype)
    poison(dev, (B, M), dtype=dtype)
    torch.testing.assert_close(candidate_scores(user, items, candidates),
                               candidate_scores_reference(user, items, candidates), **TOL[dtype])
    if dtype != torch.bfloat16:  # bf16 scores round to ties; positions compared on exact dtypes only
        assert torch.equal(select_candidates(user, items, candidates),
                           select_candidates_reference(user, items, candidates))
        assert torch.equal(select_candidates(user, items, candidates, target),
                           select_candidates_reference(user, items, candidates, target))


ARGMAX_KERNELS = [None, "1", "2", "4"]  # RECBOLE_HNLM_ARGMAX_GROUPS: unset (the default kernels) or the split ones
#: test ids: the split cases carry "argmax_groups" (scripts/gpu_check.sh runs the experiments' tests in their own stage)
ARGMAX_KERNEL_IDS = ["default_kernels", "argmax_groups1", "argmax_groups2", "argmax_groups4"]


def use_argmax_kernels(monkeypatch, groups):
    if groups is None:
        monkeypatch.delenv("RECBOLE_HNLM_ARGMAX_GROUPS", raising=False)
    else:
        monkeypatch.setenv("RECBOLE_HNLM_ARGMAX_GROUPS", groups)


@pytest.mark.parametrize("groups", ARGMAX_KERNELS, ids=ARGMAX_KERNEL_IDS)
def test_argmax_order_holds_across_candidate_groups(dev, monkeypatch, groups):
    """The argmax kernels score candidates in groups (kCandidatesInFlight = 4, and with RECBOLE_HNLM_ARGMAX_GROUPS
    over 1, 2 or 4 groups of lanes whose winners are merged) and fold them in position order: a tie spread over
    groups keeps the first position, the first NaN wins whatever group it is in, and the padding of a short last
    group (M = 9) is never chosen."""
    use_argmax_kernels(monkeypatch, groups)
    user = torch.ones(2, 4, device=dev, dtype=torch.float64)
    items = torch.tensor([[1.0] * 4, [3.0] * 4, [float("nan")] * 4, [2.0] * 4], device=dev, dtype=torch.float64)
    candidates = torch.tensor([[0, 3, 0, 1, 3, 1, 0, 1, 3], [0, 0, 0, 0, 3, 2, 1, 2, 1]], device=dev)
    expected = select_candidates_reference(user, items, candidates)
    assert expected.tolist() == [3, 5]  # the inputs do what this test is about
    assert torch.equal(select_candidates(user, items, candidates), expected)
    layers = torch.stack([items, items.flip(0)], 1)  # L = 2: layer 1 ranks the items differently
    alpha = torch.full((2, 2), 0.5, device=dev, dtype=torch.float64)
    _, chosen = mixgcf_mix(user, layers[candidates[:, 0]], layers, candidates, alpha)
    _, chosen_ref = mixgcf_mix_reference(user, layers[candidates[:, 0]], layers, candidates, alpha)
    assert torch.equal(chosen, chosen_ref)


@pytest.mark.parametrize("groups", ARGMAX_KERNELS, ids=ARGMAX_KERNEL_IDS)
def test_selection_ties_and_nan_follow_torch(dev, monkeypatch, groups):
    use_argmax_kernels(monkeypatch, groups)
    user = torch.ones(3, 4, device=dev)
    items = torch.tensor([[1.0] * 4, [1.0] * 4, [float("nan")] * 4, [2.0] * 4], device=dev)
    candidates = torch.tensor([[0, 1, 3], [3, 2, 0], [1, 0, 0]], device=dev)
    assert select_candidates(user, items, candidates).tolist() == \
        select_candidates_reference(user, items, candidates).tolist()
    target = torch.tensor([float("inf"), 4.0, float("nan")], device=dev)
    assert select_candidates(user, items, candidates, target).tolist() == \
        select_candidates_reference(user, items, candidates, target).tolist()


@pytest.mark.parametrize("groups", ARGMAX_KERNELS, ids=ARGMAX_KERNEL_IDS)
def test_first_nan_wins_over_later_nans_in_other_groups(dev, monkeypatch, groups):
    """Several NaN scores in different candidate groups: the first position wins (torch.argmax), whichever group
    holds it; the merge of the groups' winners must order two NaNs by position too."""
    use_argmax_kernels(monkeypatch, groups)
    user = torch.ones(4, 4, device=dev, dtype=torch.float64)
    items = torch.tensor([[1.0] * 4, [float("nan")] * 4, [float("nan")] * 4, [5.0] * 4], device=dev,
                         dtype=torch.float64)
    candidates = torch.tensor([[0, 1, 2, 3, 0], [0, 3, 2, 1, 2], [2, 0, 0, 0, 1], [3, 0, 3, 2, 3]], device=dev)
    expected = select_candidates_reference(user, items, candidates)
    assert expected.tolist() == [1, 2, 0, 3]  # NaNs at positions 1, 2 (0, 4): the first one
    assert torch.equal(select_candidates(user, items, candidates), expected)
    layers = items[:, None, :]
    alpha = torch.full((4, 1), 0.5, device=dev, dtype=torch.float64)
    _, chosen = mixgcf_mix(user, layers[candidates[:, 0]], layers, candidates, alpha)
    assert torch.equal(chosen[:, 0], candidates.gather(1, expected[:, None])[:, 0])


@pytest.mark.parametrize("groups", ARGMAX_KERNELS[1:])
@pytest.mark.parametrize("shape", [(1, 1, 1, 8, 5), (7, 3, 4, 64, 50), (256, 64, 4, 64, 3000), (33, 5, 3, 7, 20),
                                   (9, 6, 20, 8, 40), (5, 9, 2, 128, 30), (3, 10, 2, 200, 30)])  # (B, M, L, d, I)
@pytest.mark.parametrize("per_layer_query", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_split_mixgcf_kernel_matches_reference(dev, monkeypatch, groups, shape, per_layer_query, dtype):
    """RECBOLE_HNLM_ARGMAX_GROUPS (one warp per row and layer, candidate groups with vector loads; a benchmark
    experiment): the positions of the float64 reference on exact inputs (multiples of 1/4: every score is exact in
    float32 whatever the order, also when the inputs are stored in bfloat16/half), z and gradients within TOL."""
    use_argmax_kernels(monkeypatch, groups)
    B, M, L, d, I = shape
    exact = dtype != torch.float64
    query, pos, items, candidates, alpha = mix_inputs(dev, B, M, L, d, I, dtype, per_layer_query, seed=B + M + d,
                                                      exact=exact)
    pos.requires_grad_()
    items.requires_grad_()
    poison(dev, (B, L, d), (I, L, d), dtype=dtype)
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    pos_ref, items_ref = pos.detach().double().requires_grad_(), items.detach().double().requires_grad_()
    z_ref, chosen_ref = mixgcf_mix_reference(query.double(), pos_ref, items_ref, candidates, alpha.double())
    assert torch.equal(chosen, chosen_ref)
    torch.testing.assert_close(z, z_ref.to(dtype), **TOL[dtype])
    upstream = torch.randn(z.shape, dtype=torch.float64).to(dev)
    grads = torch.autograd.grad(z, [pos, items], upstream.to(dtype))
    grads_ref = torch.autograd.grad(z_ref, [pos_ref, items_ref], upstream)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("groups", ARGMAX_KERNELS[1:])
@pytest.mark.parametrize("B,M,d,I", [(1, 1, 64, 3), (2048, 64, 64, 5000), (17, 9, 7, 30), (6, 11, 256, 40)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_split_selection_kernel_matches_reference(dev, monkeypatch, groups, B, M, d, I, dtype):
    """DNS/AHNS selection under RECBOLE_HNLM_ARGMAX_GROUPS: the float64 reference's positions (exact inputs)."""
    use_argmax_kernels(monkeypatch, groups)
    gen = torch.Generator().manual_seed(B * M + d)
    exact = dtype != torch.float64
    user, items, target = draw((B, d), gen, exact), draw((I, d), gen, exact), draw((B,), gen, exact)
    candidates = torch.randint(0, I, (B, M), generator=gen).to(dev)
    user, items, target = (t.to(dev, dtype) for t in (user, items, target))
    poison(dev, (B,), dtype=torch.float64)  # the int64 positions, same size
    assert torch.equal(select_candidates(user, items, candidates),
                       select_candidates_reference(user.double(), items.double(), candidates))
    assert torch.equal(select_candidates(user, items, candidates, target),
                       select_candidates_reference(user.double(), items.double(), candidates, target.double()))


@pytest.mark.parametrize("groups", ARGMAX_KERNELS[1:])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_kernels_on_unaligned_rows(dev, monkeypatch, groups, dtype):
    """Query and item rows one element past an aligned address take scalar loads in the split kernels (a vector load
    would fault on a GPU; the emulator reports it)."""
    use_argmax_kernels(monkeypatch, groups)
    B, M, L, d, I = 6, 7, 3, 64, 20
    gen = torch.Generator().manual_seed(21)

    def unaligned(*shape):
        base = draw((int(torch.tensor(shape).prod()) + 1,), gen, True).to(dev, dtype)
        view = base[1:].view(*shape)
        assert view.data_ptr() % (2 * view.element_size()) != 0
        return view

    query, items, pos = unaligned(B, d), unaligned(I, L, d), unaligned(B, L, d)
    candidates = torch.randint(0, I, (B, M), generator=gen).to(dev)
    alpha = (torch.randint(1, 16, (B, L), generator=gen) / 16.0).to(dev, dtype)
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z_ref, chosen_ref = mixgcf_mix_reference(query.double(), pos.double(), items.double(), candidates, alpha.double())
    assert torch.equal(chosen, chosen_ref)
    torch.testing.assert_close(z, z_ref.to(dtype), **TOL[dtype])
    user_items = unaligned(I, d)
    assert torch.equal(select_candidates(query, user_items, candidates),
                       select_candidates_reference(query.double(), user_items.double(), candidates))


def order_sensitive_scores(dev):
    """Two candidates for a query of ones: item 0 holds 1e8, 1, -1e8 in features 0-2 (score 1 when lanes 0, 1, 2 each
    hold one feature, as in the default kernels; 0 in float32 when one lane adds the three in a row, 1e8 + 1 rounding
    to 1e8, as the split kernels' vector loads do), item 1 scores 0.5 in any order."""
    user = torch.ones(1, 64, device=dev)
    items = torch.zeros(2, 64, device=dev)
    items[0, :3] = torch.tensor([1e8, 1.0, -1e8])
    items[1, 0] = 0.5
    return user, items, torch.tensor([[0, 1]], device=dev)


@pytest.mark.parametrize("groups", ARGMAX_KERNELS[1:])
def test_argmax_groups_setting_is_read(dev, monkeypatch, groups):
    """The setting switches kernels at every call: on inputs whose float32 score depends on the summation order the
    default kernels (one feature per lane) pick item 0, the split ones (2 or 4 features per lane, vector loads)
    item 1."""
    user, items, candidates = order_sensitive_scores(dev)
    layers = items[:, None, :]
    alpha = torch.full((1, 1), 0.5, device=dev)
    use_argmax_kernels(monkeypatch, None)
    assert select_candidates(user, items, candidates).tolist() == [0]
    assert mixgcf_mix(user, layers[[1]], layers, candidates, alpha)[1].tolist() == [[0]]
    use_argmax_kernels(monkeypatch, groups)
    assert select_candidates(user, items, candidates).tolist() == [1]
    assert mixgcf_mix(user, layers[[1]], layers, candidates, alpha)[1].tolist() == [[1]]


def test_argmax_groups_setting_is_checked(dev, monkeypatch):
    user, items, candidates = order_sensitive_scores(dev)
    monkeypatch.setenv("RECBOLE_HNLM_ARGMAX_GROUPS", "8")
    with pytest.raises(RuntimeError, match="RECBOLE_HNLM_ARGMAX_GROUPS must be 1, 2 or 4 \\(or unset\\), got '8'"):
        select_candidates(user, items, candidates)
    with pytest.raises(RuntimeError, match="RECBOLE_HNLM_ARGMAX_GROUPS must be 1, 2 or 4"):
        mixgcf_mix(user, items[[1], None], items[:, None], candidates, torch.full((1, 1), 0.5, device=dev))


def test_decreasing_rowptr_is_an_error_not_wrong_sums(dev):
    g = cuda_graph("isolated_hub", dev)
    decreasing = g.rowptr.clone()
    decreasing[1] = g.rowptr[-1]
    with pytest.raises(ValueError, match="non-decreasing"):
        _ext.ops.spmm(decreasing, g.col, g.val, torch.randn(g.num_nodes, 8, device=dev))


def test_a_checked_rowptr_is_checked_again_after_an_in_place_change(dev):
    """The kernels check a rowptr tensor once (the checks synchronise with the device) and remember it with its
    version counter: an in-place change must bring the check back, not be summed silently."""
    g = cuda_graph("isolated_hub", dev)
    rowptr, x = g.rowptr.clone(), torch.randn(g.num_nodes, 8, device=dev)
    first = _ext.ops.spmm(rowptr, g.col, g.val, x)
    torch.testing.assert_close(_ext.ops.spmm(rowptr, g.col, g.val, x), first, atol=0, rtol=0)  # remembered
    rowptr[1] = g.rowptr[-1]
    with pytest.raises(ValueError, match="non-decreasing"):
        _ext.ops.spmm(rowptr, g.col, g.val, x)
    rowptr.copy_(g.rowptr)
    _ext.ops.lightgcn_layers(rowptr, g.col, g.val, x, 2)  # checked and remembered again
    with pytest.raises(ValueError, match=r"rowptr\[-1\] must equal nnz"):  # the same tensor, another nnz
        _ext.ops.spmm(rowptr, g.col[:-1], g.val[:-1], x)
    rowptr[-1] += 1
    with pytest.raises(ValueError, match=r"rowptr\[-1\] must equal nnz"):
        _ext.ops.lightgcn_layers(rowptr, g.col, g.val, x, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [2, 64, 128, 256])
def test_unaligned_rows_fall_back_to_scalar_loads(dev, d, dtype):
    """Rows starting one element past an aligned address (a view at storage offset 1) must not take vector loads
    (float2/float4, or 4-16 bytes of half/bfloat16): a GPU faults on them ("misaligned address"), the emulator
    reports them."""
    graph = cuda_graph("isolated_hub", dev)
    base = torch.randn(graph.num_nodes * d + 1, device=dev).to(dtype)
    x = base[1:].view(graph.num_nodes, d)
    assert x.is_contiguous() and x.data_ptr() % (2 * x.element_size()) != 0
    torch.testing.assert_close(spmm(graph, x), spmm_reference(graph, x.double()).to(dtype), **TOL[dtype])
    out = lightgcn_propagate(graph, x, 2, True)
    torch.testing.assert_close(out, lightgcn_propagate_reference(graph, x.double(), 2, True).to(dtype), **TOL[dtype])


@pytest.mark.parametrize("dev", BACKENDS[1:], indirect=True)  # on a GPU the assertion ends the CUDA context
def test_out_of_range_ids_trip_the_device_assertion(dev):
    """Ids outside [0, I) are caught inside the kernels: a clear error naming the failed condition (here the
    emulator's; a GPU reports "device-side assert triggered"), never a silent out-of-bounds read."""
    user, items = torch.randn(4, 8), torch.randn(5, 8)
    bad = torch.tensor([[0, 1], [2, 5], [3, 4], [1, 1]])
    with pytest.raises(RuntimeError, match=r"device-side assertion `c >= 0 && c < I` failed"):
        candidate_scores(user, items, bad)
    with pytest.raises(RuntimeError, match=r"device-side assertion `c >= 0 && c < I` failed"):
        select_candidates(user, items, -bad)
    query, pos, item_layers, _, alpha = mix_inputs(dev, 4, 2, 3, 8, 5, torch.float32, False, seed=1)
    with pytest.raises(RuntimeError, match=r"device-side assertion `c >= 0 && c < I` failed"):
        mixgcf_mix(query, pos, item_layers, bad, alpha)
    alpha[2, 1] = 1.0  # the argmax identity needs 1 - alpha > 0
    with pytest.raises(RuntimeError, match=r"device-side assertion `a >= acc_t\(0\) && a < acc_t\(1\)` failed"):
        _ext.ops.mixgcf_mix(query, pos, item_layers, bad.clamp(0, 4), alpha)
    graph = cuda_graph("tiny", dev)
    col = graph.col.clone()
    col[-1] = graph.num_nodes
    with pytest.raises(RuntimeError, match=r"device-side assertion `c >= 0 && c < n_rows` failed"):
        _ext.ops.spmm(graph.rowptr, col, graph.val, torch.randn(graph.num_nodes, 4))


def test_backward_checks_chosen_ids_when_rows_are_empty(dev):
    """With d = 0 no backward kernel runs to assert on the ids: they are checked on the host, an IndexError as the
    CPU kernel raises at any d."""
    chosen = torch.tensor([[0, 5], [1, 2]], device=dev)
    alpha = torch.rand(2, 2, device=dev)
    grad_z = torch.randn(2, 2, 0, device=dev)
    with pytest.raises(IndexError, match=r"outside \[0, 5\)"):
        _ext.ops.mixgcf_mix_backward(grad_z, chosen, alpha, 5)
    grad_pos, grad_items = _ext.ops.mixgcf_mix_backward(grad_z, chosen.clamp(max=4), alpha, 5)
    assert grad_pos.shape == (2, 2, 0) and grad_items.shape == (5, 2, 0)
