"""Backbone formulas against plain dense references: NGCF's layers (official code's order) and SGL's contrastive
loss."""
import pytest
import torch
import torch.nn.functional as F


def build(fast_config, model_name, **extra):
    """The backbone on the ml-100k slice with RNS, its first training batch, and its training dataset."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.lightgcn import LightGCN
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.model.ngcf import NGCF
    from recbole_hnlm.model.sgl import SGL

    config = Config(model=model_name, config_dict={**fast_config, "sampler": "RNS", **extra})
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = {"MF": MF, "LightGCN": LightGCN, "NGCF": NGCF, "SGL": SGL}[model_name](config, train_data._dataset)
    return model, next(iter(train_data)), train_data._dataset


def dense_normalized_adjacency(model, dataset):
    """D^-1/2 A D^-1/2 of the training graph, built densely from the training pairs (independent of the ops)."""
    n = model.n_users + model.n_items
    users, items = model.training_pairs(dataset)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    adjacency[users, model.n_users + items] = 1.0
    adjacency[model.n_users + items, users] = 1.0
    degree = adjacency.sum(1)
    scale = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    return scale[:, None] * adjacency * scale[None, :]


@pytest.mark.parametrize("model_name,sampler", [("MF", "RNS"), ("LightGCN", "RNS"), ("LightGCN", "DNS")])
def test_the_training_loss_is_bpr_plus_l2_of_the_ego_embeddings(fast_config, model_name, sampler):
    """calculate_loss against the formula written out in float64: mean_b sum_n softplus(s_bn - s_b+) over the pooled
    embeddings (LightGCN eq. 4: the mean of D^-1/2 A D^-1/2 powers, built densely) plus reg_weight / (2B) times the
    squared norms of the batch's ego embeddings (user, positive, negatives). DNS(M, N=M) with shi_sum enters every
    candidate, so its negatives are the candidates drawn again from the same seed. A flipped sign or an averaged
    shi_sum passed every earlier test."""
    extra = {} if sampler == "RNS" else dict(sampler="DNS", dns_candidates=4, dns_topn=4, dns_variant="shi_sum")
    model, batch, dataset = build(fast_config, model_name, **extra)
    user, pos = batch[model.USER_ID], batch[model.ITEM_ID]
    torch.manual_seed(7)
    got = model.calculate_loss(batch)
    if sampler == "RNS":
        neg = batch[model.NEG_ITEM_ID][:, None]
    else:
        torch.manual_seed(7)
        neg = model.candidate_generator(user, 4)
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double()
    pooled = ego
    if model_name == "LightGCN":
        a_hat, layer, layers = dense_normalized_adjacency(model, dataset), ego, [ego]
        for _ in range(model.n_layers):
            layer = a_hat @ layer
            layers.append(layer)
        pooled = torch.stack(layers).mean(0)
    offset = model.n_users
    u, i, j = pooled[user], pooled[offset + pos], pooled[offset + neg]
    bpr = F.softplus((u[:, None] * j).sum(-1) - (u * i).sum(-1, keepdim=True)).sum(1).mean()
    reg = model.reg_weight * (ego[user].pow(2).sum() + ego[offset + pos].pow(2).sum()
                              + ego[offset + neg].pow(2).sum()) / (2 * user.shape[0])
    assert neg.shape == (user.shape[0], 1 if sampler == "RNS" else 4) and float(reg) > 0
    assert torch.isclose(got.double(), bpr + reg, rtol=1e-5, atol=0), (float(got), float(bpr + reg))


def dense_layers(model, dataset, ego):
    """Layers 0..K of LightGCN written out densely (the ego embeddings alone for MF)."""
    layers = [ego]
    if model.__class__.__name__ == "LightGCN":
        a_hat = dense_normalized_adjacency(model, dataset)
        for _ in range(model.n_layers):
            layers.append(a_hat @ layers[-1])
    return torch.stack(layers, dim=1)  # [N, K+1, d]


@pytest.mark.parametrize("model_name,sampler", [("MF", "MixGCF"), ("LightGCN", "MixGCF"), ("LightGCN", "AHNS")])
def test_loss_and_gradients_with_hard_negatives_match_the_formulas(fast_config, model_name, sampler):
    """calculate_loss and its gradients against the samplers written out in float64 on dense LightGCN layers:
    MixGCF (algorithms.md §3: per layer, alpha e_i + (1 - alpha) e_c for each candidate, the argmax against the pooled
    user, the chosen layers mean-pooled; the ego term is layer 0 of the mixed negative) and AHNS (the candidate whose
    score is nearest beta (s+ + alpha)^(p+1)). The gradients reach the positive through the mixing, the chosen
    candidates and every layer; a detached stack, sum pooling, K-1 layers or the loader's negative in the L2 term
    passed every earlier test."""
    m = 8
    extra = dict(sampler=sampler, mixgcf_candidates=m) if sampler == "MixGCF" else dict(sampler=sampler,
                                                                                        ahns_candidates=m)
    model, batch, dataset = build(fast_config, model_name, **extra)
    user, pos = batch[model.USER_ID], batch[model.ITEM_ID]
    torch.manual_seed(7)
    loss = model.calculate_loss(batch)
    loss.backward()
    torch.manual_seed(7)  # the same draws, in the model's order: candidates, then MixGCF's alpha
    cand = model.candidate_generator(user, m)
    alpha = torch.rand(len(user), model.n_layers + 1 if model_name == "LightGCN" else 1).double()

    user_w = model.user_embedding.weight.detach().double().requires_grad_()
    item_w = model.item_embedding.weight.detach().double().requires_grad_()
    ego = torch.cat([user_w, item_w])
    stack = dense_layers(model, dataset, ego)
    pooled = stack.mean(1)
    offset, rows = model.n_users, torch.arange(len(user))
    u, i = pooled[user], pooled[offset + pos]
    if sampler == "MixGCF":
        query = u.detach()
        pos_layers, cand_layers = stack[offset + pos], stack[offset + cand]  # [B, L, d], [B, M, L, d]
        mixed = alpha[:, None, :, None] * pos_layers[:, None] + (1 - alpha[:, None, :, None]) * cand_layers
        best = (query[:, None, None, :] * mixed).sum(-1).argmax(1)  # [B, L]: per layer, over the candidates
        neg_layers = mixed[rows[:, None], best, torch.arange(mixed.shape[2])[None, :]]  # [B, L, d]
        neg, neg_ego = neg_layers.mean(1), neg_layers[:, 0]
    else:
        with torch.no_grad():
            target = model.sampler.beta * ((u * i).sum(-1) + model.sampler.alpha).pow(model.sampler.p + 1)
            scores = (u.detach()[:, None] * pooled.detach()[offset + cand]).sum(-1)
            chosen = cand[rows, (scores - target[:, None]).abs().argmin(1)]
        neg, neg_ego = pooled[offset + chosen], ego[offset + chosen]
    bpr = F.softplus((u * neg).sum(-1) - (u * i).sum(-1)).mean()
    reg = model.reg_weight * (ego[user].pow(2).sum() + ego[offset + pos].pow(2).sum() + neg_ego.pow(2).sum()) / (
        2 * len(user))
    expected = bpr + reg
    expected.backward()
    assert torch.isclose(loss.detach().double(), expected.detach(), rtol=1e-5, atol=0), (float(loss), float(expected))
    for got, want in ((model.user_embedding.weight.grad, user_w.grad), (model.item_embedding.weight.grad, item_w.grad)):
        scale = float(want.abs().max())
        assert scale > 0 and float((got.double() - want).abs().max()) <= 1e-4 * scale


@pytest.mark.parametrize("self_loop", [True, False])
def test_ngcf_carries_the_unnormalised_layer_and_stores_the_normalised_one(fast_config, self_loop):
    """E(l+1) = LeakyReLU(W1((Â+I)E(l)) + W2(ÂE(l) ⊙ E(l))) (NGCF eq. 8) from the *unnormalised* E(l), as the
    official NGCF and MixGCF code carry it; each stored layer is L2-normalised. Float64, dropout off, three layers.
    ``self_loop=False``: W1(ÂE(l)), the neighbours only, as MixGCF's and AHNS's NGCF code."""
    model, _, dataset = build(fast_config, "NGCF", message_dropout=0.3, self_loop=self_loop)
    model.eval()
    a_hat = dense_normalized_adjacency(model, dataset)
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double()
    expected, x = [ego], ego
    for w1, w2 in zip(model.w1, model.w2):
        side = a_hat @ x
        x = F.leaky_relu(F.linear(side + x if self_loop else side, w1.weight.double(), w1.bias.double())
                         + F.linear(side * x, w2.weight.double(), w2.bias.double()), negative_slope=0.2)
        expected.append(x / x.norm(dim=1, keepdim=True).clamp_min(1e-12))
    with torch.no_grad():
        emb = model.propagate(with_layers=True)
    got = torch.cat([emb.user_layers, emb.item_layers]).double()
    assert len(model.w1) == 3 and got.shape[1] == 4
    for layer in range(4):
        assert torch.allclose(got[:, layer], expected[layer], rtol=1e-4, atol=1e-5), f"layer {layer}"
    assert torch.allclose(torch.cat([emb.user, emb.item]).double(), torch.cat(expected, dim=1), rtol=1e-4, atol=1e-5)


def test_ngcf_message_dropout_only_in_training(fast_config):
    model, _, _ = build(fast_config, "NGCF", message_dropout=0.5)
    model.eval()
    with torch.no_grad():
        first, second = model.propagate(with_layers=False).user, model.propagate(with_layers=False).user
    assert torch.equal(first, second)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model.propagate(with_layers=False).user, first)


def test_ngcf_biases_are_xavier_rows_as_in_the_official_code(fast_config):
    """nn.Linear's default U(±1/√d) biases matched neither the official code ([1, d] Xavier rows) nor RecBole (0)."""
    model, _, _ = build(fast_config, "NGCF")
    for linear in [*model.w1, *model.w2]:
        bound = (6 / (1 + linear.out_features)) ** 0.5
        largest = float(linear.bias.detach().abs().max())
        assert 1.5 / linear.in_features ** 0.5 < largest <= bound  # beyond nn.Linear's bound


