"""Mutation-audit checks of the fine-tuned variant (§4.2-4.3): the MixGCF teacher file, the grouping and batching of
the fine-tuning examples, the InfoNCE steps (eq. 12) against a reference written from the documented recipe, the
resume state's cadence, the adapter's identity and reuse, the store's manifest and failures. Tiny random Llama, CPU."""
import json
import logging
import os
from dataclasses import replace

import pytest
import torch

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.finetune import PairTexts, TrainingGroup, _batches, train_hybrid_encoder, training_examples
from recbole_hnlm.llm.finetune_pipeline import (_adapter_refit_reason, adapter_identity, check_adapter_path,
                                                embed_pairs, finetuned_manifest)
from recbole_hnlm.llm.hybrid_encoder import SETTINGS_FILE, HybridPromptEncoder, PromptGroup
from recbole_hnlm.llm.models import load_causal_lm
from recbole_hnlm.llm.store import PairEmbeddingStore
from recbole_hnlm.llm.teacher import Teacher, check_replaceable_teacher, export_teacher
from test_llm_finetune import mini_recbole  # noqa: F401 (the dataset fixture, shared)


class HalfOfThePositive(torch.nn.Module):
    """A CF model whose 'hard negative' of (u, i) is half the positive item's embedding: no randomness, so the
    exported negatives can be checked row by row."""

    def __init__(self, n_users, n_items, dim=8):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.user, self.item = torch.randn(n_users, dim, generator=g), torch.randn(n_items, dim, generator=g)

    def pooled_embeddings(self):
        return self.user, self.item

    def hard_negatives(self, user_ids, pos_ids):
        assert user_ids.shape == pos_ids.shape
        return 0.5 * self.item[pos_ids]


class RandomMix(HalfOfThePositive):
    """A MixGCF-like draw: a random share of the positive mixed with a random item (uses torch's global RNG)."""

    def hard_negatives(self, user_ids, pos_ids):
        alpha = torch.rand(user_ids.shape[0], 1)
        return alpha * self.item[pos_ids] + (1 - alpha) * self.item[torch.randint(1, self.item.shape[0], pos_ids.shape)]


def exported_teacher(cf_class, dataset_and_train, tmp_path_factory):
    """The teacher file of a stand-in CF model ``cf_class`` over a dataset's training split, loaded."""
    dataset, train = dataset_and_train
    path = str(tmp_path_factory.mktemp("teacher") / "mini.hnlm-teacher.safetensors")
    export_teacher(cf_class(dataset.user_num, dataset.item_num), dataset, train, path)
    return Teacher.load(path)


@pytest.fixture(scope="module")
def teacher(mini_recbole, tmp_path_factory):
    return exported_teacher(RandomMix, mini_recbole, tmp_path_factory)


@pytest.fixture(scope="module")
def text(data_root, teacher):
    return DatasetText(data_root, "mini", teacher.token_pairs())


# ---------------------------------------------------------------------------------------------------- teacher file

def test_exported_negatives_are_the_models_for_each_pair_whatever_the_batch_size(mini_recbole, tmp_path):
    dataset, train = mini_recbole
    model = HalfOfThePositive(dataset.user_num, dataset.item_num)
    one = export_teacher(model, dataset, train, str(tmp_path / "a.safetensors"), batch_size=3)
    many = export_teacher(model, dataset, train, str(tmp_path / "b.safetensors"))
    a, b = Teacher.load(one), Teacher.load(many)
    assert a.neg_emb.shape[0] == a.pair_user.numel() == len(train._dataset.inter_feat)
    torch.testing.assert_close(a.neg_emb, 0.5 * a.item_emb[a.pair_item], rtol=0, atol=0)
    assert torch.equal(a.neg_emb, b.neg_emb) and torch.equal(a.pair_item, b.pair_item)


