"""GPU benchmark of the recbole_hnlm CUDA kernels against their baselines, printed as one markdown table.

    python benchmarks/run_gpu_benchmarks.py [--graphs yelp2018 amazon-book] [--dtypes float32 bfloat16] [--rounds 20]
    python benchmarks/run_gpu_benchmarks.py --device cpu --quick     # smoke-test the script itself (no GPU)

``--quick`` runs every row on 20x smaller graphs, 2 rounds (unless ``--rounds`` is given), one epoch round of
``QUICK_EPOCH_BATCHES`` batches: a check that the script runs and its cross-checks hold, not a measurement.

Per graph (synthetic power-law graphs of the published LightGCN training sizes, d=64, K=3) and dtype:

* one propagation layer: ours ``spmm`` vs ``torch.sparse.mm`` (cuSPARSE CSR; torch's CPU kernel with ``--device cpu``);
* LightGCN propagation fwd+bwd (mean of K+1 layers): ours vs the reference autograd chain (``torch.sparse.mm`` per
  layer + stack + mean) vs PyG ``LGConv`` (CSR adjacency and edge_index forms) when torch_geometric is importable;
* the layer stack fwd+bwd (what MixGCF needs, float32 embeddings): ours with a float32 stack, ours with a bfloat16
  stack (``layers_dtype``), the reference chain;
* effective gathered bandwidth of our SpMM (the gathered rows, nnz * d * element size, over time: the issue's and
  perf_anchors.md's measure), the bandwidth of every byte it moves (gathered and written rows, indices, values,
  rowptr), and the gathered figure's ratio to the device's peak bandwidth (``--peak-gbps``, default from the device
  name);
* the fused MixGCF step (B=2048, M=64) fwd+bwd vs eager official MixGCF, with the bytes saved for backward, and
  ours on a bfloat16 item stack;
* DNS / AHNS selection vs eager gather+bmm+argmax/argmin;
* one epoch of LightGCN + MixGCF training on the graph with GPU-side candidate sampling (BPR, Adam, batch 2048),
  ours (float32 and bfloat16 layer stack) vs the reference ops;
* the SpMM experiments ``RECBOLE_HNLM_SPMM_GROUPS`` = 2 and 4 (rows a warp gathers per load instruction) and
  ``RECBOLE_HNLM_SPMM_SHORT_CHAINS=1`` (shorter chains of dependent loads, same bits) for one layer and for
  propagation, next to the default;
* the argmax experiment ``RECBOLE_HNLM_ARGMAX_GROUPS`` = 1, 2 and 4 (MixGCF: one warp per row and layer; MixGCF,
  DNS and AHNS: candidate groups of lanes with vector loads) for the MixGCF step, the selections and the epoch (2);
  the epoch also with the short-chain SpMM, and with both experiments;
* the cost of ``torch.use_deterministic_algorithms(True)`` (option ``use_deterministic_algorithms``): our SpMM,
  propagation, MixGCF step and epoch with it, next to the same ops without it (a ratio above 1 is its cost).

Timing: CUDA events around each call, warm-up first, median over ``--rounds``, variants interleaved per round (the
epoch rows excepted: each variant's warm-up and timed epochs run one after another). Correctness is cross-checked
against the references before timing: forward values of SpMM, propagation, both layer stacks and MixGCF's mixed
rows; the gradients are the test suite's (tests/ops/test_cuda_kernels.py).
"""
import argparse
import functools
import os
import statistics
import sys
import time

# the deterministic-mode rows need cuBLAS's fixed workspace, which is read when CUDA starts (before torch's import
# is early enough; recbole_hnlm.determinism warns otherwise)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from synthetic_graph import YELP2018, power_law_interactions  # noqa: E402
from workloads import B, D, K, M, mixgcf_inputs  # noqa: E402

from recbole_hnlm.determinism import deterministic_algorithms  # noqa: E402
from recbole_hnlm.ops import _ext, bipartite_normalized_graph, lightgcn_propagate, mixgcf_mix  # noqa: E402
from recbole_hnlm.ops import select_candidates, spmm  # noqa: E402
from recbole_hnlm.ops.reference import (  # noqa: E402
    lightgcn_propagate_reference,
    mixgcf_mix_official,
    select_candidates_reference,
    spmm_reference,
)