def test_ngcf_node_dropout_drops_edges_in_training_only(fast_config):
    """RecBole's ``node_dropout`` was accepted and ignored. In training, the first layer's neighbour sum is that of
    Â with whole edges dropped and the kept values scaled by 1/(1-p); in eval mode it is Â's."""
    model, _, dataset = build(fast_config, "NGCF", node_dropout=0.4, self_loop=False)
    a_hat = dense_normalized_adjacency(model, dataset)
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    seen = []
    original = model.propagate.__globals__["spmm"]

    def recording_spmm(graph, x):
        seen.append(graph)
        return original(graph, x)

    model.propagate.__globals__["spmm"] = recording_spmm
    try:
        model.eval()
        with torch.no_grad():
            model.propagate(with_layers=False)
        model.train()
        with torch.no_grad():
            model.propagate(with_layers=False)
            model.propagate(with_layers=False)
    finally:
        model.propagate.__globals__["spmm"] = original
    evaluated, first, second = seen[0], seen[3], seen[6]  # three layers per propagation
    assert torch.equal(evaluated.to_dense(), a_hat.float())
    dropped = first.to_dense().double()
    assert torch.equal(dropped, dropped.T)  # whole edges: the ops' backward uses the graph as its transpose
    kept = dropped != 0
    assert torch.allclose(dropped[kept], a_hat[kept] / 0.6, rtol=1e-6)
    assert 0.55 < kept.sum() / (a_hat != 0).sum() < 0.65  # ~(1 - p) of the edges
    assert not torch.equal(first.to_dense(), second.to_dense())  # redrawn at every propagation
    assert all(graph is first for graph in seen[3:6])  # one draw for the layers of a propagation
    side = first.to_dense() @ ego  # the first layer's input, as computed from the drawn graph
    assert torch.allclose(original(first, ego), side, atol=1e-6)


