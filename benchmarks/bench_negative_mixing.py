"""MixGCF mixing and DNS/AHNS selection (B=2048, M=64, L=4, d=64, 38,048 items): ours vs eager PyTorch."""
import pytest

from workloads import mixgcf_case, scoring_case

ROUNDS = dict(rounds=5, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("variant", ["ours mixgcf_mix", "eager official MixGCF"])
@pytest.mark.parametrize("backward", [True, False], ids=["fwd+bwd", "fwd"])
def test_mixgcf_mix(benchmark, variant, backward):
    benchmark.group = f"mixgcf mixing {'fwd+bwd' if backward else 'fwd'}"
    benchmark.pedantic(mixgcf_case(backward=backward)[variant], **ROUNDS)


@pytest.mark.parametrize("kind,variant", [
    ("dns", "ours select_candidates"), ("dns", "eager gather+bmm+argmax"),
    ("ahns", "ours select_candidates"), ("ahns", "eager gather+bmm+argmin"),
    ("scores", "ours candidate_scores"), ("scores", "eager gather+bmm"),
])
def test_selection(benchmark, kind, variant):
    benchmark.group = f"{kind} selection"
    benchmark.pedantic(scoring_case(kind)[variant], **ROUNDS)