#: LightGCN's Amazon-Book training split (users, items, training interactions).
AMAZON_BOOK = dict(n_users=52_643, n_items=91_599, n_edges=2_380_730)
GRAPHS = {"yelp2018": YELP2018, "amazon-book": AMAZON_BOOK}
#: batches of each timed epoch under ``--quick`` (a full epoch of even the 20x smaller Yelp2018 graph is 37 batches)
QUICK_EPOCH_BATCHES = 2
#: Peak HBM bandwidth (GB/s) by device-name substring, for the ratio to the floor.
PEAK_GBPS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0}
#: RECBOLE_HNLM_SPMM_GROUPS values timed next to the default (1): rows a warp gathers per load instruction.
GROUPS = (2, 4)
#: RECBOLE_HNLM_ARGMAX_GROUPS values timed next to the default kernels (unset): candidate groups per warp of the split
#: MixGCF / DNS / AHNS kernels; the epoch times the first one only.
ARGMAX_GROUPS = (1, 2, 4)


def with_env(name, value, fn):
    """fn run with the environment variable `name` set to `value` (restored afterwards): the kernel experiments of
    csrc/cuda are switched this way, read at every call (setting it costs the timed region a few microseconds)."""
    def run():
        before = os.environ.get(name)
        os.environ[name] = str(value)
        try:
            return fn()
        finally:
            if before is None:
                del os.environ[name]
            else:
                os.environ[name] = before
    return run


def spmm_groups(groups, fn):
    """fn with RECBOLE_HNLM_SPMM_GROUPS=groups: the SpMM gathers that many rows per load instruction."""
    return with_env("RECBOLE_HNLM_SPMM_GROUPS", groups, fn)


def spmm_short_chains(fn):
    """fn with RECBOLE_HNLM_SPMM_SHORT_CHAINS=1: each SpMM warp reads its first row from a table (no binary search)
    and gathers a row's last edges together (the same sums, bit for bit)."""
    return with_env("RECBOLE_HNLM_SPMM_SHORT_CHAINS", 1, fn)


def argmax_groups(groups, fn):
    """fn with RECBOLE_HNLM_ARGMAX_GROUPS=groups: MixGCF runs one warp per (row, layer), and MixGCF, DNS and AHNS
    score candidates in that many groups of lanes with vector loads."""
    return with_env("RECBOLE_HNLM_ARGMAX_GROUPS", groups, fn)


def deterministic(fn):
    """fn run under torch.use_deterministic_algorithms(True, warn_only=True): fixed summation orders."""
    def run():
        with deterministic_algorithms(True):
            return fn()
    return run


class Timer:
    """Median wall time of a callable: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def once(self, fn):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin

    def interleaved(self, variants, rounds, warmup=3):
        for fn in variants.values():
            for _ in range(warmup):
                fn()
        samples = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                samples[name].append(self.once(fn))
        return {name: statistics.median(values) for name, values in samples.items()}


@functools.lru_cache(maxsize=2)
def interactions(**sizes):
    """The synthetic graph's (users, items) on the CPU, drawn once per size: every epoch variant trains on them (each
    draw of the Amazon-Book-size graph took ~5 s of the device call)."""
    return power_law_interactions(**sizes)


def build_graph(name, device, quick):
    sizes = dict(GRAPHS[name])
    if quick:
        sizes = {k: v // 20 for k, v in sizes.items()}
    users, items = interactions(**sizes)
    graph = bipartite_normalized_graph(users, items, sizes["n_users"], sizes["n_items"]).to(device)
    return graph, sizes


def pyg_propagations(graph, num_layers, dtype):
    """PyG ``LGConv`` chains on the same normalised graph, by both of its input forms: the sparse CSR adjacency
    (one SpMM per layer, like the reference chain) and ``edge_index`` + edge weights (message passing: gather the
    source rows, scale, scatter-add into the targets), PyG's common path. Empty when torch_geometric is missing."""
    try:
        from torch_geometric.nn import LGConv
    except ImportError:
        return {}
    conv = LGConv(normalize=False)
    adj = graph.to_sparse_csr(dtype)
    edge_index = torch.stack([graph.col.long(), graph.row_indices()])  # col -> row: out[row] += val * x[col]
    weight = graph.val.to(dtype)

    def chain(layer):
        def run(ego):
            layers = [ego]
            for _ in range(num_layers):
                layers.append(layer(layers[-1]))
            return torch.stack(layers, 1).mean(1)

        return run

    return {
        "PyG LGConv chain (CSR adj)": chain(lambda x: conv(x, adj)),
        "PyG LGConv chain (edge_index)": chain(lambda x: conv(x, edge_index, weight)),
    }