def reference_info_nce(view1, view2, index, tau):
    """Eq. 10 of SGL as a cross-entropy: row ``index[b]`` of view 1 must pick row ``index[b]`` of view 2 (mean)."""
    logits = F.normalize(view1[index], dim=1) @ F.normalize(view2, dim=1).T / tau
    return F.cross_entropy(logits, index)


def test_sgl_info_nce_is_the_batch_mean_of_eq10():
    gen = torch.Generator().manual_seed(7)
    from recbole_hnlm.model.sgl import SGL

    for n, d, batch, tau in [(50, 8, 16, 0.2), (7, 3, 40, 0.5), (200, 64, 1, 1.0)]:
        view1 = torch.randn(n, d, dtype=torch.float64, generator=gen)
        view2 = torch.randn(n, d, dtype=torch.float64, generator=gen)
        index = torch.randint(0, n, (batch,), generator=gen)
        got = SGL.info_nce(view1, view2, index, tau)
        assert torch.allclose(got, reference_info_nce(view1, view2, index, tau), rtol=1e-12, atol=1e-12)


def test_sgl_contrastive_loss_keeps_its_scale_with_the_batch_size(fast_config):
    """BPR is a batch mean, so the weighted InfoNCE must be one too: doubling the batch by repeating it leaves both
    terms unchanged (a summed InfoNCE would double and outweigh BPR by a factor of the batch size)."""
    model, batch, _ = build(fast_config, "SGL", ssl_weight=0.3, ssl_tau=0.2)
    model.on_epoch_start(0)  # draws the two views, fixed for the epoch; RNS uses the batch's own negatives
    bpr, ssl = model.calculate_loss(batch)

    from recbole.data.interaction import Interaction

    doubled = Interaction({key: torch.cat([batch[key], batch[key]]) for key in batch.interaction})
    bpr2, ssl2 = model.calculate_loss(doubled)
    assert torch.allclose(ssl2, ssl, rtol=1e-5) and torch.allclose(bpr2, bpr, rtol=1e-5)

    user, pos = batch[model.USER_ID], batch[model.ITEM_ID]
    view1 = model.propagate_graph(model.views[0], with_layers=False)
    view2 = model.propagate_graph(model.views[1], with_layers=False)
    expected = 0.3 * (reference_info_nce(view1.user[1:], view2.user[1:], user - 1, 0.2)
                      + reference_info_nce(view1.item[1:], view2.item[1:], pos - 1, 0.2))
    assert torch.allclose(ssl, expected, rtol=1e-5)
    assert ssl.item() < 10 * bpr.item()  # same order as BPR at initialisation, not ~B times larger


