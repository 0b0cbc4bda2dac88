"""Mutation-audit checks of the fine-tuning's resume state (``finetune_state.py``: what it holds, what it puts back,
which states it refuses and removes) and of what the first audit of ``finetune.py`` / ``finetune_pipeline.py`` left
open: the save cadence, train/eval modes, the seeded batch order, the prompt texts, the adapter identity, the failure
reasons. Tiny random Llama, CPU."""
import json
import logging
import os
import random
import stat

import pytest
import torch

from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.llm import finetune_state
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.finetune import PairTexts, TrainingGroup, train_hybrid_encoder, training_examples
from recbole_hnlm.llm.finetune_pipeline import (_adapter_refit_reason, adapter_identity, check_teacher_split,
                                                embed_pairs, ensure_finetuned, finetuned_manifest)
from recbole_hnlm.llm.finetune_state import (STATE_FILE, FineTuneProgress, discard_finetune_state,
                                             load_finetune_state, save_finetune_state)
from recbole_hnlm.llm.hybrid_encoder import HYBRID_TEMPLATE, SETTINGS_FILE, HybridPromptEncoder
from recbole_hnlm.llm.models import load_causal_lm
from recbole_hnlm.llm.prompts import PromptTemplate
from recbole_hnlm.llm.store import PairEmbeddingStore
import test_finetune_checks
import test_llm_finetune
from test_finetune_checks import exported_teacher
from test_llm_finetune import StandInCF

mini_recbole = test_llm_finetune.mini_recbole  # the dataset fixture, shared


@pytest.fixture(scope="module")
def teacher(mini_recbole, tmp_path_factory):
    return exported_teacher(StandInCF, mini_recbole, tmp_path_factory)


text = test_finetune_checks.text  # the prompt texts of this module's teacher's pairs, shared


@pytest.fixture(scope="module")
def lm(tiny_llama_dir):
    return tiny_llama_dir


def _encoder(model_dir, seed=0, dropout=0.0):
    """A fresh LoRA encoder on a tiny Llama of its own (LoRA is put into the model it wraps)."""
    model, tokenizer, _ = load_causal_lm(model_dir, device="cpu")
    torch.manual_seed(seed)
    return HybridPromptEncoder(model, tokenizer, 8, 1, lora=dict(r=4, alpha=8, dropout=dropout))


@pytest.fixture
def encoder(lm):
    return _encoder(lm)


def _trainable(encoder):
    return {n: p for n, p in encoder.named_parameters() if p.requires_grad}


def _stepped(encoder, steps=2, seed=0):
    """AdamW as fine-tuning builds it, after ``steps`` real steps on a loss touching every trainable weight."""
    params = list(_trainable(encoder).values())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(((p - torch.randn(p.shape, generator=g)) ** 2).sum() for p in params).backward()
        optimizer.step()
    return optimizer


def _step_all(encoder, optimizer):
    params = list(_trainable(encoder).values())
    optimizer.zero_grad()
    sum((p ** 2).sum() + torch.rand(()) * p.sum() for p in params).backward()  # draws from torch's generator
    optimizer.step()


IDENTITY = dict(teacher_hash="a" * 64, ft_lr=2e-4, profile_prompts={"user_profile": "v1"}, shape=(1, 2))


def _save(work, encoder, optimizer, draw, progress=FineTuneProgress(3, [2.5, 2.25, 2.0]), num_batches=7,
          identity=IDENTITY):
    save_finetune_state(str(work), identity, encoder, optimizer, draw, progress, num_batches)
    return str(work / STATE_FILE)


# -------------------------------------------------------------------------------------------- what a state holds

