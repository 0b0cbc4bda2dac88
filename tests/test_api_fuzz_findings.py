"""Python-API fuzz findings outside recbole_hnlm.ops: a negative id scored as the last user/item (predict,
full_sort_predict, the DNS/AHNS/MixGCF hard negatives) and pid_alive(0) answering True (kill(0) signals the caller's
process group); top_k's k checks are in test_recommend_output.py."""
import os
import sys

import pytest
import torch

from recbole_hnlm.files import pid_alive

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "model"))
from test_backbones import build  # noqa: E402


@pytest.mark.parametrize("model_name", ["MF", "LightGCN"])
def test_predict_and_full_sort_predict_refuse_a_negative_user_id(fast_config, model_name):
    """predict / full_sort_predict indexed the pooled tables: user -1 returned the last user's scores, no error
    (gather_rows, which the training loss uses, documents a negative id as an error)."""
    model, _, _ = build(fast_config, model_name)
    model.eval()
    last = model.n_users - 1
    with torch.no_grad():
        good = model.full_sort_predict({model.USER_ID: torch.tensor([last])})
        assert good.shape == (model.n_items,)
        with pytest.raises(IndexError):
            model.full_sort_predict({model.USER_ID: torch.tensor([-1])})
        with pytest.raises(IndexError):
            model.predict({model.USER_ID: torch.tensor([-1]), model.ITEM_ID: torch.tensor([2])})
        with pytest.raises(IndexError):
            model.predict({model.USER_ID: torch.tensor([1]), model.ITEM_ID: torch.tensor([-1])})
        score = model.predict({model.USER_ID: torch.tensor([last]), model.ITEM_ID: torch.tensor([2])})
        torch.testing.assert_close(score, good[2:3])


@pytest.mark.parametrize("sampler,extra", [("DNS", {"dns_candidates": 4}), ("AHNS", {"ahns_candidates": 4}),
                                           ("MixGCF", {"mixgcf_candidates": 4})])
def test_hard_negatives_refuse_a_negative_user_id(fast_config, sampler, extra):
    """The samplers indexed emb.user[ctx.user]: hard_negatives(user=-1) scored the candidates for the last user."""
    model, _, _ = build(fast_config, "LightGCN", sampler=sampler, **extra)
    model.on_epoch_start(0)
    assert model.hard_negatives(torch.tensor([1]), torch.tensor([2])).shape[0] == 1
    with pytest.raises(IndexError):
        model.hard_negatives(torch.tensor([-1]), torch.tensor([2]))


@pytest.mark.skipif(os.name == "nt", reason="pid_alive is always True on Windows")
def test_pid_alive_is_false_for_pids_no_process_has():
    """os.kill(0, 0) signals the caller's process group, so pid_alive(0) said True: a name marker or temporary file
    naming pid 0 counted as held by a live run for good."""
    assert pid_alive(0) is False
    assert pid_alive(os.getpid()) is True