def test_export_draws_from_its_seed_and_leaves_the_callers_rng_alone(mini_recbole, tmp_path):
    dataset, train = mini_recbole
    model = RandomMix(dataset.user_num, dataset.item_num)
    torch.manual_seed(1)
    expected_next = torch.rand(3)
    torch.manual_seed(1)
    export_teacher(model, dataset, train, str(tmp_path / "a.safetensors"), seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream goes on as if nothing was drawn
    torch.manual_seed(99)
    export_teacher(model, dataset, train, str(tmp_path / "b.safetensors"), seed=7)
    a, b = Teacher.load(str(tmp_path / "a.safetensors")), Teacher.load(str(tmp_path / "b.safetensors"))
    assert torch.equal(a.neg_emb, b.neg_emb)  # the draws depend on the seed, not on the caller's RNG


def _small_teacher(**change):
    users, items = ["u1", "u2"], ["i1", "i2", "i3"]
    fields = dict(path="t", user_emb=torch.zeros(2, 4), item_emb=torch.zeros(3, 4), pair_user=torch.tensor([0, 1]),
                  pair_item=torch.tensor([2, 0]), neg_emb=torch.zeros(2, 4), user_tokens=users, item_tokens=items,
                  sha256="0" * 64)
    fields.update(change)
    return Teacher(**fields)


@pytest.mark.parametrize("change, message", [
    (dict(pair_user=torch.tensor([0, 2])), "pair_user out of range"),
    (dict(pair_item=torch.tensor([-1, 0])), "pair_item out of range"),
    (dict(pair_item=torch.tensor([3, 0])), "pair_item out of range"),
    (dict(neg_emb=torch.zeros(1, 4)), "lengths"),
    (dict(pair_item=torch.tensor([0])), "lengths"),
    (dict(neg_emb=torch.zeros(2, 5)), "embedding dims differ"),
])
def test_an_inconsistent_teacher_is_refused(change, message):
    _small_teacher().validate()
    with pytest.raises(ValueError, match=message):
        _small_teacher(**change).validate()


def test_only_a_teacher_or_a_damaged_file_is_replaced(tmp_path, teacher):
    from safetensors.torch import save_file

    check_replaceable_teacher(teacher.path)  # a teacher file: replaceable
    check_replaceable_teacher(str(tmp_path / "missing.safetensors"))
    store = str(tmp_path / "store.safetensors")
    save_file({"x": torch.zeros(1)}, store, metadata={"format": "recbole_hnlm/store/v1"})
    with pytest.raises(ConfigError, match="not a teacher"):
        check_replaceable_teacher(store)
    with pytest.raises(ConfigError, match="is a folder"):
        check_replaceable_teacher(str(tmp_path))


# ------------------------------------------------------------------------------------------ examples and batches

def _groups(*sizes):
    return [TrainingGroup(f"user {k}", list(range(10 * k, 10 * k + n)), ["t"] * n) for k, n in enumerate(sizes)]


def test_batches_close_once_they_hold_the_pair_budget_and_keep_the_rest():
    groups = _groups(4, 4, 3, 1, 2)
    sizes = lambda batches: [[len(g.rows) for g in b] for b in batches]  # noqa: E731
    assert sizes(_batches(groups, range(5), 8)) == [[4, 4], [3, 1, 2]]
    assert sizes(_batches(groups, [2, 3, 0, 1, 4], 4)) == [[3, 1], [4], [4], [2]]
    assert sizes(_batches(groups, [4, 2, 0, 3, 1], 6)) == [[2, 3, 4], [1, 4]]
    assert [g.user_text for b in _batches(groups, [4, 2, 0, 3, 1], 6) for g in b] == \
        ["user 4", "user 2", "user 0", "user 3", "user 1"]  # the order given, every group once


def test_training_groups_are_drawn_at_random_across_users_and_pairs(teacher, text):
    chosen_users, partitions = set(), set()
    for seed in range(5):
        cfg = LLMConfig.from_config({"hnlm_ft_max_train_pairs": 8, "hnlm_ft_pairs_per_user": 4, "hnlm_seed": seed})
        groups = training_examples(teacher, PairTexts(text, cfg), cfg)
        assert sum(len(g.rows) for g in groups) == 8
        chosen_users.add(frozenset(int(teacher.pair_user[g.rows[0]]) for g in groups))
        # every pair of the user with most pairs, cut into groups of 2: which pairs share a group depends on the seed
        cfg = LLMConfig.from_config({"hnlm_ft_max_train_pairs": 0, "hnlm_ft_pairs_per_user": 2, "hnlm_seed": seed})
        user = int(torch.mode(teacher.pair_user).values)
        partitions.add(frozenset(tuple(g.rows) for g in training_examples(teacher, PairTexts(text, cfg), cfg)
                                 if int(teacher.pair_user[g.rows[0]]) == user))
    assert len(chosen_users) > 1, "the same users' groups whatever the seed: groups are not drawn at random"
    assert len(partitions) > 1, "a user's pairs fall into the same groups whatever the seed: not shuffled"


def test_the_hybrid_prompt_shows_the_ft_history_most_recent_titles(data_root, teacher):
    cfg = LLMConfig.from_config({"hnlm_ft_history": 2, "hnlm_max_history": 15})
    text = DatasetText(data_root, "mini", teacher.token_pairs())
    user = next(u for u in teacher.user_tokens if len(text.user_history(u, 0)) >= 4)
    titles = [text.items[e.item].title for e in text.user_history(user, 0)][-2:]
    assert PairTexts(text, cfg).user_text(user) == "liked: " + "; ".join(titles)


def test_an_item_profile_in_the_hybrid_prompt_is_cut_to_profile_words(data_root, teacher):
    class Book:  # the profiles store's lookup: (kind, key) -> summary
        def summary(self, kind, key):
            return "one two three four five" if kind == "item" else "a user"

    cfg = LLMConfig.from_config({"hnlm_ft_item_text": "profile", "hnlm_profile_words": 3})
    text = DatasetText(data_root, "mini", teacher.token_pairs())
    assert PairTexts(text, cfg, Book()).item_text(teacher.item_tokens[0]) == " one two three"


# ------------------------------------------------------------------------------------------------ InfoNCE steps

def _eq12(query, positive, negatives, tau):
    """Eq. 12 written out: -log e^{cos(q_b,p_b)/τ} / (Σ_j e^{cos(q_b,p_j)/τ} + Σ_k e^{cos(q_b,n_bk)/τ}), mean over b."""
    cos = torch.nn.functional.cosine_similarity
    terms = []
    for b in range(query.shape[0]):
        scores = [cos(query[b], positive[j], dim=0) / tau for j in range(positive.shape[0])]
        if negatives is not None:
            scores += [cos(query[b], negatives[b, k], dim=0) / tau for k in range(negatives.shape[1])]
        scores = torch.stack(scores)
        terms.append(-(scores[b] - torch.logsumexp(scores, 0)))
    return torch.stack(terms).mean()


def _encoder(tiny_llama_dir, teacher):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)  # LoRA and MLP initialisation: two calls build the same encoder
    return HybridPromptEncoder(model, tokenizer, teacher.dim, 1, lora=dict(r=4, alpha=8, dropout=0.0))