def test_sgl_contrastive_loss_leaves_out_the_padding_id(fast_config):
    """Eq. 10's denominators run over users and items; RecBole's padding id 0 is neither. Moving the padding rows of
    both views onto a batch user's (item's) row, which would add a big term to every denominator, changes nothing."""
    model, batch, _ = build(fast_config, "SGL", ssl_weight=1.0, ssl_tau=0.2)
    model.on_epoch_start(0)
    user, pos = batch[model.USER_ID], batch[model.ITEM_ID]
    assert bool((user > 0).all()) and bool((pos > 0).all())
    _, ssl = model.calculate_loss(batch)
    with torch.no_grad():
        model.user_embedding.weight[0] = 10 * model.user_embedding.weight[user[0]]
        model.item_embedding.weight[0] = 10 * model.item_embedding.weight[pos[0]]
    _, moved = model.calculate_loss(batch)
    assert torch.equal(moved, ssl)


@pytest.mark.parametrize("augmentation", ["ED", "ND"])
def test_sgl_views_drop_edges_of_the_training_graph(fast_config, augmentation):
    """Each view keeps a subset of the training edges: ED drops each edge with drop_ratio, ND each node (and so an
    edge survives when both its ends do, (1 - rho)^2). rho = 0.1: 0.5 could not tell keep from drop, and the edge
    share could not tell ND's 'either end dropped' from 'both ends dropped'. Two views per epoch, drawn anew each
    epoch."""
    rho = 0.1
    model, _, _ = build(fast_config, "SGL", type=augmentation, drop_ratio=rho)
    full_edges = set(_graph_edges(model.graph))
    torch.manual_seed(3)
    kept = []
    for _ in range(3):
        edges = _graph_edges(model.augmented_graph())
        assert set(edges) <= full_edges and len(set(edges)) == len(edges)
        kept.append(len(edges) / len(full_edges))
    share = (1 - rho) if augmentation == "ED" else (1 - rho) ** 2
    # the mean of three views; ED: binomial over the edges, ND: node draws (hub nodes move many edges at once),
    # far from the 0.99 that dropping only edges with both ends dropped would keep
    tolerance = 0.01 if augmentation == "ED" else 0.05
    assert abs(sum(kept) / len(kept) - share) < tolerance, (kept, share)
    model.on_epoch_start(0)
    first = [_graph_edges(view) for view in model.views]
    assert first[0] != first[1]  # two views, not one twice
    model.on_epoch_start(1)
    assert [_graph_edges(view) for view in model.views] != first  # drawn again each epoch