def test_a_state_puts_back_weights_moments_position_and_both_random_streams(lm, encoder, tmp_path):
    """Saved after two steps and loaded into a fresh encoder of other weights: the next step, the next torch draw and
    the next negatives draw are those the saving run would have made, bit for bit; the progress is the saved one."""
    optimizer = _stepped(encoder)
    draw = torch.Generator().manual_seed(5)
    torch.rand(3, generator=draw)
    torch.manual_seed(11)
    _save(tmp_path / "w", encoder, optimizer, draw)
    expected_draw, expected_torch = torch.rand(4, generator=draw), torch.rand(4)
    torch.manual_seed(11)
    _step_all(encoder, optimizer)
    expected = {n: p.detach().clone() for n, p in _trainable(encoder).items()}

    other = _encoder(lm, seed=1)
    assert any(not torch.equal(p, _trainable(encoder)[n]) for n, p in _trainable(other).items())
    other_optimizer = torch.optim.AdamW(list(_trainable(other).values()), lr=1e-2, weight_decay=0.0)
    other_draw = torch.Generator().manual_seed(99)
    torch.manual_seed(12345)
    progress = load_finetune_state(str(tmp_path / "w"), IDENTITY, other, other_optimizer, other_draw, 7)
    assert progress == FineTuneProgress(3, [2.5, 2.25, 2.0]) and type(progress.next_batch) is int
    state = torch.get_rng_state()
    assert torch.equal(torch.rand(4, generator=other_draw), expected_draw) and torch.equal(torch.rand(4),
                                                                                          expected_torch)
    for p in _trainable(other).values():
        assert int(other_optimizer.state[p]["step"]) == 2
    torch.set_rng_state(state)
    torch.manual_seed(11)  # as the saving run did after saving
    _step_all(other, other_optimizer)
    for name, p in _trainable(other).items():
        assert torch.equal(p, expected[name]), name