def _reference_run(encoder, teacher, groups, cfg, steps):
    """The documented recipe, step by step: AdamW (no weight decay), one batch of all the groups per step, positives
    MLP_t(z_ui), explicit negatives MLP_t(e_j) of items drawn from a generator seeded with hnlm_seed, eq. 12,
    gradients clipped to norm 1."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.ft_lr, weight_decay=0.0)
    draw = torch.Generator().manual_seed(cfg.seed)
    rows = torch.tensor([r for g in groups for r in g.rows])
    encoder.train()
    losses = []
    for _ in range(steps):
        query = encoder.encode_groups([PromptGroup(g.user_text, teacher.user_emb[teacher.pair_user[g.rows[0]]],
                                                   g.item_texts, teacher.item_emb[teacher.pair_item[g.rows]])
                                       for g in groups])
        negatives = None
        if cfg.ft_explicit_negatives:
            items = torch.randint(0, teacher.item_emb.shape[0], (len(rows), cfg.ft_explicit_negatives), generator=draw)
            negatives = torch.stack([encoder.targets(teacher.item_emb[items[b]]) for b in range(len(rows))])
        loss = _eq12(query, encoder.targets(teacher.neg_emb[rows]), negatives, cfg.ft_tau)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _trainable(encoder):
    return {n: p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad}


def _group_of(teacher, text, cfg, user_row, size):
    texts = PairTexts(text, cfg)
    rows = [r for r in range(teacher.pair_user.numel()) if int(teacher.pair_user[r]) == user_row][:size]
    return TrainingGroup(texts.user_text(teacher.user_tokens[user_row]), rows,
                         [texts.item_text(teacher.item_tokens[int(teacher.pair_item[r])]) for r in rows])


@pytest.mark.parametrize("explicit", [0, 2], ids=["in_batch_only", "explicit_negatives"])
def test_fine_tuning_steps_follow_eq12_and_the_documented_recipe(tiny_llama_dir, teacher, text, explicit):
    """Two users' groups with in-batch negatives only (the loss does not depend on the order of the rows), or one
    group with explicit random-item negatives (one batch order): the losses of three steps and the weights after
    them are those of the reference."""
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 3, "hnlm_ft_batch_size": 8, "hnlm_ft_lr": 5e-3,
                                 "hnlm_ft_explicit_negatives": explicit, "hnlm_ft_lora_dropout": 0.0})
    users = [0, 1] if explicit == 0 else [2]
    groups = [_group_of(teacher, text, cfg, u, 4 if explicit == 0 else 3) for u in users]
    trained, reference = _encoder(tiny_llama_dir, teacher), _encoder(tiny_llama_dir, teacher)
    losses = train_hybrid_encoder(trained, teacher, groups, cfg, progress=False)
    expected = _reference_run(reference, teacher, groups, cfg, 3)
    assert len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(expected), rtol=1e-4, atol=1e-5)
    after, wanted = _trainable(trained), _trainable(reference)
    for name in wanted:
        torch.testing.assert_close(after[name], wanted[name], rtol=1e-3, atol=1e-5, msg=name)
    # max_steps stops early
    assert len(train_hybrid_encoder(_encoder(tiny_llama_dir, teacher), teacher, groups, cfg, progress=False,
                                    max_steps=1)) == 1


def test_a_batch_of_one_pair_is_no_step(tiny_llama_dir, teacher, text, caplog):
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 2, "hnlm_ft_batch_size": 1, "hnlm_ft_explicit_negatives": 1})
    assert train_hybrid_encoder(_encoder(tiny_llama_dir, teacher), teacher, [_group_of(teacher, text, cfg, 0, 1)],
                                cfg, progress=False) == []
    # nor is it counted in the steps the log announces (it said "step 10/20" here)
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 10, "hnlm_ft_batch_size": 1, "hnlm_ft_explicit_negatives": 0})
    groups = [_group_of(teacher, text, cfg, 0, 1), _group_of(teacher, text, cfg, 1, 2)]
    with caplog.at_level(logging.INFO, logger="recbole_hnlm.llm.finetune"):
        losses = train_hybrid_encoder(_encoder(tiny_llama_dir, teacher), teacher, groups, cfg, progress=False)
    assert len(losses) == 10 and "fine-tune step 10/10 loss" in caplog.text


def test_the_resume_state_is_saved_before_each_step_with_the_losses_before_it(tiny_llama_dir, teacher, text,
                                                                             tmp_path):
    from safetensors import safe_open
    from recbole_hnlm.llm.finetune_state import STATE_FILE

    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 3, "hnlm_ft_batch_size": 4})
    losses = train_hybrid_encoder(_encoder(tiny_llama_dir, teacher), teacher, [_group_of(teacher, text, cfg, 0, 4)],
                                  cfg, progress=False, work_dir=str(tmp_path / "work"), identity={"k": 1},
                                  save_every=0.0)
    with safe_open(str(tmp_path / "work" / STATE_FILE), framework="pt") as handle:
        header = json.loads(handle.metadata()["state"])
    assert header["next_batch"] == 2 and header["losses"] == losses[:2] and header["num_batches"] == 3


# ------------------------------------------------------------------------------------- adapter identity and reuse

def _identity(teacher, text, **settings):
    return adapter_identity(LLMConfig.from_config(settings), teacher, "tiny@abc", text)


@pytest.mark.parametrize("setting, value", [
    ("hnlm_ft_tau", 0.1), ("hnlm_ft_history", 3), ("hnlm_seed", 1), ("hnlm_dtype", "bfloat16"),
    ("hnlm_ft_pairs_per_user", 2), ("hnlm_ft_lr", 1e-3), ("hnlm_ft_batch_size", 8), ("hnlm_ft_epochs", 2),
    ("hnlm_ft_explicit_negatives", 3), ("hnlm_ft_lora_r", 8), ("hnlm_ft_soft_tokens", 2),
    ("hnlm_ft_item_text", "title"), ("hnlm_ft_max_train_pairs", 3), ("hnlm_ft_lora_dropout", 0.1),
])
def test_every_fine_tuning_setting_enters_the_adapter_identity(teacher, text, setting, value):
    assert _identity(teacher, text, **{setting: value}) != _identity(teacher, text)


def test_a_pair_budget_covering_every_teacher_pair_is_the_adapter_of_budget_0(teacher, text):
    """Both draw every pair (training_examples stops at the budget), so one adapter serves both settings."""
    pairs = teacher.pair_user.numel()
    every = _identity(teacher, text, hnlm_ft_max_train_pairs=0)
    assert _identity(teacher, text, hnlm_ft_max_train_pairs=pairs) == every
    assert _identity(teacher, text, hnlm_ft_max_train_pairs=pairs + 7) == every
    assert _identity(teacher, text, hnlm_ft_max_train_pairs=pairs - 1) != every


def test_the_teacher_the_training_pairs_and_profile_settings_enter_the_adapter_identity(teacher, text, data_root):
    base = _identity(teacher, text)
    assert _identity(replace(teacher, sha256="1" * 64), text) != base
    fewer = DatasetText(data_root, "mini", teacher.token_pairs()[:-1])
    assert _identity(teacher, fewer) != base
    profile = dict(hnlm_ft_user_text="profile")
    assert _identity(teacher, text, **profile, hnlm_profile_max_new_tokens=17) != _identity(teacher, text, **profile)


def test_an_adapter_folder_is_reused_only_with_its_identity(tmp_path, teacher, text):
    identity = _identity(teacher, text)
    folder = tmp_path / "adapter"
    assert _adapter_refit_reason(str(folder), identity) == ""
    folder.mkdir()
    (folder / SETTINGS_FILE).write_text(json.dumps(dict(identity, losses=[1.0], hidden=32)))
    assert _adapter_refit_reason(str(folder), identity) is None
    other = dict(identity, ft_lr=1e-3)
    reason = _adapter_refit_reason(str(folder), other)
    assert "ft_lr: 0.0002 -> 0.001" in reason and "fine-tuned again" in reason
    (folder / SETTINGS_FILE).write_text("{cut")
    assert "fine-tuned again" in _adapter_refit_reason(str(folder), identity)


def test_adapter_paths_that_fine_tuning_would_wipe_are_refused(tmp_path):
    check_adapter_path(str(tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    check_adapter_path(str(tmp_path / "empty"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / SETTINGS_FILE).write_text("{}")
    check_adapter_path(str(tmp_path / "adapter"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_adapter_path(str(tmp_path / "file"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("x")
    with pytest.raises(ConfigError, match="not an adapter folder"):
        check_adapter_path(str(tmp_path / "photos"))


def test_the_store_manifest_names_its_adapter_its_pair_subset_and_profile_prompt(teacher, text):
    cfg = LLMConfig.from_config({"hnlm_max_pairs": 5})
    pairs = text.select_pairs(cfg.max_pairs, cfg.seed)
    a = finetuned_manifest(cfg, text, pairs, "tiny@abc", teacher, "a" * 64)
    assert a["adapter_hash"] == "a" * 64 and a["max_pairs"] == 5
    assert finetuned_manifest(cfg, text, pairs, "tiny@abc", teacher, "b" * 64) != a
    every = LLMConfig.from_config({"hnlm_max_pairs": 10 ** 6})
    assert finetuned_manifest(every, text, text.pairs, "tiny@abc", teacher, "a" * 64)["max_pairs"] == 0
    profile = LLMConfig.from_config({"hnlm_ft_user_text": "profile"})
    assert "user_profile=" in finetuned_manifest(profile, text, pairs, "tiny@abc", teacher, "a" * 64)["prompt_version"]


# ------------------------------------------------------------------------------------------------- embed stage

def test_pairs_the_teacher_lacks_are_recorded_failures_and_the_rest_embedded(tiny_llama_dir, teacher, text, tmp_path):
    """A teacher without some items (and so without every item of one user) and without one user: their pairs get
    no row but a failure record with its reason, counted in the manifest; every other pair one row."""
    cfg = LLMConfig.from_config({"hnlm_chunk_size": 8})
    pairs = teacher.token_pairs()
    users = list(dict.fromkeys(u for u, _ in pairs))
    all_items_gone = {i for u, i in pairs if u == users[0]}  # user 0 keeps no item
    gone_items = all_items_gone | {pairs[-1][1]}
    gone_user = users[1]
    keep_items = [t for t in teacher.item_tokens if t not in gone_items]
    keep_users = [t for t in teacher.user_tokens if t != gone_user]
    small = replace(teacher, item_tokens=keep_items, user_tokens=keep_users,
                    item_emb=teacher.item_emb[[teacher.item_tokens.index(t) for t in keep_items]],
                    user_emb=teacher.user_emb[[teacher.user_tokens.index(t) for t in keep_users]])
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    encoder = HybridPromptEncoder(model, tokenizer, teacher.dim, 1).eval()
    store = str(tmp_path / "s.safetensors")
    manifest = finetuned_manifest(cfg, text, pairs, "tiny@abc", small, "a" * 64)
    embed_pairs(cfg, pairs, store, encoder, small, PairTexts(text, cfg), manifest, progress=False)
    expected_failures = {(u, i): "user not in teacher" if u == gone_user else "item not in teacher"
                         for u, i in pairs if u == gone_user or i in gone_items}
    with open(store + ".failures.jsonl", encoding="utf-8") as handle:
        failures = [json.loads(line) for line in handle]
    assert {(r["user"], r["item"]): r["error"] for r in failures} == expected_failures
    s = PairEmbeddingStore.open(store)
    assert s.manifest["num_failures"] == len(expected_failures) and s.manifest["num_requested"] == len(pairs)
    assert sorted(zip(s.user_tokens, s.item_tokens)) == sorted(p for p in pairs if p not in expected_failures)
    assert not os.path.exists(store + ".work")