#: Tolerances of the checks before timing, as tests/ops/test_cuda_kernels.py's: float32 after K = 3 layers of
#: atomic adds (no fixed summation order), bfloat16 with float32 accumulation on both sides.
CHECK_TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


def saved_bytes(fn):
    """Bytes autograd saves for backward while ``fn`` runs (saved-tensor hooks)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def epoch_step_factory(graph, sizes, device, dtype, use_kernels, layers_dtype=None, batch=B, max_batches=None):
    """One LightGCN + MixGCF training epoch with candidates drawn on the device (no loader, no CPU work);
    ``layers_dtype`` is LightGCN's option of the same name (kernels only); ``max_batches`` cuts the epoch short, and
    ``epoch(batches)`` runs only its first ``batches`` batches."""
    n_users, n_items = sizes["n_users"], sizes["n_items"]
    gen = torch.Generator(device=device).manual_seed(0)
    emb = torch.nn.Parameter(0.1 * torch.randn(graph.num_nodes, D, device=device, generator=gen, dtype=dtype))
    opt = torch.optim.Adam([emb], lr=1e-3)
    users, items = interactions(**sizes)
    users, items = users.to(device), items.to(device)
    n_batches = (users.numel() + batch - 1) // batch
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)

    def epoch(batches=n_batches):
        order = torch.randperm(users.numel(), device=device, generator=gen)
        for k in range(batches):
            idx = order[k * batch:(k + 1) * batch]
            u, p = users[idx], items[idx]
            cand = torch.randint(0, n_items, (idx.numel(), M), device=device, generator=gen)
            alpha = torch.rand(idx.numel(), K + 1, device=device, generator=gen, dtype=dtype)
            if use_kernels:
                stack = lightgcn_propagate(graph, emb, K, True, layers_dtype=layers_dtype)
            else:
                stack = lightgcn_propagate_reference(graph, emb, K, True)
            user_layers, item_layers = stack[:n_users], stack[n_users:]
            query = user_layers[u].mean(1, dtype=dtype)
            mix = mixgcf_mix if use_kernels else mixgcf_mix_official
            # the query as MixGCF's code passes it (with its graph: eager MixGCF keeps its mixed tensor for backward)
            z, _ = mix(query.to(stack.dtype), item_layers[p], item_layers, cand, alpha)
            pos_score = (query * item_layers[p].mean(1, dtype=dtype)).sum(-1)
            neg_score = (query * z.mean(1, dtype=dtype)).sum(-1)
            loss = torch.nn.functional.softplus(neg_score - pos_score).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return epoch, n_batches


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per row (default 20; 2 with --quick)")
    parser.add_argument("--epoch-rounds", type=int, default=None, help="timed epochs per variant (default 3; 1 with "
                        "--quick)")
    parser.add_argument("--peak-gbps", type=float, default=None)
    parser.add_argument("--quick", action="store_true", help=f"smoke test: 20x smaller graphs, 2 rounds, epochs of "
                        f"{QUICK_EPOCH_BATCHES} batches")
    parser.add_argument("--skip-epoch", action="store_true")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 20
    if args.epoch_rounds is None:
        args.epoch_rounds = 1 if args.quick else 3
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU; on a machine without one, "
                     "smoke-test the script with --device cpu --quick")
    if args.rounds < 1 or args.epoch_rounds < 1:
        parser.error("--rounds and --epoch-rounds must be >= 1")
    if not _ext.has_kernels(device):  # every "ours" row would be the PyTorch reference timed against itself
        sys.exit(f"the ops on {device} run {_ext.kernels_in_use(device)}: nothing to benchmark")
    timer = Timer(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_gbps or next((v for k, v in PEAK_GBPS.items() if k in name), None)
    print(f"- device: {name}; torch {torch.__version__}; CUDA kernels: {_ext.WITH_CUDA_EXT}; "
          f"peak bandwidth {peak} GB/s; rounds {args.rounds}")
    print("\n| graph | dtype | case | variant | median ms | ratio (baseline / ours) | notes |")
    print("|---|---|---|---|---|---|---|")

    def row(graph_name, dtype_name, case, results, notes=None):
        ours = next(iter(results.values()))
        for variant, seconds in results.items():
            ratio = "1.0 (ours)" if seconds is ours else f"{seconds / ours:.2f}x"
            note = (notes or {}).get(variant, "")
            print(f"| {graph_name} | {dtype_name} | {case} | {variant} | {seconds * 1e3:.3f} | {ratio} | {note} |",
                  flush=True)

    for graph_name in args.graphs:
        graph, sizes = build_graph(graph_name, device, args.quick)
        n, nnz = graph.num_nodes, graph.nnz
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            gen = torch.Generator(device=device).manual_seed(1)
            x = torch.randn(n, D, device=device, dtype=dtype, generator=gen)
            ref = lightgcn_propagate_reference(graph, x.double(), K)
            tol = CHECK_TOL[dtype]
            torch.testing.assert_close(lightgcn_propagate(graph, x, K).double(), ref, **tol)
            with deterministic_algorithms(True):  # the fixed-order paths, checked before they are timed
                torch.testing.assert_close(lightgcn_propagate(graph, x, K).double(), ref, **tol)
            with deterministic_algorithms(True):  # short chains add the same terms in the same order
                assert torch.equal(spmm_short_chains(lambda: spmm(graph, x))(), spmm(graph, x))
            for groups in GROUPS:  # the experiment's sums, checked before they are timed
                torch.testing.assert_close(spmm_groups(groups, lambda: spmm(graph, x))().double(),
                                           spmm_reference(graph, x.double()), **tol)
            csr = graph.to_sparse_csr(dtype)
            variants = {"ours spmm": lambda: spmm(graph, x),
                        "ours spmm, deterministic mode": deterministic(lambda: spmm(graph, x))}
            for groups in GROUPS:
                variants[f"ours spmm, {groups} rows per load"] = spmm_groups(groups, lambda: spmm(graph, x))
            variants["ours spmm, short chains"] = spmm_short_chains(lambda: spmm(graph, x))
            try:
                torch.sparse.mm(csr, x)
                library = "cuSPARSE" if x.is_cuda else "CPU"  # --device cpu times torch's own CSR kernel
                variants[f"torch.sparse.mm CSR ({library})"] = lambda: torch.sparse.mm(csr, x)
            except RuntimeError as error:  # e.g. no bf16 SpMM for this build
                print(f"<!-- torch.sparse.mm {dtype_name}: {error} -->")
            results = timer.interleaved(variants, args.rounds)
            item = x.element_size()
            gathered = nnz * D * item  # the rows read through the column indices: the target's bytes
            moved = (gathered + n * D * item + nnz * (graph.col.element_size() + graph.val.element_size())
                     + (n + 1) * graph.rowptr.element_size())
            gbps, all_gbps = (b / results["ours spmm"] / 1e9 for b in (gathered, moved))
            note = (f"{gbps:.0f} GB/s gathered" + (f" ({gbps / peak:.2f} of peak)" if peak else "")
                    + f", {all_gbps:.0f} GB/s of every byte moved")
            row(graph_name, dtype_name, "1 layer", results, {"ours spmm": note})

            ego = x.clone().requires_grad_()
            upstream = torch.randn(n, D, device=device, dtype=dtype, generator=gen)
            variants = {
                "ours lightgcn_propagate": lambda: torch.autograd.grad(
                    lightgcn_propagate(graph, ego, K), [ego], upstream),
                "ours, deterministic mode": deterministic(
                    lambda: torch.autograd.grad(lightgcn_propagate(graph, ego, K), [ego], upstream)),
                "reference chain (torch.sparse.mm)": lambda: torch.autograd.grad(
                    lightgcn_propagate_reference(graph, ego, K), [ego], upstream),
            }
            for groups in GROUPS:
                variants[f"ours, {groups} rows per load"] = spmm_groups(groups, lambda: torch.autograd.grad(
                    lightgcn_propagate(graph, ego, K), [ego], upstream))
            variants["ours, short chains"] = spmm_short_chains(lambda: torch.autograd.grad(
                lightgcn_propagate(graph, ego, K), [ego], upstream))
            notes = {}
            for name, pyg in pyg_propagations(graph, K, dtype).items():
                try:  # PyG's precision is its own (bf16 scatter-add accumulates in bf16): reported, not asserted
                    notes[name] = f"max abs err {(pyg(x).double() - ref).abs().max().item():.1e} vs fp64 reference"
                except RuntimeError as error:  # e.g. no bf16 sparse kernel in this build
                    print(f"<!-- {name} {dtype_name}: {error} -->")
                    continue
                variants[name] = lambda pyg=pyg: torch.autograd.grad(pyg(ego), [ego], upstream)
            row(graph_name, dtype_name, f"propagation fwd+bwd K={K}", timer.interleaved(variants, args.rounds), notes)

        # the layer stack (MixGCF's input) from float32 embeddings, stored in float32 or bfloat16
        ego = torch.randn(n, D, device=device, generator=gen).requires_grad_()
        up32 = torch.randn(n, K + 1, D, device=device, generator=gen)
        up16 = up32.bfloat16()
        stack16 = lightgcn_propagate(graph, ego, K, True, layers_dtype=torch.bfloat16)
        stack_ref = lightgcn_propagate_reference(graph, ego.detach().bfloat16().double(), K, True)
        torch.testing.assert_close(stack16.double(), stack_ref, **CHECK_TOL[torch.bfloat16])
        torch.testing.assert_close(lightgcn_propagate(graph, ego, K, True).double(),
                                   lightgcn_propagate_reference(graph, ego.detach().double(), K, True),
                                   **CHECK_TOL[torch.float32])
        variants = {
            "ours, float32 stack": lambda: torch.autograd.grad(lightgcn_propagate(graph, ego, K, True), [ego], up32),
            "ours, bfloat16 stack (layers_dtype)": lambda: torch.autograd.grad(
                lightgcn_propagate(graph, ego, K, True, layers_dtype=torch.bfloat16), [ego], up16),
            "reference chain, float32 stack": lambda: torch.autograd.grad(
                lightgcn_propagate_reference(graph, ego, K, True), [ego], up32),
        }
        row(graph_name, "float32", f"layer stack fwd+bwd K={K}", timer.interleaved(variants, args.rounds))

        # negative selection (float32, B=2048, M=64, L=K+1)
        gen = torch.Generator(device=device).manual_seed(2)
        query, pos, items, cand, alpha, up = mixgcf_inputs(sizes["n_items"], device)
        z, chosen = mixgcf_mix(query, pos, items, cand, alpha)
        z_off, chosen_off = mixgcf_mix_official(query, pos, items, cand, alpha)
        assert (chosen == chosen_off).float().mean() > 0.999  # near-ties may split between summation orders
        agree = (chosen == chosen_off)[..., None]
        torch.testing.assert_close(z * agree, z_off * agree, **CHECK_TOL[torch.float32])
        grads = torch.autograd.grad(z, [pos, items], up)
        with deterministic_algorithms(True):
            z_det, _ = mixgcf_mix(query, pos, items, cand, alpha)
            for got, want in zip(torch.autograd.grad(z_det, [pos, items], up), grads):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        for groups in ARGMAX_GROUPS:  # the experiment's choices, checked before they are timed (near-ties may split)
            z_split, chosen_split = argmax_groups(groups, lambda: mixgcf_mix(query, pos, items, cand, alpha))()
            assert (chosen_split == chosen).float().mean() > 0.999
            agree = (chosen_split == chosen)[..., None]
            torch.testing.assert_close(z_split * agree, z * agree)
            grads_split = torch.autograd.grad(z_split, [pos, items], up)
            torch.testing.assert_close(grads_split[0], grads[0])
        ours_saved = saved_bytes(lambda: mixgcf_mix(query, pos, items, cand, alpha))
        eager_saved = saved_bytes(lambda: mixgcf_mix_official(query, pos, items, cand, alpha))
        variants = {
            "ours mixgcf_mix": lambda: torch.autograd.grad(mixgcf_mix(query, pos, items, cand, alpha)[0],
                                                           [pos, items], up),
            "ours mixgcf_mix, deterministic mode": deterministic(lambda: torch.autograd.grad(
                mixgcf_mix(query, pos, items, cand, alpha)[0], [pos, items], up)),
            "eager official MixGCF": lambda: torch.autograd.grad(
                mixgcf_mix_official(query, pos, items, cand, alpha)[0], [pos, items], up),
        }
        for groups in ARGMAX_GROUPS:
            variants[f"ours mixgcf_mix, split, {groups} candidate groups"] = argmax_groups(groups, lambda: (
                torch.autograd.grad(mixgcf_mix(query, pos, items, cand, alpha)[0], [pos, items], up)))
        items16 = items.detach().bfloat16().requires_grad_()
        pos16, query16, up16 = pos.detach().bfloat16().requires_grad_(), query.bfloat16(), up.bfloat16()
        variants["ours mixgcf_mix, bfloat16 stack"] = lambda: torch.autograd.grad(
            mixgcf_mix(query16, pos16, items16, cand, alpha)[0], [pos16, items16], up16)
        row(graph_name, "float32", f"MixGCF step fwd+bwd B={B} M={M}", timer.interleaved(variants, args.rounds),
            {"ours mixgcf_mix": f"saved for backward {ours_saved / 1e6:.3f} MB",
             "eager official MixGCF": f"saved for backward {eager_saved / 1e6:.1f} MB"})
        user = torch.randn(B, D, device=device, generator=gen)
        flat = items.detach()[:, 0].contiguous()
        target = torch.randn(B, device=device, generator=gen)
        for case, tgt in (("DNS select", None), ("AHNS select", target)):
            expected = select_candidates_reference(user, flat, cand, tgt)
            assert torch.equal(select_candidates(user, flat, cand, tgt), expected)
            variants = {"ours select_candidates": lambda tgt=tgt: select_candidates(user, flat, cand, tgt),
                        "eager gather+bmm+arg": lambda tgt=tgt: select_candidates_reference(user, flat, cand, tgt)}
            for groups in ARGMAX_GROUPS:
                split = argmax_groups(groups, lambda tgt=tgt: select_candidates(user, flat, cand, tgt))
                assert (split() == expected).float().mean() > 0.999
                variants[f"ours, split, {groups} candidate groups"] = split
            row(graph_name, "float32", case, timer.interleaved(variants, args.rounds))

        if not args.skip_epoch:
            results, notes = {}, {}
            split = ARGMAX_GROUPS[1]
            for label, use_kernels, layers_dtype, mode in (
                    ("ours (kernels)", True, None, None),
                    ("ours (kernels), bfloat16 stack", True, torch.bfloat16, None),
                    ("ours (kernels), deterministic mode", True, None, "deterministic"),
                    (f"ours (kernels), split MixGCF, {split} candidate groups", True, None, "split"),
                    ("ours (kernels), short-chain SpMM", True, None, "short chains"),
                    ("ours (kernels), both experiments", True, None, "both"),
                    ("reference ops", False, None, None)):
                epoch, n_batches = epoch_step_factory(graph, sizes, device, torch.float32, use_kernels, layers_dtype,
                                                      max_batches=QUICK_EPOCH_BATCHES if args.quick else None)
                epoch = {"deterministic": deterministic, "split": lambda fn: argmax_groups(split, fn),
                         "short chains": spmm_short_chains,
                         "both": lambda fn: spmm_short_chains(argmax_groups(split, fn)),
                         None: lambda fn: fn}[mode](epoch)
                epoch()  # warm-up epoch
                times = [timer.once(epoch) for _ in range(args.epoch_rounds)]
                results[label] = statistics.median(times)
                notes[label] = f"{n_batches} batches"
            row(graph_name, "float32", "LightGCN+MixGCF epoch (GPU sampling)", results, notes)


if __name__ == "__main__":
    main()