def test_a_state_holds_the_trainable_weights_and_their_moments_not_the_frozen_llm(encoder, tmp_path):
    from safetensors import safe_open

    optimizer = _stepped(encoder, steps=1)
    path = _save(tmp_path / "w", encoder, optimizer, torch.Generator())
    with safe_open(path, framework="pt") as handle:
        keys, header = set(handle.keys()), json.loads(handle.metadata()["state"])
    trainable = set(_trainable(encoder))
    assert {k[len("param."):] for k in keys if k.startswith("param.")} == trainable
    assert {k for k in keys if k.startswith("optim.")} == {f"optim.{n}.{s}" for n in trainable
                                                          for s in ("step", "exp_avg", "exp_avg_sq")}
    assert header["next_batch"] == 3 and header["losses"] == [2.5, 2.25, 2.0] and header["num_batches"] == 7
    assert os.listdir(tmp_path / "w") == [STATE_FILE]  # no temporary file left beside it
    # written as the project's other results: readable as the umask allows (safetensors alone makes 0600 files)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_no_state_is_no_resume_without_a_word_and_discarding_nothing_is_no_error(encoder, tmp_path, caplog):
    optimizer = torch.optim.AdamW(list(_trainable(encoder).values()))
    with caplog.at_level(logging.INFO, logger="recbole_hnlm.llm.finetune_state"):
        assert load_finetune_state(str(tmp_path / "none"), IDENTITY, encoder, optimizer, torch.Generator(), 7) is None
    assert not [r for r in caplog.records if r.name.endswith("finetune_state")]  # no "cannot be read" warning
    assert not os.path.exists(tmp_path / "none")
    discard_finetune_state(str(tmp_path / "none"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x").write_text("x")
    discard_finetune_state(str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_the_state_is_saved_at_most_every_five_minutes_as_documented():
    assert finetune_state.SAVE_EVERY_SECONDS == 5 * 60  # docs/llm.md: "saved at most every 5 minutes"


def test_resuming_logs_the_one_based_batch_it_goes_on_from(encoder, tmp_path, caplog):
    optimizer = _stepped(encoder, steps=1)
    _save(tmp_path / "w", encoder, optimizer, torch.Generator())
    with caplog.at_level(logging.INFO, logger="recbole_hnlm.llm.finetune_state"):
        load_finetune_state(str(tmp_path / "w"), IDENTITY, encoder, optimizer, torch.Generator(), 7)
    assert f"resuming from {tmp_path / 'w' / STATE_FILE} at batch 4/7" in caplog.text


# ----------------------------------------------------------------------------------------- which states are kept

@pytest.mark.parametrize("wanted, num_batches, named", [
    (dict(IDENTITY, ft_lr=1e-3), 7, "(ft_lr)"),
    (dict(IDENTITY, ft_tau=0.1), 7, "(ft_tau)"),  # a setting the state did not record
    ({k: v for k, v in IDENTITY.items() if k != "ft_lr"}, 7, "(ft_lr)"),  # one the run no longer records
    (IDENTITY, 8, "(num_batches)"),
])
def test_a_state_of_other_settings_or_data_is_discarded_with_their_names(encoder, tmp_path, caplog, wanted,
                                                                         num_batches, named):
    optimizer = _stepped(encoder, steps=1)
    _save(tmp_path / "w", encoder, optimizer, torch.Generator())
    before = {n: p.detach().clone() for n, p in _trainable(encoder).items()}
    with torch.no_grad():
        for p in _trainable(encoder).values():
            p.add_(1.0)
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.finetune_state"):
        assert load_finetune_state(str(tmp_path / "w"), wanted, encoder, optimizer, torch.Generator(),
                                   num_batches) is None
    assert f"is not continued: it had other settings or data {named}; fine-tuning afresh" in caplog.text
    assert not os.path.exists(tmp_path / "w")
    assert all(torch.equal(p, before[n] + 1.0) for n, p in _trainable(encoder).items())  # nothing put back


def test_an_identity_with_tuples_resumes_its_own_state(encoder, tmp_path):
    """JSON reads tuples back as lists: the same settings are the same identity."""
    optimizer = _stepped(encoder, steps=1)
    _save(tmp_path / "w", encoder, optimizer, torch.Generator())
    assert load_finetune_state(str(tmp_path / "w"), IDENTITY, encoder, optimizer, torch.Generator(), 7) is not None


def _rewrite(path, drop=(), metadata=None, change=None, reshape=False):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, framework="pt") as handle:
        tensors, header = {k: handle.get_tensor(k) for k in handle.keys()}, json.loads(handle.metadata()["state"])
    for key in [k for k in tensors if any(k.startswith(d) for d in drop)][:1]:
        del tensors[key]
    if reshape:  # the same settings, another model behind the generator's name
        first = next(k for k in sorted(tensors) if k.startswith("param."))
        tensors[first] = torch.zeros(1)
    if change:
        header = change(header)
    save_file(tensors, path, metadata=metadata if metadata is not None else {"state": json.dumps(header)})


def _without(key):
    return lambda header: {k: v for k, v in header.items() if k != key}


@pytest.mark.parametrize("damage, reason", [
    (lambda p: _rewrite(p, metadata={"state": "{cut"}), "cannot be read (JSONDecodeError"),
    (lambda p: _rewrite(p, metadata={}), "is not a fine-tuning state of this version"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, format="hnlm-finetune-state/0")),
     "is not a fine-tuning state of this version"),
    (lambda p: _rewrite(p, change=_without("identity")), "other settings or data (ft_lr, profile_prompts, shape, "
                                                         "teacher_hash)"),
    (lambda p: _rewrite(p, drop=["param."]), "lacks trainable weights"),
    (lambda p: _rewrite(p, reshape=True), "has shape (1,), this model's"),
    (lambda p: _rewrite(p, change=_without("next_batch")), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, next_batch="3")), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, losses=2.0)), "lacks its position or random streams"),
    (lambda p: _rewrite(p, drop=["rng.draw"]), "lacks its position or random streams"),
    (lambda p: _rewrite(p, drop=["rng.torch"]), "lacks its position or random streams"),
    (lambda p: (os.remove(p), os.mkdir(p)), "cannot be read"),
    # these crashed (AttributeError, ValueError) or trained the last batch first (next_batch -1)
    (lambda p: _rewrite(p, change=lambda h: dict(h, identity=["teacher_hash"])),
     "other settings or data (ft_lr, profile_prompts, shape, teacher_hash)"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, next_batch=-1)), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, next_batch=8)), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, next_batch=True)), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, losses=[2.5, "x"])), "lacks its position or random streams"),
    (lambda p: _rewrite(p, change=lambda h: dict(h, losses=[[2.5]])), "lacks its position or random streams"),
], ids=["metadata_not_json", "no_metadata", "other_format", "no_identity", "weight_missing", "weight_reshaped",
        "no_next_batch", "next_batch_text", "losses_not_list", "no_draw_stream", "no_torch_stream", "a_folder",
        "identity_a_list", "next_batch_negative", "next_batch_past_the_end", "next_batch_bool", "loss_text",
        "loss_a_list"])
