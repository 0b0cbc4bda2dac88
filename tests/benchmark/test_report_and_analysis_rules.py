"""The rules of report.py and analysis.py on constructed cases (no training), where the other benchmark tests leave
them open (a mutation audit found the gaps): tie rules, tolerances, user batches, cosine against dot product, the FHN
columns, the popularity groups' rounding and ties, the shipped runs.csv files, a tie printed as "+0.0%"."""
import math
import os
import shutil

import numpy as np
import pytest
import torch

from recbole_hnlm.benchmark import analysis as A
from recbole_hnlm.benchmark import report as R
from recbole_hnlm.benchmark.runner import METRICS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(model, sampler, seed, value, fingerprint="0" * 40, **extra):
    result = {"cell": f"{model}-{sampler}-seed{seed}", "model": model, "sampler": sampler, "seed": seed,
              "train_ratio": 1.0, "dataset": "toy", "valid_metric": "NDCG@20", "best_valid_score": value,
              "best_epoch": 0, "epochs_run": 1, "mean_epoch_time": 1.0, "total_time": 1.0, "analysis": {},
              "test_result": {m: value for m in METRICS}, "epochs": [{"epoch": 0, "train_time": 1.0}],
              "split": {"fingerprint": fingerprint}, "metric_decimal_place": 4}
    result.update(extra)
    return result


# ---------------------------------------------------------------- report.py

