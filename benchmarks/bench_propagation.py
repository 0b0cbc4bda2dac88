"""LightGCN propagation on the Yelp2018-size graph: ours vs the reference autograd chain and torch.sparse.mm."""
import pytest

from workloads import propagation_case, spmm_case

ROUNDS = dict(rounds=3, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("variant", ["ours spmm", "torch.sparse.mm CSR"])
def test_spmm_forward(benchmark, graph, variant):
    benchmark.group = "spmm forward (1 layer, d=64)"
    benchmark.pedantic(spmm_case(graph)[variant], **ROUNDS)


@pytest.mark.parametrize("variant",
                         ["ours lightgcn_propagate", "reference chain (CSR)", "reference chain (COO, as MixGCF)"])
@pytest.mark.parametrize("return_layers", [False, True], ids=["mean", "layers"])
def test_lightgcn_forward_backward(benchmark, graph, variant, return_layers):
    benchmark.group = f"lightgcn fwd+bwd K=3 d=64 ({'layers' if return_layers else 'mean'})"
    benchmark.pedantic(propagation_case(graph, return_layers)[variant], **ROUNDS)