def test_a_damaged_state_is_named_and_fine_tuned_afresh(encoder, tmp_path, caplog, damage, reason):
    """An edited or cut state is no crash: its reason is warned, nothing is put back and the folder goes."""
    optimizer = _stepped(encoder, steps=1)
    path = _save(tmp_path / "w", encoder, optimizer, torch.Generator())
    damage(path)
    before = {n: p.detach().clone() for n, p in _trainable(encoder).items()}
    fresh = torch.optim.AdamW(list(_trainable(encoder).values()))
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.finetune_state"):
        assert load_finetune_state(str(tmp_path / "w"), IDENTITY, encoder, fresh, torch.Generator(), 7) is None
    assert reason in caplog.text and "fine-tuning afresh" in caplog.text
    assert not os.path.exists(tmp_path / "w") and not fresh.state
    assert all(torch.equal(p, before[n]) for n, p in _trainable(encoder).items())


# -------------------------------------------------------------------------------- train_hybrid_encoder (gaps)

def _group_of(teacher, text, cfg, user_row, size):
    texts = PairTexts(text, cfg)
    rows = [r for r in range(teacher.pair_user.numel()) if int(teacher.pair_user[r]) == user_row][:size]
    return TrainingGroup(texts.user_text(teacher.user_tokens[user_row]), rows,
                         [texts.item_text(teacher.item_tokens[int(teacher.pair_item[r])]) for r in rows])


def test_no_state_is_saved_before_the_first_batch_and_one_is_saved_before_the_next(lm, teacher, text, tmp_path):
    """With no time limit (save_every 0): one batch in all writes no state (nothing to resume); two write one
    before the second, holding the first step's loss."""
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 1, "hnlm_ft_batch_size": 2, "hnlm_ft_explicit_negatives": 0})
    groups = [_group_of(teacher, text, cfg, 0, 2)]
    train_hybrid_encoder(_encoder(lm), teacher, groups, cfg, progress=False, work_dir=str(tmp_path / "one"),
                         identity={"k": 1}, save_every=0.0)
    assert not os.path.exists(tmp_path / "one")
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 2, "hnlm_ft_batch_size": 2, "hnlm_ft_explicit_negatives": 0})
    losses = train_hybrid_encoder(_encoder(lm), teacher, groups, cfg, progress=False, work_dir=str(tmp_path / "two"),
                                  identity={"k": 1}, save_every=0.0)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "two" / STATE_FILE), framework="pt") as handle:
        header = json.loads(handle.metadata()["state"])
    assert header["next_batch"] == 1 and header["losses"] == losses[:1] and header["identity"] == {"k": 1}


def test_fine_tuning_trains_with_dropout_on_and_leaves_the_encoder_in_eval_mode(lm, teacher, text):
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 1, "hnlm_ft_batch_size": 2, "hnlm_ft_explicit_negatives": 0})
    encoder = _encoder(lm, dropout=0.5).eval()
    modes = []
    handle = encoder.body.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    try:
        train_hybrid_encoder(encoder, teacher, [_group_of(teacher, text, cfg, 0, 2)], cfg, progress=False)
    finally:
        handle.remove()
    assert modes == [True] and not encoder.training and not encoder.body.training


def _shuffled(seed, n):
    """The order train_hybrid_encoder draws its first epoch's groups in (random.Random(hnlm_seed))."""
    rows = list(range(n))
    random.Random(seed).shuffle(rows)
    return rows


def test_the_batch_order_is_drawn_from_hnlm_seed(lm, teacher, text):
    """Three one-batch groups: the same seed gives the same losses, seeds whose shuffles differ other ones (the order
    needs no resume state only because it comes from the seed)."""
    a = 0
    b = next(s for s in range(1, 50) if _shuffled(s, 3)[0] != _shuffled(a, 3)[0])

    def losses(seed):
        cfg = LLMConfig.from_config({"hnlm_ft_epochs": 1, "hnlm_ft_batch_size": 2, "hnlm_ft_explicit_negatives": 0,
                                     "hnlm_seed": seed, "hnlm_ft_lr": 1e-2})
        groups = [_group_of(teacher, text, cfg, u, 2) for u in range(3)]
        return train_hybrid_encoder(_encoder(lm), teacher, groups, cfg, progress=False, max_steps=1)

    assert losses(a) == losses(a) and losses(a) != losses(b)