def _graph_edges(graph):
    """The graph's stored (row, col) entries, sorted."""
    rows = graph.row_indices().tolist()
    return sorted(zip(rows, graph.col.tolist()))


@pytest.mark.parametrize("model_name", ["MF", "LightGCN"])
def test_exported_random_negatives_are_never_training_positives(fast_config, model_name):
    """``hard_negatives`` with RNS (the analysis' and a teacher's export) draws as the training loader does: uniform
    over the items that are not the user's training positives."""
    model, _, dataset = build(fast_config, model_name)
    model.eval()
    users, items = model.training_pairs(dataset)
    positives = set(zip(users.tolist(), items.tolist()))
    busiest = torch.bincount(users).topk(5).indices  # the users a blind draw would hit most often
    user = busiest.repeat_interleave(400)
    torch.manual_seed(0)
    pooled = model.hard_negatives(user, torch.ones_like(user))
    _, item_table = model.pooled_embeddings()
    drawn = torch.cdist(pooled.double(), item_table.double()).argmin(1)  # the item each returned row belongs to
    assert torch.allclose(pooled, item_table[drawn])
    hits = sum((u, i) in positives for u, i in zip(user.tolist(), drawn.tolist()))
    assert hits == 0
    assert (drawn >= 1).all() and len(set(drawn.tolist())) > model.n_items // 3  # spread over the catalogue


@pytest.mark.parametrize("variant,top_n", [("shi_sum", 3), ("single", 1)])
def test_exported_dns_negative_is_the_hardest_candidate(fast_config, variant, top_n):
    """``hard_negatives`` under DNS exports the candidate the pooled user scores highest: for ``shi_sum`` the first
    of its top-N (an export of the N-th passed every earlier test). The candidates are drawn again from the same
    seed."""
    model, batch, _ = build(fast_config, "LightGCN", sampler="DNS", dns_candidates=8, dns_topn=top_n,
                            dns_variant=variant)
    model.eval()
    user, pos = batch[model.USER_ID][:64], batch[model.ITEM_ID][:64]
    torch.manual_seed(3)
    exported = model.hard_negatives(user, pos)
    torch.manual_seed(3)
    candidates = model.candidate_generator(user, 8)
    user_table, item_table = model.pooled_embeddings()
    scores = (user_table[user][:, None, :] * item_table[candidates]).sum(-1)
    assert (scores.topk(2, dim=1).values[:, 0] > scores.topk(2, dim=1).values[:, 1]).all()  # no ties to blur it
    hardest = candidates.gather(1, scores.argmax(1, keepdim=True))[:, 0]
    assert torch.allclose(exported, item_table[hardest], rtol=0, atol=0)