def test_nearly_constant_differences_are_still_tested():
    """Only differences equal up to float noise are "constant": 0.1, 0.0999, 0.1001 have a t statistic."""
    a, b = [0.30, 0.31, 0.32], [0.20, 0.2101, 0.2199]
    result = R.paired_test(a, b)
    from scipy import stats

    assert result["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and result["note"] == ""


def test_equal_means_read_plus_zero():
    results = [_run("MF", sampler, seed, value) for sampler in ("RNS", "DNS") for seed, value in ((1, 0.2), (2, 0.3))]
    assert R._fmt_compare(R.compare(results, "MF", "DNS", "RNS", "ndcg@20")) == "+0.0% (p=n/a, n=2)"


def test_a_tie_for_the_best_id_based_sampler_goes_to_the_last_name():
    """best_id_based's docstring: of equal means, the last name in alphabetical order (MixGCF over DNS)."""
    summary = {("MF", s): {"ndcg@20": (0.3, 0.0)} for s in ("DNS", "MixGCF")}
    summary[("MF", "AHNS")] = {"ndcg@20": (0.2, 0.0)}
    assert R.best_id_based(summary, "MF", "ndcg@20") == "MixGCF"
    assert R.tied_with_best(summary, "MF", "ndcg@20", "MixGCF") == ["DNS"]
    summary[("MF", "DNS")] = {"ndcg@20": (0.3 - 5e-5, 0.0)}  # below the 4th decimal, but a different mean
    assert R.tied_with_best(summary, "MF", "ndcg@20", "MixGCF") == []


def test_a_sampler_without_the_metric_is_not_the_best():
    summary = {("MF", "DNS"): {"ndcg@20": (float("nan"), float("nan"))}, ("MF", "AHNS"): {"ndcg@20": (0.1, 0.0)}}
    assert R.best_id_based(summary, "MF", "ndcg@20") == "AHNS"
    summary.pop(("MF", "AHNS"))
    assert R.best_id_based(summary, "MF", "ndcg@20") is None


def test_fhn_columns_are_epoch_zero_and_the_best_checkpoint():
    run = _run("MF", "DNS", 1, 0.2, analysis={"fhn": {"rate": 0.2, "threshold": 0.99}},
               epochs=[{"epoch": 0, "train_time": 1.0, "fhn_rate": 0.5},
                       {"epoch": 1, "train_time": 1.0, "fhn_rate": 0.3}])
    text = R.markdown_report([run])
    assert "| MF | DNS | 1 | 50.00% | 20.00% |" in text and "(cosine > 0.99 " in text


SHIPPED_CSV = ("results/ml-100k", "results/ml-100k-ngcf", "results/ml-100k-sgl-hnlmrec")


@pytest.mark.parametrize("folder", [f for f in SHIPPED_CSV if os.path.isdir(os.path.join(REPO, f, "runs"))])
def test_a_shipped_runs_csv_is_rebuilt_unchanged(folder, tmp_path):
    """test_shipped_results compares table.md only: a wrong runs.csv (popularity columns, split prefix) passed."""
    shutil.copytree(os.path.join(REPO, folder, "runs"), tmp_path / "runs")
    R.write_csv(R.load_results(str(tmp_path)), str(tmp_path / "runs.csv"))
    with open(os.path.join(REPO, folder, "runs.csv"), "rb") as f:
        assert (tmp_path / "runs.csv").read_bytes() == f.read()


# ---------------------------------------------------------------- analysis.py

def test_popularity_ties_are_broken_by_id_and_groups_may_not_overlap():
    groups = A.popularity_groups(np.zeros(101, dtype=int))  # every item with 0 clicks: the id decides
    assert np.flatnonzero(groups["Unpopular"]).tolist() == list(range(1, 81))
    assert np.flatnonzero(groups["Popular"]).tolist() == list(range(96, 101))
    with pytest.raises(ValueError, match="overlap"):
        A.popularity_groups(np.arange(11), unpopular=0.8, popular=0.3)
    A.popularity_groups(np.arange(11), unpopular=0.8, popular=0.2)  # 8 + 2 = 10: no overlap
    # ml-100k's 1682 items: round(1345.6) = 1346 Unpopular, round(84.1) = 84 Popular (the shipped tables' sizes)
    groups = A.popularity_groups(np.arange(1683))
    assert [int(groups[g].sum()) for g in A.POPULARITY_GROUPS] == [1346, 252, 84]


def _random_case(seed=0, n_users=7, n_items=30, d=4):
    g = torch.Generator().manual_seed(seed)
    user_e, item_e = torch.randn(n_users, d, generator=g), torch.randn(n_items, d, generator=g)
    pairs = torch.randperm(n_users * (n_items - 1), generator=g)[:60]
    users, items = pairs // (n_items - 1), pairs % (n_items - 1) + 1
    exclude, test = (users[:40], items[:40]), (users[40:], items[40:])
    return user_e, item_e, exclude, test


def test_group_metrics_do_not_depend_on_the_user_batches():
    user_e, item_e, exclude, test = _random_case()
    groups = {"All": np.arange(30) > 0, "Low": (np.arange(30) > 0) & (np.arange(30) < 8)}
    one = A.group_metrics(user_e, item_e, exclude, test, groups, k=5, batch_users=1)
    assert one == A.group_metrics(user_e, item_e, exclude, test, groups, k=5, batch_users=512)


def test_group_metrics_mask_padding_and_skip_users_without_group_items():
    # item 0 (padding) scores highest; user 0's test items are all outside "Low"
    user_e, item_e = torch.ones(2, 1), torch.tensor([[9.0], [1.0], [2.0], [3.0]])
    test = (torch.tensor([0, 1]), torch.tensor([3, 1]))
    groups = {"All": np.array([False, True, True, True]), "Low": np.array([False, True, False, False])}
    out = A.group_metrics(user_e, item_e, (torch.tensor([], dtype=torch.long),) * 2, test, groups, k=1)
    assert out["All"]["recall@1"] == pytest.approx(0.5)  # user 0's top-1 is item 3, not the padding
    assert out["Low"]["n_users"] == 1 and out["Low"]["recall@1"] == 0.0 and not math.isnan(out["Low"]["ndcg@1"])
    # n_test counts the test pairs in the group, n_items its items (the report's "Groups:" line)
    assert (out["Low"]["n_test"], out["Low"]["n_items"]) == (1, 1)
    assert (out["All"]["n_test"], out["All"]["n_items"]) == (2, 3)


def test_fhn_rate_is_a_cosine_share_per_negative_and_batch_independent():
    item_e = torch.eye(5) * 0.5  # short embeddings: a dot product would stay below 0.99
    item_e[3] = item_e[2]  # two test items of user 0 with the same embedding
    test = (torch.tensor([0, 0, 1]), torch.tensor([2, 3, 4]))
    neg, users = torch.stack([item_e[2], item_e[2], item_e[1]]), torch.tensor([0, 1, 1])
    # user 0's negative matches two test items: one false negative; user 1's match none of user 1's
    for batch in (1, 1024):
        assert A.false_hard_negative_rate(neg, users, item_e, test, batch=batch) == (pytest.approx(1 / 3), 3)
    near = torch.tensor([[0.95, math.sqrt(1 - 0.95 ** 2), 0.0, 0.0, 0.0]])  # cosine 0.95 with item 0's direction
    rate, _ = A.false_hard_negative_rate(near, torch.tensor([0]), torch.eye(5), (torch.tensor([0]), torch.tensor([0])))
    assert rate == 0.0  # the default threshold is 0.99


def test_subsample_rounds_to_nearest():
    users = np.repeat(np.arange(1, 4), [3, 8, 6])  # 0.4 x (3, 8, 6) = 1.2, 3.2, 2.4: round, not ceil
    kept = np.bincount(users[A.subsample_per_user(users, 0.4, seed=0)], minlength=4)[1:]
    assert kept.tolist() == [1, 3, 2]


def test_fhn_probe_samples_in_eval_mode():
    """test_harness's probe test compares two probes that both ran in the same mode: a probe in training mode passed."""
    seen = []

    class Fake(torch.nn.Module):
        def hard_negatives(self, users, items):
            seen.append(self.training)
            return torch.eye(4)[items]

        def pooled_embeddings(self):
            seen.append(self.training)
            return torch.eye(3), torch.eye(4)

    test = (torch.tensor([0, 1]), torch.tensor([1, 2]))
    probe = A.FHNProbe(torch.tensor([0, 1, 2]), torch.tensor([1, 3, 3]), test, 3, 4, n_pairs=10, seed=0)
    model = Fake().train()
    assert probe(model) == pytest.approx(0.5) and seen == [False, False] and model.training


def test_subsample_ratio_zero_is_refused():
    with pytest.raises(ValueError, match="train ratio"):
        A.subsample_per_user(np.array([1, 1, 2]), 0.0, seed=0)


def test_equal_means_summed_in_another_order_read_plus_zero():
    """The shipped LightGCN grid's HNLMRec and RNS NDCG@20 both sum to 0.8524, but in floating point their means
    differ by 3e-17: the table printed "-0.0%" for a tie."""
    results = [_run("LightGCN", "RNS", seed, value) for seed, value in ((2020, 0.2856), (2021, 0.2836), (2022, 0.2832))]
    results += [_run("LightGCN", "HNLMRec", seed, value)
                for seed, value in ((2020, 0.2841), (2021, 0.283), (2022, 0.2853))]
    assert np.mean([0.2856, 0.2836, 0.2832]) != np.mean([0.2841, 0.283, 0.2853])  # the float noise is there
    assert R._fmt_compare(R.compare(results, "LightGCN", "HNLMRec", "RNS", "ndcg@20")).startswith("+0.0% (p=1,")