def test_max_steps_counts_steps_not_the_one_pair_batches_skipped(lm, teacher, text):
    """A one-pair group first in the seeded order is no step, and does not use up max_steps."""
    seed = next(s for s in range(50) if _shuffled(s, 2)[0] == 0)
    cfg = LLMConfig.from_config({"hnlm_ft_epochs": 1, "hnlm_ft_batch_size": 1, "hnlm_ft_explicit_negatives": 0,
                                 "hnlm_seed": seed})
    groups = [_group_of(teacher, text, cfg, 0, 1), _group_of(teacher, text, cfg, 1, 2)]
    assert len(train_hybrid_encoder(_encoder(lm), teacher, groups, cfg, progress=False, max_steps=1)) == 1


def test_no_examples_is_a_value_error(lm, teacher):
    with pytest.raises(ValueError, match="no fine-tuning examples"):
        train_hybrid_encoder(_encoder(lm), teacher, [], LLMConfig.from_config({}), progress=False)


# ------------------------------------------------------------------------------------ examples and prompt texts

def test_a_pair_budget_met_exactly_draws_no_empty_group(teacher, text):
    for seed in range(3):
        cfg = LLMConfig.from_config({"hnlm_ft_max_train_pairs": 4, "hnlm_ft_pairs_per_user": 2, "hnlm_seed": seed})
        groups = training_examples(teacher, PairTexts(text, cfg), cfg)
        assert sum(len(g.rows) for g in groups) == 4 and all(g.rows and g.item_texts for g in groups)


def test_a_user_without_history_has_no_text_and_no_training_pairs(data_root, teacher):
    """Their prompt would be empty: the pairs are left out, not filled with something else."""
    pairs = teacher.token_pairs()
    gone = pairs[0][0]
    text = DatasetText(data_root, "mini", [p for p in pairs if p[0] != gone])
    cfg = LLMConfig.from_config({})
    texts = PairTexts(text, cfg)
    assert texts.user_text(gone) is None
    groups = training_examples(teacher, texts, cfg)
    assert groups and all(teacher.user_tokens[int(teacher.pair_user[g.rows[0]])] != gone for g in groups)


class Book:
    """The profiles store's lookup, (kind, key) -> summary or None (a failed or missing profile)."""

    def __init__(self, users=None, items=None):
        self.users, self.items = users or {}, items or {}

    def summary(self, kind, key):
        return (self.users if kind == "user" else self.items).get(key)


def test_item_texts_per_ft_item_text(teacher, text):
    item = teacher.item_tokens[0]
    info = text.items[item]
    none = LLMConfig.from_config({})
    assert none.ft_item_text == "none" and PairTexts(text, none).item_text(item) == ""
    title = PairTexts(text, LLMConfig.from_config({"hnlm_ft_item_text": "title"})).item_text(item)
    assert title.startswith(" " + info.title)
    for key in ("year", "genres", "categories", "city"):
        if info.attributes.get(key):
            assert info.attributes[key] in title
    # an item whose profile failed shows its title, not nothing
    profile = LLMConfig.from_config({"hnlm_ft_item_text": "profile", "hnlm_item_profiles": True})
    assert PairTexts(text, profile, Book(items={})).item_text(item) == title


def test_a_title_item_text_shows_the_year_genres_categories_and_city_it_has(data_root, teacher):
    from recbole_hnlm.llm.dataset_text import ItemText

    text = DatasetText(data_root, "mini", teacher.token_pairs())  # its own: items are replaced below
    texts = PairTexts(text, LLMConfig.from_config({"hnlm_ft_item_text": "title"}))
    a, b = teacher.item_tokens[:2]
    text.items[a] = ItemText(a, "Film", {"categories": "Books", "city": "Paris"})
    text.items[b] = ItemText(b, "Film", {})
    assert texts.item_text(a) == " Film (Books, Paris)" and texts.item_text(b) == " Film"