def test_ranking_keeps_full_precision_under_a_bfloat16_layer_stack(fast_config):
    """``layers_dtype: bfloat16`` stores only MixGCF's layer stack in bfloat16: the embeddings ``forward`` ranks with
    (full_sort_predict) are the float32 mean of the layers, within float32 rounding of the dense float64 mean, not
    bfloat16's 3 significant digits (ranking from the stored stack passed every earlier test)."""
    model, _, dataset = build(fast_config, "LightGCN", sampler="MixGCF", layers_dtype="bfloat16")
    model.eval()
    user_e, item_e = model.forward()
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double()
    expected = dense_layers(model, dataset, ego).mean(1)
    got = torch.cat([user_e, item_e]).double()
    assert user_e.dtype == item_e.dtype == torch.float32
    error = (got - expected).abs().max() / expected.abs().max()
    assert error < 1e-5, float(error)  # bfloat16's rounding is ~4e-3


def test_exported_negatives_follow_the_negative_warm_up(fast_config):
    """Inside the warm-up ``hard_negatives`` returns what training draws then (uniform items, never positives);
    after the switch, the sampler's (MixGCF's mixtures, which are no item's row)."""
    model, _, dataset = build(fast_config, "LightGCN", sampler="MixGCF", negative_warmup_epochs=2)
    model.eval()
    user = torch.arange(1, 41)
    _, item_table = model.pooled_embeddings()

    def nearest(pooled):
        distance, item = torch.cdist(pooled.double(), item_table.double()).min(1)
        return distance, item

    model.on_epoch_start(1)
    distance, drawn = nearest(model.hard_negatives(user, torch.ones_like(user)))
    assert float(distance.max()) < 1e-6  # item rows
    positives = set(zip(*(t.tolist() for t in model.training_pairs(dataset))))
    assert not any((u, i) in positives for u, i in zip(user.tolist(), drawn.tolist()))
    model.on_epoch_start(2)
    distance, _ = nearest(model.hard_negatives(user, torch.ones_like(user)))
    assert float(distance.min()) > 1e-6  # mixtures of the positive and the candidates


@pytest.mark.parametrize("sampler,key", [("DNS", "dns_candidates"), ("MixGCF", "mixgcf_candidates"),
                                         ("AHNS", "ahns_candidates")])
def test_more_candidates_than_items_is_warned_about(fast_config, sampler, key, caplog):
    """Candidates are drawn from the items (id 0 is padding), with replacement: M up to the item count runs without
    a word, more runs with a warning (a dataset smaller than a sampler's default M still trains)."""
    model, _, dataset = build(fast_config, "LightGCN", sampler=sampler, **{key: 8})
    n_items = dataset.item_num - 1
    caplog.clear()
    model, _, _ = build(fast_config, "LightGCN", sampler=sampler, **{key: n_items})
    assert model.sampler.n_candidates == n_items and "exceeds" not in caplog.text
    model, _, _ = build(fast_config, "LightGCN", sampler=sampler, **{key: n_items + 1})
    assert model.sampler.n_candidates == n_items + 1
    assert f"'{key}' = {n_items + 1} exceeds the {n_items} items of dataset 'ml-slice'" in caplog.text
    assert f"at least 1 of them repeat an item; candidates beyond {n_items} add only repeats" in caplog.text


