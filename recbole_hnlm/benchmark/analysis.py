r"""The paper's analysis modes, computed from a trained model's pooled embeddings with torch.

* **Popularity groups** (Figure 5b). Items (internal ids ``1..n_items-1``; id 0 is RecBole's padding) are sorted by
  their number of training interactions, ties broken by id: the bottom 80 % are *Unpopular*, the top 5 % *Popular*,
  the rest *Normal* (:func:`popularity_groups`). Every test user gets one full ranking of all items with their
  training and validation items masked, exactly like RecBole's full-sort test. For a group :math:`G` and a user
  :math:`u` with :math:`T_u \cap G \ne \emptyset` (:math:`T_u` the user's test items, :math:`R_u` the top-20):

  .. math::
      \mathrm{Recall}_G@20(u) = \frac{|R_u \cap T_u \cap G|}{|T_u \cap G|}, \qquad
      \mathrm{NDCG}_G@20(u) = \frac{\sum_{r=1}^{20} [R_u(r) \in T_u \cap G] / \log_2(r+1)}
                                  {\sum_{r=1}^{\min(20, |T_u \cap G|)} 1 / \log_2(r+1)}

  averaged over those users (:func:`group_metrics`). The group *All* (every item) equals RecBole's test
  Recall/NDCG@20, which the tests check.
* **Sparsity** (Figure 5a). Each user keeps ``max(1, round(ratio * n_u))`` of their ``n_u`` training interactions,
  chosen uniformly with ``numpy.random.default_rng(seed)`` (:func:`subsample_per_user`); validation, test and the
  evaluation mask are those of the full split (``runner.build_data``), so every ratio is scored on the same items.
* **False hard negatives** (Figure 6). A sampled negative is *false* when its pooled embedding has cosine
  :math:`> 0.99` with the pooled embedding of one of the user's test items (:func:`false_hard_negative_rate`). The
  negatives come from ``model.hard_negatives(user, pos)`` on a fixed, seeded sample of training pairs whose user has
  test items (:class:`FHNProbe`); the cosine (not the id) makes synthetic negatives (MixGCF, AHNS, HNLMRec)
  comparable with real ones.
"""
import numpy as np
import torch
import torch.nn.functional as F

#: Group names of Figure 5b, least to most popular.
POPULARITY_GROUPS = ("Unpopular", "Normal", "Popular")


def popularity_groups(train_counts, unpopular=0.8, popular=0.05):
    """Split the items by training clicks into Unpopular (bottom ``unpopular``), Popular (top ``popular``) and Normal.

    Args:
        train_counts (array [n_items]): training interactions per internal item id; index 0 (padding) is ignored.
        unpopular (float): share of items, least clicked first, in the Unpopular group. Default 0.8.
        popular (float): share of items, most clicked first, in the Popular group. Default 0.05.

    Returns:
        dict: group name -> bool mask ``[n_items]`` (padding id 0 is in no group); group sizes are
        ``round(unpopular * n)`` and ``round(popular * n)`` of the ``n = n_items - 1`` real items.

    Example:
        >>> groups = popularity_groups(np.arange(101))  # items 1..100 with 1..100 clicks
        >>> [int(groups[g].sum()) for g in POPULARITY_GROUPS]
        [80, 15, 5]
    """
    counts = np.asarray(train_counts)
    n = len(counts) - 1
    ids = np.arange(1, n + 1)
    order = ids[np.lexsort((ids, counts[1:]))]  # ascending clicks, ties by id
    n_unpopular, n_popular = int(round(unpopular * n)), int(round(popular * n))
    if n_unpopular + n_popular > n:
        raise ValueError(f"unpopular={unpopular} and popular={popular} overlap for {n} items")
    masks = {name: np.zeros(len(counts), dtype=bool) for name in POPULARITY_GROUPS}
    masks["Unpopular"][order[:n_unpopular]] = True
    masks["Normal"][order[n_unpopular:n - n_popular]] = True
    masks["Popular"][order[n - n_popular:]] = True
    return masks


def _batch_rows(users, batch_users):
    for start in range(0, len(users), batch_users):
        yield users[start:start + batch_users]