def test_profile_texts_need_a_profile_book_and_a_failed_user_profile_is_no_text(teacher, text):
    for settings in ({"hnlm_ft_user_text": "profile"},
                     {"hnlm_ft_item_text": "profile", "hnlm_item_profiles": True}):
        with pytest.raises(ValueError, match="needs generated profiles"):
            PairTexts(text, LLMConfig.from_config(settings))
    cfg = LLMConfig.from_config({"hnlm_ft_user_text": "profile"})
    user = teacher.user_tokens[0]
    texts = PairTexts(text, cfg, Book(users={user: None}))
    assert texts.user_text(user) is None
    assert all(teacher.user_tokens[int(teacher.pair_user[g.rows[0]])] != user
               for g in training_examples(teacher, texts, cfg))


# ------------------------------------------------------------------------------------------- adapter identity

def _identity(teacher, text, generator="tiny@abc", **settings):
    return adapter_identity(LLMConfig.from_config(settings), teacher, generator, text)


@pytest.mark.parametrize("setting, value", [
    ("hnlm_max_history", 3), ("hnlm_profile_words", 7), ("hnlm_ft_lora_alpha", 4), ("hnlm_ft_user_text", "profile"),
    ("hnlm_load_in_4bit", True),
])
def test_more_settings_enter_the_adapter_identity(teacher, text, setting, value):
    assert _identity(teacher, text, **{setting: value}) != _identity(teacher, text)


def test_the_generator_and_the_hybrid_template_enter_the_adapter_identity(teacher, text):
    assert _identity(teacher, text, generator="other@def") != _identity(teacher, text)
    assert _identity(teacher, text)["template"] == PromptTemplate.load(HYBRID_TEMPLATE).version


def test_profile_settings_enter_the_adapter_identity_only_when_the_prompt_shows_profiles(teacher, text):
    assert _identity(teacher, text, hnlm_profile_max_new_tokens=17) == _identity(teacher, text)
    profile = dict(hnlm_ft_user_text="profile")
    assert _identity(teacher, text, **profile, hnlm_max_reviews=2) != _identity(teacher, text, **profile)
    assert "item_profile" not in _identity(teacher, text, **profile, hnlm_item_profiles=False)["profile_prompts"]
    assert "item_profile" in _identity(teacher, text, **profile, hnlm_item_profiles=True)["profile_prompts"]
    items = dict(hnlm_ft_item_text="profile", hnlm_item_profiles=True)  # the same profile settings either way
    assert _identity(teacher, text, **items, hnlm_ft_user_text="profile") != _identity(teacher, text, **items)


def test_a_folder_without_adapter_settings_is_fine_tuned_without_a_warning(tmp_path, teacher, text):
    (tmp_path / "empty").mkdir()
    assert _adapter_refit_reason(str(tmp_path / "empty"), _identity(teacher, text)) == ""


def test_a_changed_hash_is_named_by_its_key_only(tmp_path, teacher, text):
    identity = _identity(teacher, text)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / SETTINGS_FILE).write_text(json.dumps(dict(identity, teacher_hash="f" * 64)))
    reason = _adapter_refit_reason(str(tmp_path / "a"), identity)
    assert "(teacher_hash)" in reason and "f" * 64 not in reason and identity["teacher_hash"] not in reason


# ------------------------------------------------------------------------------------------ manifest and embed

def test_the_store_dtype_enters_the_store_manifest(teacher, text):
    pairs = text.select_pairs(0, 0)
    a = finetuned_manifest(LLMConfig.from_config({}), text, pairs, "tiny@abc", teacher, "a" * 64)
    b = finetuned_manifest(LLMConfig.from_config({"hnlm_store_dtype": "float32"}), text, pairs, "tiny@abc", teacher,
                           "a" * 64)
    assert a != b and b["dtype"] == "float32"