@pytest.mark.parametrize("model_name", ["MF", "NGCF", "LightGCN", "SGL"])
def test_inference_scores_follow_the_weights(fast_config, model_name):
    """``predict`` and ``full_sort_predict`` agree, and the cached pooled embeddings they share are dropped by
    ``eval()``/``train()`` and by loading weights: a graph backbone served the old scores after its weights changed
    (MF followed them only because its cache shares the weights' storage)."""
    from recbole.data.interaction import Interaction

    model, batch, _ = build(fast_config, model_name)
    model.eval()
    users = torch.arange(1, 6)
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
        items = torch.arange(model.n_items).repeat(len(users))
        pointwise = model.predict(Interaction({"user_id": users.repeat_interleave(model.n_items), "item_id": items}))
    assert torch.allclose(full.flatten(), pointwise, rtol=1e-5, atol=1e-6)

    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.item_embedding.weight.mul_(-1.0)
    model.eval()
    with torch.no_grad():
        flipped = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    assert not torch.allclose(flipped, full)
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1), full)
    assert model.other_parameter() == {}  # nothing of the cache goes into a checkpoint


def test_sgl_without_its_contrastive_term_is_lightgcn_and_propagates_no_view(fast_config):
    """ssl_weight = 0 propagated both views and computed both InfoNCE terms every batch, to multiply them by 0 (an
    SGL epoch took 1.5x LightGCN's for LightGCN's numbers). The views are still drawn, so the random stream and the
    numbers are those of earlier runs."""
    sgl, batch, _ = build(fast_config, "SGL", ssl_weight=0.0)
    lightgcn, _, _ = build(fast_config, "LightGCN")
    lightgcn.load_state_dict(sgl.state_dict(), strict=False)
    sgl.on_epoch_start(0)
    propagated = []
    propagate_graph = sgl.propagate_graph
    sgl.propagate_graph = lambda *args, **kwargs: propagated.append(1) or propagate_graph(*args, **kwargs)
    loss = sgl.calculate_loss(batch)
    assert torch.is_tensor(loss) and torch.equal(loss, lightgcn.calculate_loss(batch))
    assert len(propagated) <= 1  # the training graph's own propagation only, if it goes through propagate_graph


@pytest.mark.parametrize("model_name, extra", [
    ("MF", {}), ("LightGCN", dict(sampler="DNS", dns_candidates=4, dns_topn=1)),
    ("SGL", dict(sampler="DNS", dns_candidates=4, dns_topn=1)), ("SGL", dict(ssl_weight=0.0))])
def test_the_loss_columns_match_the_terms_the_loss_returns(fast_config, caplog, model_name, extra):
    """One name per term calculate_loss returns, whatever the backbone and sampler; a single loss (RecBole's
    train_loss column alone) is not announced, nor the same columns again."""
    import logging

    model, batch, _ = build(fast_config, model_name, **extra)
    caplog.set_level(logging.INFO)
    model.on_epoch_start(0)
    loss = model.calculate_loss(batch)
    names = model.loss_names()
    assert len(names) == (len(loss) if isinstance(loss, tuple) else 1), names
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loss columns")]
    assert len(said) == (len(names) > 1), said
    caplog.clear()
    model.on_epoch_start(1)  # the same columns: not said again every epoch
    assert not [r for r in caplog.records if r.getMessage().startswith("loss columns")]


