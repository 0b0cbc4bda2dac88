"""The backbones against RecBole 1.2.1's own models of the same name, on the same weights and the same batch (its
negatives included): LightGCN is RecBole's LightGCN with ``require_pow: True`` (the squared L2 of the MixGCF/AHNS
code, docs/usage.md), MF is RecBole's BPR when its L2 term is off (BPR has none). NGCF and SGL depart from RecBole's
on purpose (docs/usage.md "Comparing with RecBole's own models"); their formulas are tested in test_backbones.py."""
import sys

import pytest
import torch


def skip_without_recboles_graph(recbole_name):
    """RecBole 1.2.1's LightGCN builds its graph with ``dok_matrix._update``, gone in scipy 1.13: setup.py admits any
    scipy >= 1.11 (our backbones build the graph in torch), so there the reference cannot be built; skip, not fail."""
    import scipy
    from scipy.sparse import dok_matrix

    if recbole_name == "LightGCN" and not hasattr(dok_matrix, "_update"):
        pytest.skip(f"RecBole 1.2.1's LightGCN needs dok_matrix._update, which scipy {scipy.__version__} lacks "
                    "(removed in 1.13; docs/install.md)")


def build_pair(fast_config, monkeypatch, model_name, recbole_name, extra, recbole_extra):
    """(our model, RecBole's model with our initial weights copied in, the first training batch)."""
    skip_without_recboles_graph(recbole_name)
    from recbole.config import Config as RecBoleConfig
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model as recbole_model
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.utils import get_model

    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # RecBole's Config reads "--key=value" from the command line
    settings = {**fast_config, "embedding_size": 32, "n_layers": 3, **extra}
    config = Config(model=model_name, config_dict={**settings, "sampler": "RNS"})
    recbole_config = RecBoleConfig(model=recbole_name, config_dict={**settings, **recbole_extra})
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    ours = get_model(model_name)(config, train_data._dataset)
    theirs = recbole_model(recbole_name)(recbole_config, train_data._dataset)
    with torch.no_grad():
        theirs.user_embedding.weight.copy_(ours.user_embedding.weight)
        theirs.item_embedding.weight.copy_(ours.item_embedding.weight)
    ours.on_epoch_start(0)
    return ours, theirs, next(iter(train_data))


def relative_difference(got, want):
    return float((got - want).abs().max()) / float(want.abs().max())


@pytest.mark.parametrize("model_name, recbole_name, extra, recbole_extra", [
    ("LightGCN", "LightGCN", {"reg_weight": 1e-4}, {"require_pow": True}),
    ("LightGCN", "LightGCN", {"reg_weight": 0.0}, {}),
    ("MF", "BPR", {"reg_weight": 0.0}, {}),
])
def test_the_backbone_trains_and_scores_as_recboles_model(fast_config, monkeypatch, model_name, recbole_name, extra,
                                                          recbole_extra):
    """Loss, the embedding tables' gradients, and full-sort scores equal RecBole's up to float32 rounding (RecBole's
    BPRLoss adds 1e-10 inside its log: 1e-9 relative). A changed normalisation, layer count, pooling or L2 form
    shows at 1e-3 or more (the unsquared L2 of RecBole's default require_pow moves the loss by 1e-5 relative and
    the gradients by 5e-3, measured)."""
    ours, theirs, batch = build_pair(fast_config, monkeypatch, model_name, recbole_name, extra, recbole_extra)
    with torch.no_grad():  # scores away from 0 (not so far that BPRLoss's 1e-10 inside its log counts)
        for model in (ours, theirs):
            model.user_embedding.weight.mul_(4)
            model.item_embedding.weight.mul_(4)
    our_loss, their_loss = ours.calculate_loss(batch), theirs.calculate_loss(batch)
    assert abs(our_loss.item() - their_loss.item()) <= 1e-6 * abs(their_loss.item()), (our_loss, their_loss)
    our_loss.backward()
    their_loss.backward()
    for name in ("user_embedding", "item_embedding"):
        got, want = getattr(ours, name).weight.grad, getattr(theirs, name).weight.grad
        assert relative_difference(got, want) <= 1e-5, name
    ours.eval(), theirs.eval()
    with torch.no_grad():
        users = {ours.USER_ID: batch[ours.USER_ID][:64]}
        from recbole.data.interaction import Interaction

        got, want = ours.full_sort_predict(Interaction(users)), theirs.full_sort_predict(Interaction(users))
    assert got.shape == want.shape and relative_difference(got, want) <= 1e-5


def test_recboles_default_unsquared_l2_is_a_different_objective(fast_config, monkeypatch):
    """The one documented difference from RecBole's LightGCN: its default ``require_pow: False`` takes the L2 norms
    unsquared. The losses differ by exactly the two L2 terms' difference, reg_weight / B times the sum over the
    batch's ego rows of ||e||^2 / 2 - ||e|| (RecBole's EmbLoss: the norm of each table's batch rows)."""
    ours, theirs, batch = build_pair(fast_config, monkeypatch, "LightGCN", "LightGCN", {"reg_weight": 1e-2},
                                     {"require_pow": False})
    rows = [ours.user_embedding.weight[batch[ours.USER_ID]].detach(),
            ours.item_embedding.weight[batch[ours.ITEM_ID]].detach(),
            ours.item_embedding.weight[batch[ours.NEG_ITEM_ID]].detach()]
    squared = sum(float(r.double().pow(2).sum()) for r in rows) / 2
    unsquared = sum(float(torch.linalg.vector_norm(r.double())) for r in rows)  # RecBole: a norm per table's rows
    expected = 1e-2 * (squared - unsquared) / len(batch)
    got = float(ours.calculate_loss(batch).detach()) - float(theirs.calculate_loss(batch).detach())
    assert abs(got - expected) <= 1e-3 * abs(expected), (got, expected)