def test_a_user_without_history_is_a_failure_named_so_not_a_failed_profile(lm, data_root, teacher, tmp_path):
    """With history prompts (the default) a user without training history has no text: recorded as "no training
    history" (it read "profile failed", although no profile was asked for)."""
    pairs = teacher.token_pairs()
    gone = pairs[0][0]
    text = DatasetText(data_root, "mini", [p for p in pairs if p[0] != gone])
    cfg = LLMConfig.from_config({"hnlm_chunk_size": 64})
    assert cfg.ft_user_text == "history"
    store = str(tmp_path / "s.safetensors")
    manifest = finetuned_manifest(cfg, text, pairs, "tiny@abc", teacher, "a" * 64)
    embed_pairs(cfg, pairs, store, _encoder(lm).eval(), teacher, PairTexts(text, cfg), manifest, progress=False)
    with open(store + ".failures.jsonl", encoding="utf-8") as handle:
        failures = [json.loads(line) for line in handle]
    assert [(r["user"], r["item"]) for r in failures] == [p for p in pairs if p[0] == gone]
    assert {r["error"] for r in failures} == {"user text missing (no training history)"}


def test_a_failed_user_profile_is_a_named_failure_and_warned_about(lm, teacher, text, tmp_path, caplog):
    cfg = LLMConfig.from_config({"hnlm_ft_user_text": "profile", "hnlm_chunk_size": 64})
    pairs = teacher.token_pairs()
    failed = pairs[0][0]
    book = Book(users={u: "likes films" for u, _ in pairs if u != failed})
    encoder = _encoder(lm).eval()
    store = str(tmp_path / "s.safetensors")
    manifest = finetuned_manifest(cfg, text, pairs, "tiny@abc", teacher, "a" * 64)
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.finetune_pipeline"):
        embed_pairs(cfg, pairs, store, encoder, teacher, PairTexts(text, cfg, book), manifest, progress=False)
    with open(store + ".failures.jsonl", encoding="utf-8") as handle:
        failures = [json.loads(line) for line in handle]
    expected = [p for p in pairs if p[0] == failed]
    assert [(r["user"], r["item"]) for r in failures] == expected
    assert {r["error"] for r in failures} == {"user text missing (profile failed)"}
    assert PairEmbeddingStore.open(store).manifest["num_failures"] == len(expected)
    assert f"{len(expected)}/{len(pairs)} pairs have no embedding" in caplog.text


def test_a_teacher_with_a_single_pair_outside_the_split_is_refused(data_root, teacher):
    pairs = teacher.token_pairs()
    with pytest.raises(DataError, match=r"1 of the teacher's \d+ training pairs"):
        check_teacher_split(teacher, DatasetText(data_root, "mini", pairs[1:]))


def test_several_negatives_per_pair_are_warned_about_as_ignored(tmp_path, data_root, teacher, caplog):
    (tmp_path / "file").write_text("x")
    cfg = LLMConfig.from_config({"hnlm_variant": "finetuned", "hnlm_negatives_per_pair": 3,
                                 "hnlm_adapter_path": str(tmp_path / "file")})
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.finetune_pipeline"):
        with pytest.raises(ConfigError, match="is a file"):
            ensure_finetuned(cfg, DatasetText(data_root, "mini", teacher.token_pairs()), str(tmp_path / "s"),
                             progress=False, generator_name="tiny@abc")
    assert "hnlm_negatives_per_pair=3 is ignored" in caplog.text


def test_a_batch_size_of_one_is_named_when_fine_tuning_ran_no_step(tmp_path, lm, teacher, text):
    cfg = LLMConfig.from_config({"hnlm_variant": "finetuned", "hnlm_ft_batch_size": 1, "hnlm_ft_pairs_per_user": 1,
                                 "hnlm_ft_max_train_pairs": 4, "hnlm_teacher_path": teacher.path,
                                 "hnlm_adapter_path": str(tmp_path / "adapter"), "hnlm_ft_lora_r": 4})
    model, tokenizer, _ = load_causal_lm(lm, device="cpu")
    with pytest.raises(ConfigError, match=r"ran no step: 4 training examples.*Raise hnlm_ft_batch_size \(now 1\)"):
        ensure_finetuned(cfg, text, str(tmp_path / "s.safetensors"), progress=False,
                         lm_and_tokenizer=(model, tokenizer), generator_name="tiny@abc", embed=False)
    assert not os.path.exists(tmp_path / "adapter")