def test_training_without_the_epoch_hooks_is_said_once(fast_config, caplog):
    """RecBole's own Trainer never calls on_epoch_start: negative_warmup_epochs was ignored without a word (a helper's
    MF + DNS run sampled hard negatives in its warm-up epoch) and SGL kept one pair of views. The first loss computed
    before the hook names the plugin's trainer; a model the hooks reach says nothing."""
    import logging

    caplog.set_level(logging.WARNING)
    model, batch, _ = build(fast_config, "MF", negative_warmup_epochs=1)
    model.calculate_loss(batch)
    model.calculate_loss(batch)
    said = [r.getMessage() for r in caplog.records if "ran before on_epoch_start" in r.getMessage()]
    assert len(said) == 1 and "recbole_hnlm.utils.get_trainer" in said[0] and "negative_warmup_epochs" in said[0]
    caplog.clear()
    model, batch, _ = build(fast_config, "MF", negative_warmup_epochs=1)
    model.on_epoch_start(0)
    model.calculate_loss(batch)
    assert model.warming_up and not [r for r in caplog.records if "ran before on_epoch_start" in r.getMessage()]


def test_ngcf_with_mixgcf_pools_like_its_pooled_embeddings_and_trains(fast_config):
    """NGCF with MixGCF ran in no test: its layers pooled in the wrong order (concatenation) or a global query
    passed unseen."""
    model, batch, _ = build(fast_config, "NGCF", sampler="MixGCF", mixgcf_candidates=4, message_dropout=0.0)
    emb = model.propagate(with_layers=True)
    assert torch.equal(emb.pool(emb.user_layers), emb.user) and torch.equal(emb.pool(emb.item_layers), emb.item)
    assert emb.layerwise_query
    model.on_epoch_start(0)
    loss = model.calculate_loss(batch)
    assert torch.isfinite(loss).all()


def test_ngcf_loss_is_bpr_plus_l2_of_the_ego_embeddings(fast_config):
    """The loss of NGCF (concatenated layers) in float64: an L2 term on the wrong item rows passed unseen."""
    model, batch, _ = build(fast_config, "NGCF", message_dropout=0.0, reg_weight=1.0)  # a visible L2 term
    model.on_epoch_start(0)
    user, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    got = model.calculate_loss(batch)
    with torch.no_grad():
        emb = model.propagate(with_layers=False)
        u, i, j = emb.user[user].double(), emb.item[pos].double(), emb.item[neg].double()
        ego_u, ego_i = model.user_embedding.weight.double(), model.item_embedding.weight.double()
    bpr = F.softplus((u * j).sum(-1) - (u * i).sum(-1)).mean()
    reg = model.reg_weight * (ego_u[user].pow(2).sum() + ego_i[pos].pow(2).sum() + ego_i[neg].pow(2).sum()) \
        / (2 * len(user))
    assert torch.isclose(got.double(), bpr + reg, rtol=1e-5, atol=0)


def test_ngcf_with_unequal_hidden_sizes(fast_config):
    """Layers of unequal widths never trained: the width pairs and the pooled width (HNLMRec's adapter output on
    NGCF) went unchecked."""
    model, batch, _ = build(fast_config, "NGCF", hidden_size_list=[48, 32])
    emb = model.propagate(with_layers=False)
    assert emb.user.shape[1] == model.embedding_size + 48 + 32
    settings = {"embedding_size": model.embedding_size, "hidden_size_list": [48, 32]}
    assert model.pooled_size(settings) == emb.user.shape[1]  # HNLMRec's adapter maps into this width


def test_negative_warm_up_trains_on_the_loaders_negative(fast_config):
    """The negative warm-up trains BPR on the loader's negative (a warm-up scoring the positive as its negative
    passed unseen)."""
    model, batch, _ = build(fast_config, "MF", sampler="DNS", negative_warmup_epochs=1)
    model.on_epoch_start(0)
    assert model.warming_up
    user, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    got = model.calculate_loss(batch)
    u, e = model.user_embedding.weight.detach().double(), model.item_embedding.weight.detach().double()
    bpr = F.softplus((u[user] * e[neg]).sum(-1) - (u[user] * e[pos]).sum(-1)).mean()
    reg = model.reg_weight * (u[user].pow(2).sum() + e[pos].pow(2).sum() + e[neg].pow(2).sum()) / (2 * len(user))
    assert torch.isclose(got.double(), bpr + reg, rtol=1e-6, atol=0)