@torch.no_grad()
def group_metrics(user_e, item_e, exclude, test, groups, k=20, batch_users=512):
    """Recall@k and NDCG@k of a full ranking, per item group (see the module docstring for the formulas).

    Args:
        user_e (Tensor [n_users, d]), item_e (Tensor [n_items, d]): pooled embeddings; scores are dot products.
        exclude (tuple of LongTensor [E]): ``(users, items)`` masked from the ranking (training and validation).
        test (tuple of LongTensor [T]): ``(users, items)`` test interactions; the ranked users are the test users.
        groups (dict): group name -> bool mask ``[n_items]``.
        k (int): cut-off. Default 20.
        batch_users (int): users scored at once.

    Returns:
        dict: group name -> ``{"recall@k", "ndcg@k", "n_users", "n_items", "n_test"}``.
    """
    device = item_e.device
    n_users, n_items = user_e.shape[0], item_e.shape[0]
    ex_u, ex_i = (t.to(device) for t in exclude)
    te_u, te_i = (t.to(device) for t in test)
    masks = {name: torch.as_tensor(mask, device=device) for name, mask in groups.items()}
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))
    ideal = torch.cat([torch.zeros(1, device=device, dtype=torch.float64), discount.cumsum(0)])
    sums = {name: [0.0, 0.0, 0] for name in groups}
    row_of = torch.full((n_users,), -1, dtype=torch.long, device=device)
    for rows in _batch_rows(torch.unique(te_u), batch_users):
        row_of[rows] = torch.arange(len(rows), device=device)
        scores = user_e[rows] @ item_e.T
        scores[:, 0] = -torch.inf
        sel = row_of[ex_u] >= 0
        scores[row_of[ex_u[sel]], ex_i[sel]] = -torch.inf
        top = scores.topk(min(k, n_items), dim=1).indices
        positive = torch.zeros(len(rows), n_items, dtype=torch.bool, device=device)
        sel = row_of[te_u] >= 0
        positive[row_of[te_u[sel]], te_i[sel]] = True
        for name, mask in masks.items():
            pos_g = positive & mask.unsqueeze(0)
            n_pos = pos_g.sum(1)
            hits = pos_g.gather(1, top).double()
            keep = n_pos > 0
            if not bool(keep.any()):
                continue
            recall = hits.sum(1)[keep] / n_pos[keep]
            dcg = (hits * discount[:hits.shape[1]]).sum(1)[keep]
            ndcg = dcg / ideal[n_pos[keep].clamp(max=k)]
            sums[name][0] += float(recall.sum())
            sums[name][1] += float(ndcg.sum())
            sums[name][2] += int(keep.sum())
        row_of[rows] = -1
    out = {}
    for name, mask in masks.items():
        total_recall, total_ndcg, users = sums[name]
        in_group = mask[te_i]
        out[name] = {
            f"recall@{k}": total_recall / users if users else float("nan"),
            f"ndcg@{k}": total_ndcg / users if users else float("nan"),
            "n_users": users,
            "n_items": int(mask.sum()),
            "n_test": int(in_group.sum()),
        }
    return out


def subsample_per_user(users, ratio, seed):
    """Indices (sorted) of the interactions kept when every user keeps ``max(1, round(ratio * n_u))`` of their
    ``n_u`` interactions, chosen uniformly at random.

    Args:
        users (array [E]): user id of every training interaction.
        ratio (float): share kept, in ``(0, 1]``.
        seed (int): seed of the ``numpy.random.default_rng`` that picks them (independent of torch's RNG).

    Returns:
        ndarray [E'] of int64.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"train ratio must be in (0, 1], got {ratio}")
    users = np.asarray(users)
    if ratio == 1.0:
        return np.arange(len(users))
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))  # grouped by user, random order inside
    sorted_users = users[order]
    start = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.arange(len(users)) - start
    counts = np.bincount(users)
    quota = np.maximum(1, np.round(ratio * counts).astype(np.int64))
    return np.sort(order[rank < quota[sorted_users]])


@torch.no_grad()
def false_hard_negative_rate(neg_e, users, item_e, test, threshold=0.99, batch=1024):
    """Share of sampled negatives whose embedding has cosine ``> threshold`` with one of the user's test items.

    Args:
        neg_e (Tensor [B, d]): pooled embeddings of the sampled negatives.
        users (LongTensor [B]): the user each negative was drawn for.
        item_e (Tensor [n_items, d]): pooled item embeddings.
        test (tuple of LongTensor [T]): ``(users, items)`` test interactions.
        threshold (float): cosine threshold. Default 0.99 (the paper's).

    Returns:
        tuple: ``(rate, n)`` over the ``n`` negatives whose user has test items (``nan`` when ``n == 0``).
    """
    device = item_e.device
    te_u, te_i = (t.to(device) for t in test)
    n_users = int(max(int(users.max()) if len(users) else 0, int(te_u.max()) if len(te_u) else 0)) + 1
    has_test = torch.zeros(n_users, dtype=torch.bool, device=device)
    has_test[te_u] = True
    users = users.to(device)
    keep = has_test[users]
    neg_e, users = neg_e[keep], users[keep]
    if len(users) == 0:
        return float("nan"), 0
    item_n = F.normalize(item_e.double(), dim=1)
    row_of = torch.full((n_users,), -1, dtype=torch.long, device=device)
    false = 0
    for start in range(0, len(users), batch):
        u = users[start:start + batch]
        cos = F.normalize(neg_e[start:start + batch].double(), dim=1) @ item_n.T
        unique, inverse = torch.unique(u, return_inverse=True)
        row_of[unique] = torch.arange(len(unique), device=device)
        sel = row_of[te_u] >= 0
        positive = torch.zeros(len(unique), item_e.shape[0], dtype=torch.bool, device=device)
        positive[row_of[te_u[sel]], te_i[sel]] = True
        row_of[unique] = -1
        false += int(((cos > threshold) & positive[inverse]).any(1).sum())
    return false / len(users), int(len(users))


class FHNProbe:
    """Measures the false-hard-negative rate of a model's sampler on a fixed sample of training pairs.

    The sample (``n_pairs`` pairs whose user has test items, drawn once with ``torch.Generator().manual_seed(seed)``)
    is the same at every call, and each call restores torch's RNG state and the model's train/eval mode, so probing
    every epoch does not change the training run; the model is probed in eval mode (no dropout).

    Args:
        train_users, train_items (LongTensor [E]): training pairs the sample is drawn from.
        test (tuple of LongTensor): ``(users, items)`` test interactions.
        n_users, n_items (int): sizes of the id spaces.
        n_pairs (int): pairs in the sample (all eligible pairs when fewer).
        seed (int): seed of the sample. threshold (float): cosine threshold. device: where the model lives.
    """

    def __init__(self, train_users, train_items, test, n_users, n_items, n_pairs, seed, threshold=0.99, device="cpu"):
        has_test = torch.zeros(n_users, dtype=torch.bool)
        has_test[test[0]] = True
        eligible = has_test[train_users].nonzero(as_tuple=True)[0]
        generator = torch.Generator().manual_seed(int(seed))
        pick = eligible[torch.randperm(len(eligible), generator=generator)[:n_pairs]]
        self.users, self.items = train_users[pick].to(device), train_items[pick].to(device)
        self.test = test
        self.threshold = threshold
        self.n_pairs = int(len(pick))

    @torch.no_grad()
    def __call__(self, model, batch=1024):
        from recbole_hnlm.benchmark.runner import preserved_rng

        if self.n_pairs == 0:
            return float("nan")
        training = model.training
        model.eval()  # as at the best checkpoint's probe: no dropout (NGCF's message_dropout)
        try:
            with preserved_rng():
                negatives = torch.cat([model.hard_negatives(self.users[s:s + batch], self.items[s:s + batch])
                                       for s in range(0, self.n_pairs, batch)])
                _, item_e = model.pooled_embeddings()
        finally:
            model.train(training)
        rate, _ = false_hard_negative_rate(negatives, self.users, item_e, self.test, self.threshold)
        return rate
