"""Fine-tuned variant (§4.2-4.3): teacher export, hybrid prompt, InfoNCE training, embed path, store."""
import json
import logging
import os

import pytest
import torch

from lock_holder import held_by_another_process
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.finetune import PairTexts, train_hybrid_encoder, training_examples
from recbole_hnlm.llm.finetune_pipeline import adapter_identity, ensure_finetuned, finetuned_manifest
from recbole_hnlm.llm.chunks import user_aligned_starts
from recbole_hnlm.llm.hybrid_encoder import HybridPromptEncoder, PromptGroup, folder_hash, info_nce, read_settings
from recbole_hnlm.llm.models import load_causal_lm
from recbole_hnlm.llm.store import PairEmbeddingStore, manifest_mismatch
from recbole_hnlm.llm.teacher import Teacher, default_teacher_path, export_teacher


class StandInCF(torch.nn.Module):
    """Implements only the two methods export_teacher needs (the real model comes from the plugin)."""

    def __init__(self, n_users, n_items, dim=8):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.user = torch.randn(n_users, dim, generator=g)
        self.item = torch.randn(n_items, dim, generator=g)

    def pooled_embeddings(self):
        return self.user, self.item

    def hard_negatives(self, user_ids, pos_ids):
        alpha = torch.rand(user_ids.shape[0], 1)
        return alpha * self.item[pos_ids] + (1 - alpha) * self.item[torch.randint(1, self.item.shape[0], pos_ids.shape)]


@pytest.fixture(scope="module")
def mini_recbole(data_root, tmp_path_factory):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    config = Config(model="BPR", dataset="mini", config_dict={
        "data_path": data_root, "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("ck")),
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}})
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return dataset, train


@pytest.fixture(scope="module")
def teacher_path(mini_recbole, data_root):
    dataset, train = mini_recbole
    path = default_teacher_path(data_root, "mini")
    export_teacher(StandInCF(dataset.user_num, dataset.item_num), dataset, train, path)
    return path


def _train_token_pairs(mini_recbole):
    dataset, train = mini_recbole
    feat = train._dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return list(zip(users.tolist(), items.tolist()))


def test_export_teacher_round_trip(teacher_path, mini_recbole):
    dataset, train = mini_recbole
    teacher = Teacher.load(teacher_path)
    pairs = _train_token_pairs(mini_recbole)
    assert teacher.neg_emb.shape == (len(pairs), 8) and teacher.user_emb.shape == (dataset.user_num - 1, 8)
    got = [(teacher.user_tokens[u], teacher.item_tokens[i]) for u, i in zip(teacher.pair_user.tolist(),
                                                                           teacher.pair_item.tolist())]
    assert got == pairs and "[PAD]" not in teacher.user_tokens
    uid = dataset.field2token_id[dataset.uid_field][pairs[0][0]]
    assert torch.equal(teacher.user_emb[teacher.pair_user[0]], StandInCF(dataset.user_num, dataset.item_num).user[uid])
    with pytest.raises(FileNotFoundError, match="export_teacher"):
        Teacher.load(teacher_path + ".missing")


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    return model, tokenizer


def _separate_prompt(enc, user_text, user_cf, item_text, item_cf):
    """Reference: the plain causal forward of one full ``prefix + suffix`` prompt, no custom mask."""
    prefix = enc.prefix_embeds(user_text, enc._soft(enc.user_proj, user_cf.view(1, -1))[0])
    suffix = enc.suffix_embeds(item_text, enc._soft(enc.item_proj, item_cf.view(1, -1))[0])
    return enc.body(inputs_embeds=torch.cat([prefix, suffix])[None]).last_hidden_state[0, -1].float()


def _opening_with(tokenizer, token, end=None):
    """A copy of ``tokenizer`` that puts ``token`` before every text by default, as Llama's tokenizers do (and
    ``end`` after it, as some others do)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tail = f" {end}" if end else ""
    specials = [(t, tokenizer.convert_tokens_to_ids(t)) for t in (token, end) if t]
    backend.post_processor = processors.TemplateProcessing(single=f"{token} $A{tail}", pair=f"{token} $A $B{tail}",
                                                           special_tokens=specials)
    copy = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
                                   bos_token=token)
    copy.chat_template = tokenizer.chat_template
    return copy


def test_hybrid_prompt_opens_with_the_tokenizers_start_token(tiny_lm):
    """A tokenizer that puts a start token before every text (Llama's <s>, Llama-3's <|begin_of_text|>) gets it at
    the head of the hybrid prompt, which is tokenised in pieces without special tokens (it had none before v3); one
    that adds none gets none, and ChatML's <|im_start|>, which GGUF files of ChatML models call BOS, is left out."""
    from recbole_hnlm.llm.models import sequence_start_ids

    model, tokenizer = tiny_lm
    opening = _opening_with(tokenizer, "[CLS]")
    cls_id = tokenizer.convert_tokens_to_ids("[CLS]")
    assert opening("liked: Heat")["input_ids"][0] == cls_id  # the copy does what the test is about
    assert sequence_start_ids(opening) == [cls_id]
    assert sequence_start_ids(_opening_with(tokenizer, "[CLS]", end="[SEP]")) == [cls_id]  # an end token is not
    assert sequence_start_ids(tokenizer) == []
    assert sequence_start_ids(_opening_with(tokenizer, "<|im_start|>")) == []
    with_start = HybridPromptEncoder(model, opening, cf_dim=8)
    without = HybridPromptEncoder(model, tokenizer, cf_dim=8)
    soft = with_start._soft(with_start.user_proj, torch.randn(1, 8))[0]
    soft_item = with_start._soft(with_start.item_proj, torch.randn(1, 8))[0]
    with torch.no_grad():
        first = with_start.prefix_embeds("liked: Heat", soft)
        plain = without.prefix_embeds("liked: Heat", soft)
        suffix = with_start.suffix_embeds(" Heat", soft_item)
        plain_suffix = without.suffix_embeds(" Heat", soft_item)
    embeddings = model.get_input_embeddings().weight
    assert first.shape[0] == plain.shape[0] + 1
    assert torch.equal(first[0], embeddings[cls_id]) and torch.equal(first[1:], plain)
    assert not torch.equal(plain[0], embeddings[cls_id])
    assert torch.equal(suffix, plain_suffix)  # once per prompt: the per-pair suffix has none


@pytest.mark.parametrize("start_token", [False, True], ids=["no_start_token", "start_token"])
def test_grouped_forward_equals_separate_prompts(tiny_llama_dir, start_token):
    """Rows of different users and lengths (padding), packed suffixes, rows split by pairs_per_row and batched
    by tokens_per_forward: every [EOS] state equals the plain forward of that pair's own prompt (also with a
    tokenizer that opens every text with a start token)."""
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    if start_token:
        tokenizer = _opening_with(tokenizer, "[CLS]")
    torch.manual_seed(0)
    enc = HybridPromptEncoder(model, tokenizer, cf_dim=8, soft_tokens=2, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    users = ["liked: Fargo; Heat", "liked: Toy Story (1995); Babe; Casino; Clerks; Seven", "liked: Heat"]
    items = [["Toy Story (1995, Animation)", "Heat", ""], ["Babe"], ["", "Casino (1995)", "Fargo", "Heat", ""]]
    groups = [PromptGroup(u, torch.randn(8), its, torch.randn(len(its), 8)) for u, its in zip(users, items)]
    with torch.no_grad():
        ref = torch.stack([_separate_prompt(enc, g.user_text, g.user_cf, t, g.item_cf[k])
                           for g in groups for k, t in enumerate(g.item_texts)])
        one_forward = enc.encode_groups(groups)
        split_rows = enc.embed(groups, pairs_per_row=2, tokens_per_forward=10_000)
        one_row_each = enc.embed(groups, pairs_per_row=256, tokens_per_forward=1)
    assert one_forward.shape == (9, 32)
    for got in (one_forward, split_rows, one_row_each):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert (ref[0] - ref[1]).abs().max() > 1e-4  # different items -> different embeddings
    assert (ref[0] - ref[3]).abs().max() > 1e-4  # different users -> different embeddings


def test_equal_suffixes_take_the_segment_path_with_the_same_numbers(tiny_llama_dir):
    """Empty item texts (the default): every suffix is <soft_i> [EOS], so rows run the prefix/segment attention;
    its [EOS] states equal the dense-mask path and the plain per-pair forwards, in eval and with gradients."""
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(1)
    enc = HybridPromptEncoder(model, tokenizer, cf_dim=8, soft_tokens=1, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    users = ["liked: Fargo; Heat", "liked: Toy Story (1995); Babe; Casino; Clerks; Seven"]
    groups = [PromptGroup(u, torch.randn(8), [""] * k, torch.randn(k, 8)) for u, k in zip(users, (4, 2))]
    rows = enc._rows(groups)
    assert {s.shape[0] for r in rows for s in r.suffixes} == {2}
    with torch.no_grad():
        ref = torch.stack([_separate_prompt(enc, g.user_text, g.user_cf, "", g.item_cf[k])
                           for g in groups for k in range(len(g.item_texts))])
        torch.testing.assert_close(enc._forward_segments(rows, 2), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(enc._forward_masked(rows), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(enc.encode_groups(groups), ref, atol=1e-5, rtol=1e-4)
    fast = enc._forward_segments(enc._rows(groups), 2).sum()
    masked = enc._forward_masked(enc._rows(groups)).sum()
    lora = [p for n, p in enc.named_parameters() if "lora_B" in n][0]
    g_fast, g_masked = torch.autograd.grad(fast, lora), torch.autograd.grad(masked, lora)
    torch.testing.assert_close(g_fast, g_masked, atol=1e-4, rtol=1e-3)


def test_user_aligned_chunks_keep_users_whole():
    pairs = [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("c", "1"), ("c", "2"), ("d", "4")]
    assert user_aligned_starts(pairs, 2) == [0, 3, 6]
    assert user_aligned_starts(pairs, 1) == [0, 3, 4, 6]
    assert user_aligned_starts(pairs, 4) == [0, 4]
    assert user_aligned_starts([], 4) == []


def test_info_nce_prefers_matching_pairs():
    q = torch.eye(4)
    assert info_nce(q, q, None, 0.05) < info_nce(q, q.roll(1, 0), None, 0.05)
    assert info_nce(q, q, torch.zeros(4, 2, 4) + q[:, None], 0.05) > info_nce(q, q, None, 0.05)


def test_finetuning_reduces_info_nce(tiny_llama_dir, teacher_path, data_root):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    cfg = LLMConfig.from_config({"hnlm_ft_user_text": "history", "hnlm_ft_max_train_pairs": 16,
                                 "hnlm_ft_batch_size": 8, "hnlm_ft_epochs": 12, "hnlm_ft_lr": 3e-3})
    teacher = Teacher.load(teacher_path)
    texts = PairTexts(DatasetText(data_root, "mini"), cfg)
    examples = training_examples(teacher, texts, cfg)
    rows = [r for g in examples for r in g.rows]
    assert len(rows) == 16 and len(set(rows)) == 16
    for g in examples:  # a group = up to ft_pairs_per_user pairs of one user, with their item texts
        assert 1 <= len(g.rows) <= 4 and len(g.item_texts) == len(g.rows)
        assert len({int(teacher.pair_user[r]) for r in g.rows}) == 1
    assert sum(len(g.rows) > 1 for g in examples) >= 2
    enc = HybridPromptEncoder(model, tokenizer, teacher.dim, 1, lora=dict(r=4, alpha=8, dropout=0.0))
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert any("lora" in n for n in trainable) and not any("embed_tokens" in n for n in trainable)

    def held_loss():  # InfoNCE of all 16 pairs in one eval batch (no dropout, no random negatives)
        groups = [PromptGroup(g.user_text, teacher.user_emb[teacher.pair_user[g.rows[0]]], g.item_texts,
                              teacher.item_emb[teacher.pair_item[torch.tensor(g.rows)]]) for g in examples]
        with torch.no_grad():
            return float(info_nce(enc.eval().encode_groups(groups), enc.targets(teacher.neg_emb[rows]), None, 0.05))

    before = held_loss()
    losses = train_hybrid_encoder(enc, teacher, examples, cfg, progress=False)
    assert 24 <= len(losses) <= 36  # 12 epochs x (2 or 3 batches of >= 8 pairs, whole groups)
    assert held_loss() < 0.75 * before  # measured 3.31 -> 2.11


def test_training_examples_single_pairs(teacher_path, data_root):
    cfg = LLMConfig.from_config({"hnlm_ft_max_train_pairs": 12, "hnlm_ft_pairs_per_user": 1})
    teacher = Teacher.load(teacher_path)
    examples = training_examples(teacher, PairTexts(DatasetText(data_root, "mini"), cfg), cfg)
    assert len(examples) == 12 and all(len(g.rows) == 1 for g in examples)
    assert len({int(teacher.pair_user[g.rows[0]]) for g in examples}) > 1
    again = training_examples(teacher, PairTexts(DatasetText(data_root, "mini"), cfg), cfg)
    assert [g.rows for g in again] == [g.rows for g in examples]  # seeded


def _small_finetune_config(tmp_path, tiny_llama_dir, store, **extra):
    """A fine-tuned run small enough for a test: 16 training pairs, one epoch, 16-pair chunks."""
    return dict({"hnlm_variant": "finetuned", "hnlm_ft_user_text": "history", "hnlm_ft_max_train_pairs": 16,
                 "hnlm_ft_batch_size": 8, "hnlm_ft_epochs": 1, "hnlm_chunk_size": 16, "hnlm_store_path": store,
                 "hnlm_adapter_path": str(tmp_path / "adapter"), "hnlm_generator": tiny_llama_dir}, **extra)


def test_finetuned_embed_writes_store_and_caches(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    store = str(tmp_path / "ft.safetensors")
    config = _small_finetune_config(tmp_path, tiny_llama_dir, store)
    cfg = LLMConfig.from_config(config)
    train_pairs = _train_token_pairs(mini_recbole)
    text = DatasetText(data_root, "mini", train_pairs)
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    s = PairEmbeddingStore.open(store)
    assert s.manifest["variant"] == "finetuned" and s.dim == 32 and s.num_pairs == len(train_pairs)
    assert set(zip(s.user_tokens, s.item_tokens)) == set(train_pairs)
    assert len({tuple(r) for r in s.emb.tolist()}) == s.num_pairs
    assert os.path.exists(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert not any(name.endswith((".pt", ".pkl", ".bin")) for name in os.listdir(tmp_path / "adapter"))
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {name: os.stat(tmp_path / "adapter" / name).st_mode & 0o777 for name in os.listdir(tmp_path / "adapter")}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # the weights were 0600 (safetensors), other artifacts not
    # peft listed target_modules in the process's set order: equal adapters of two processes hashed apart
    with open(tmp_path / "adapter" / "adapter_config.json", encoding="utf-8") as handle:
        modules = json.load(handle)["target_modules"]
    assert modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    # cache hit: nothing is loaded or trained again, and chunks a stopped run left beside the store are removed
    mtime = os.path.getmtime(store)
    os.makedirs(store + ".work")
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(None, None))
    assert os.path.getmtime(store) == mtime and not os.path.exists(store + ".work")
    # the saved adapter reproduces the in-memory embeddings
    model2, tokenizer2, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    enc = HybridPromptEncoder.load(model2, tokenizer2, str(tmp_path / "adapter"))
    teacher = Teacher.load(teacher_path)
    texts = PairTexts(text, cfg)
    for row in range(0, s.num_pairs, 9):  # float16 store: about 2e-3 of rounding at these magnitudes
        u, i = s.user_tokens[row], s.item_tokens[row]
        with torch.no_grad():
            again = enc.encode_groups([PromptGroup(texts.user_text(u), teacher.user_emb[teacher.user_tokens.index(u)],
                                                   [texts.item_text(i)],
                                                   teacher.item_emb[[teacher.item_tokens.index(i)]])])
        torch.testing.assert_close(again[0], s.emb[row].float(), atol=4e-3, rtol=2e-3)

    # a killed embed run resumes at its first missing chunk and writes the same store as an uninterrupted run
    class Killed(RuntimeError):
        pass

    def kill_after_first(k):
        if k == 0:
            raise Killed()

    def embed_into(path, on_chunk=None):
        lm, tok, _ = load_causal_lm(tiny_llama_dir, device="cpu")  # fresh weights: loading merges LoRA in place
        ensure_finetuned(LLMConfig.from_config(dict(config, hnlm_store_path=path)), text, path, progress=False,
                         lm_and_tokenizer=(lm, tok), on_chunk=on_chunk)

    whole, resumed = str(tmp_path / "whole.safetensors"), str(tmp_path / "resumed.safetensors")
    embed_into(whole)
    with pytest.raises(Killed):
        embed_into(resumed, kill_after_first)
    assert not os.path.exists(resumed) and os.path.exists(resumed + ".work/chunk_000000.safetensors")
    done = []
    embed_into(resumed, done.append)
    assert done and done[0] == 1  # chunk 0 was not recomputed
    a, b = PairEmbeddingStore.open(whole), PairEmbeddingStore.open(resumed)
    assert a.user_tokens == b.user_tokens and a.item_tokens == b.item_tokens and torch.equal(a.emb, b.emb)
    torch.testing.assert_close(a.emb.float(), s.emb.float(), atol=4e-3, rtol=2e-3)  # = the in-memory run


def test_an_interrupted_fine_tuning_resumes_bit_for_bit(tmp_path, tiny_llama_dir, teacher_path, data_root,
                                                         mini_recbole, monkeypatch, caplog):
    """A fine-tuning killed after its fourth step goes on from its saved state (weights, AdamW moments, dropout and
    random-negative streams) and writes the same adapter, byte for byte, as an uninterrupted one; the state folder
    goes once the adapter is written. A state of other settings is discarded with a warning naming them."""
    from recbole_hnlm.llm import finetune
    from recbole_hnlm.llm.finetune_state import STATE_FILE
    from recbole_hnlm.llm.hybrid_encoder import folder_hash

    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    store = str(tmp_path / "s.safetensors")

    def fine_tune(folder, **extra):
        config = dict(_small_finetune_config(tmp_path, tiny_llama_dir, store), hnlm_adapter_path=str(tmp_path / folder),
                      hnlm_ft_epochs=3, hnlm_ft_lora_dropout=0.1, **extra)
        model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
        ensure_finetuned(LLMConfig.from_config(config), text, store, progress=False,
                         lm_and_tokenizer=(model, tokenizer), embed=False)
        return str(tmp_path / folder)

    whole = fine_tune("whole")
    total = len(read_settings(whole)["losses"])
    assert total >= 6
    steps, real_info_nce = [], finetune.info_nce

    def info_nce_killed_at_step_5(*args):
        if len(steps) == 4:
            raise KeyboardInterrupt
        steps.append(1)
        return real_info_nce(*args)

    monkeypatch.setattr(finetune, "SAVE_EVERY_SECONDS", 0.0)  # a state before every step
    monkeypatch.setattr(finetune, "info_nce", info_nce_killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        fine_tune("resumed")
    work = tmp_path / "resumed.work"
    assert not os.path.exists(tmp_path / "resumed") and os.path.exists(work / STATE_FILE)
    steps.clear()
    monkeypatch.setattr(finetune, "info_nce", lambda *args: steps.append(1) or real_info_nce(*args))
    with caplog.at_level(logging.INFO):
        resumed = fine_tune("resumed")
    assert "resuming from" in caplog.text and len(steps) == total - 4
    assert folder_hash(resumed) == folder_hash(whole) and not os.path.exists(work)
    # a stop between saving the adapter and removing its state left the folder: the adapter's reuse removes it
    os.makedirs(work)
    (work / STATE_FILE).write_bytes(b"old")
    os.utime(work / STATE_FILE, (os.path.getmtime(resumed) - 10,) * 2)
    steps.clear()
    fine_tune("resumed")
    assert not steps and not os.path.exists(work)

    # the state of a fine-tuning with another learning rate is not continued
    monkeypatch.setattr(finetune, "info_nce", info_nce_killed_at_step_5)
    steps.clear()
    with pytest.raises(KeyboardInterrupt):
        fine_tune("other", hnlm_ft_lr=1e-3)
    steps.clear()
    monkeypatch.setattr(finetune, "info_nce", lambda *args: steps.append(1) or real_info_nce(*args))
    fine_tune("other")
    assert len(steps) == total and folder_hash(str(tmp_path / "other")) == folder_hash(whole)
    assert "is not continued: it had other settings or data (ft_lr)" in caplog.text
    assert not os.path.exists(tmp_path / "other.work")
    # a state of the same settings but another model behind the generator's name (other weight shapes) likewise
    from safetensors import safe_open
    from safetensors.torch import save_file

    monkeypatch.setattr(finetune, "info_nce", info_nce_killed_at_step_5)
    steps.clear()
    with pytest.raises(KeyboardInterrupt):
        fine_tune("reshaped")
    state_file = str(tmp_path / "reshaped.work" / STATE_FILE)
    with safe_open(state_file, framework="pt") as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    first = next(k for k in sorted(tensors) if k.startswith("param."))
    tensors[first] = torch.zeros(1)
    save_file(tensors, state_file, metadata=metadata)
    monkeypatch.setattr(finetune, "info_nce", lambda *args: steps.append(1) or real_info_nce(*args))
    steps.clear()
    fine_tune("reshaped")
    assert len(steps) == total and f"its weight {first[len('param.'):]} has shape (1,)" in caplog.text
    # a state cut short (a full disk) is named and fine-tuned afresh
    os.makedirs(tmp_path / "cut.work")
    (tmp_path / "cut.work" / STATE_FILE).write_bytes(b"\x08\x00\x00")
    steps.clear()
    fine_tune("cut")
    assert len(steps) == total and folder_hash(str(tmp_path / "cut")) == folder_hash(whole)
    assert f"{STATE_FILE} cannot be read (SafetensorError" in caplog.text


def test_a_store_replaced_because_its_adapter_is_fine_tuned_again_is_warned_about(tmp_path, tiny_llama_dir,
                                                                                  teacher_path, data_root,
                                                                                  mini_recbole, caplog):
    """The adapter's mismatch skipped the store's check, so the store was replaced without a word (`--split all`
    after a run's split, or another hnlm_ft_lr)."""
    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    store = str(tmp_path / "ft.safetensors")
    for lr in (2e-4, 1e-3):
        model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
        cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, store, hnlm_ft_lr=lr))
        with caplog.at_level(logging.WARNING):
            ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    assert caplog.text.count(f"{store}: its adapter {tmp_path / 'adapter'} is fine-tuned again, so the store is "
                             "computed again and replaced") == 1
    assert PairEmbeddingStore.open(store).manifest["adapter_hash"] == folder_hash(str(tmp_path / "adapter"))


def test_teacher_of_another_split_is_refused_before_the_llm_loads(tmp_path, teacher_path, data_root, mini_recbole):
    """Pairs the teacher trained on that are not training pairs of this split (here: three moved to the hold-out)
    are this run's validation or test interactions: refused, naming the file, the count and one pair."""
    from recbole_hnlm.errors import DataError

    cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, "no-such-model", str(tmp_path / "s.safetensors")))
    train_pairs = _train_token_pairs(mini_recbole)
    teacher = Teacher.load(teacher_path)
    assert teacher.pairs_outside(train_pairs) == []
    held_out = train_pairs[5:8]
    assert teacher.pairs_outside(train_pairs[:5] + train_pairs[8:]) == held_out
    text = DatasetText(data_root, "mini", train_pairs[:5] + train_pairs[8:])
    with pytest.raises(DataError, match=f"3 of the teacher's {len(train_pairs)} training pairs") as error:
        ensure_finetuned(cfg, text, str(tmp_path / "s.safetensors"), progress=False, lm_and_tokenizer=(None, None))
    assert teacher_path in str(error.value) and repr(held_out[0][0]) in str(error.value)
    assert not os.path.exists(tmp_path / "adapter")


def test_a_second_run_fine_tuning_the_same_adapter_is_refused_before_it_trains(tmp_path, tiny_llama_dir, teacher_path,
                                                                                data_root, mini_recbole):
    """Two runs fine-tuning one adapter folder: the second saved its adapter over the first's after its whole
    fine-tuning, and only the embedding stage's lock stopped it."""
    from recbole_hnlm.errors import ConcurrentWriterError

    adapter = str(tmp_path / "adapter")
    with held_by_another_process(adapter + ".lock", "4242\n", truncate=True):
        cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, str(tmp_path / "s.safetensors")))
        text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
        with pytest.raises(ConcurrentWriterError, match=r"adapter\.lock: another process \(pid 4242\) is writing the "
                                                        "adapter"):
            ensure_finetuned(cfg, text, str(tmp_path / "s.safetensors"), progress=False,
                             lm_and_tokenizer=(None, None))  # nothing may load or train
    assert not os.path.exists(adapter)


def test_finetuned_pipeline_in_bfloat16(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole):
    """`hnlm_dtype: bfloat16` (the GPU commands of docs/llm.md) end to end on the CPU: fine-tuning, the saved
    adapter, and a store of finite, distinct vectors that the manifest marks as bf16."""
    store = str(tmp_path / "bf16.safetensors")
    config = _small_finetune_config(tmp_path, tiny_llama_dir, store, hnlm_dtype="bfloat16")
    cfg = LLMConfig.from_config(config)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, dtype="bfloat16", device="cpu")
    train_pairs = _train_token_pairs(mini_recbole)
    text = DatasetText(data_root, "mini", train_pairs)
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    s = PairEmbeddingStore.open(store)
    assert s.num_pairs == len(train_pairs) and torch.isfinite(s.emb.float()).all()
    assert len({tuple(r) for r in s.emb.tolist()}) == s.num_pairs
    assert s.manifest["settings"]["compute"] == "bfloat16"
    assert read_settings(str(tmp_path / "adapter"))["compute"] == "bfloat16"
    # the numerics are part of the identity: a float32 request neither reuses the bf16 adapter nor the store
    cfg32 = LLMConfig.from_config(dict(config, hnlm_dtype="float32"))
    teacher = Teacher.load(teacher_path)
    assert adapter_identity(cfg32, teacher, "g", text)["compute"] == "float32"
    assert manifest_mismatch(s.manifest, finetuned_manifest(cfg32, text, train_pairs, s.manifest["generator"],
                                                            teacher, s.manifest["adapter_hash"])) is not None


def test_profile_texts_in_the_hybrid_prompt(tmp_path, tiny_llama_dir, teacher_path, mini_recbole, monkeypatch):
    """``hnlm_ft_user_text/ft_item_text: profile`` (the paper's prompts): the users and items of the embedded and
    the teacher's pairs are profiled first, then fine-tuning and embedding use those texts (it crashed with
    KeyError '' before any profile was made). The profile settings are part of the adapter's and store's identity.
    The LLM's answers are scripted here (a random tiny model writes no JSON); the pipeline around them is real."""
    from llm_helpers import MOVIES, write_slice
    from recbole_hnlm.llm.generation import Generator
    from recbole_hnlm.llm.pipeline import profiles_path
    from recbole_hnlm.llm.profiles import ProfileBook

    def scripted(self, id_lists, seeds):
        return [f'likes {MOVIES[sum(ids) % len(MOVIES)]} style movies", "reasoning": "history"}}' for ids in id_lists]

    monkeypatch.setattr(Generator, "_generate_ids", scripted)
    root = write_slice(str(tmp_path / "data"))  # the same users and items as data_root, its own profiles file
    store = str(tmp_path / "profile.safetensors")
    config = _small_finetune_config(tmp_path, tiny_llama_dir, store, hnlm_ft_user_text="profile",
                                    hnlm_ft_item_text="profile", hnlm_teacher_path=teacher_path)
    cfg = LLMConfig.from_config(config)
    train_pairs = _train_token_pairs(mini_recbole)
    text = DatasetText(root, "mini", train_pairs)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    s = PairEmbeddingStore.open(store)
    assert s.num_pairs == len(train_pairs) and s.manifest["settings"]["item_profiles"] is True
    book = ProfileBook(profiles_path(root, "mini"))
    assert all(book.summary("user", u) for u, _ in train_pairs)
    assert all(book.summary("item", i) for _, i in train_pairs)  # every pair's own item, not only histories
    teacher = Teacher.load(teacher_path)
    identity = adapter_identity(cfg, teacher, "g", text)
    assert identity != adapter_identity(LLMConfig.from_config(dict(config, hnlm_max_reviews=1)), teacher, "g", text)
    assert identity != adapter_identity(cfg, teacher, "g", DatasetText(root, "mini"))  # histories of every pair


def test_item_profile_text_without_item_profiles_is_a_config_error(tmp_path, tiny_llama_dir):
    """``hnlm_ft_item_text: profile`` with ``hnlm_item_profiles: False`` generates no item profiles, so the hybrid
    prompt showed whatever item profiles an earlier run had left in the profiles file: a one-line error up front."""
    from recbole_hnlm.errors import ConfigError

    config = _small_finetune_config(tmp_path, tiny_llama_dir, str(tmp_path / "s.safetensors"),
                                    hnlm_ft_item_text="profile", hnlm_item_profiles=False)
    with pytest.raises(ConfigError, match="hnlm_ft_item_text=profile needs generated item profiles.*"
                                          "hnlm_item_profiles: True, or hnlm_ft_item_text: title"):
        LLMConfig.from_config(config)
    assert LLMConfig.from_config(dict(config, hnlm_item_profiles=True)).ft_item_text == "profile"
    assert not LLMConfig.from_config(dict(config, hnlm_ft_item_text="title")).item_profiles
    assert LLMConfig.from_config(dict(config, hnlm_variant="semantic")).variant == "semantic"  # ft_* unused there


def test_fine_tuning_without_a_step_is_a_clear_error(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole):
    from recbole_hnlm.errors import ConfigError

    config = _small_finetune_config(tmp_path, tiny_llama_dir, str(tmp_path / "s.safetensors"),
                                    hnlm_ft_max_train_pairs=1)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    with pytest.raises(ConfigError,
                       match="fine-tuning ran no step: 1 training examples.*Raise hnlm_ft_max_train_pairs,"):
        ensure_finetuned(LLMConfig.from_config(config),
                         DatasetText(data_root, "mini", _train_token_pairs(mini_recbole)),
                         str(tmp_path / "s.safetensors"), progress=False, lm_and_tokenizer=(model, tokenizer))
    assert not os.path.exists(tmp_path / "adapter")
    with pytest.raises(ConfigError, match="hnlm_ft_epochs must be a positive integer, got 0"):
        LLMConfig.from_config(dict(config, hnlm_ft_epochs=0))


def test_the_adapter_depends_on_hnlm_seed_not_on_the_callers_rng(tmp_path, tiny_llama_dir, teacher_path, data_root,
                                                                mini_recbole, caplog):
    """LoRA/MLP initialisation and dropout draw from hnlm_seed: the CLI stage and a run (which reach fine-tuning
    with different global RNG states) build the same adapter, and the caller's RNG is left as it was."""
    from recbole_hnlm.llm.hybrid_encoder import folder_hash

    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    hashes = []
    for caller_seed, folder, hnlm_seed in ((1, "c", 7), (1, "a", 2020), (2, "b", 2020)):
        config = dict(_small_finetune_config(tmp_path, tiny_llama_dir, str(tmp_path / "s.safetensors")),
                      hnlm_adapter_path=str(tmp_path / folder), hnlm_ft_lora_dropout=0.1,
                      hnlm_negatives_per_pair=caller_seed, hnlm_seed=hnlm_seed)
        model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
        torch.manual_seed(caller_seed)
        state = torch.get_rng_state()
        ensure_finetuned(LLMConfig.from_config(config), text, str(tmp_path / "s.safetensors"), progress=False,
                         lm_and_tokenizer=(model, tokenizer), embed=False)
        assert torch.equal(torch.get_rng_state(), state)
        hashes.append(folder_hash(str(tmp_path / folder)))
    assert hashes[1] == hashes[2]
    # another hnlm_seed draws other weights (the folder hash alone differs by the seed recorded in hybrid.json)
    weights = [(tmp_path / folder / "projectors.safetensors").read_bytes() for folder in ("c", "a")]
    assert weights[0] != weights[1]
    # the semantic variant's option was accepted without a word (it plays no part here: the adapters are equal)
    assert caplog.text.count("hnlm_negatives_per_pair=2 is ignored") == 1 and "per_pair=1" not in caplog.text
    # an adapter of another prompt template is trained again, not reported as matching (and refused at the embed)
    settings_file = tmp_path / "b" / "hybrid.json"
    settings = json.loads(settings_file.read_text())
    installed, settings["template"] = settings["template"], "hybrid_query.v1@0000"
    settings_file.write_text(json.dumps(settings))
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    with caplog.at_level(logging.WARNING):
        ensure_finetuned(LLMConfig.from_config(config), text, str(tmp_path / "s.safetensors"), progress=False,
                         lm_and_tokenizer=(model, tokenizer), embed=False)
    assert json.loads(settings_file.read_text())["template"] == installed
    # the folder was replaced without a word: a folder the user named may hold an adapter they meant to keep
    assert caplog.text.count("was fine-tuned with other settings or data than this run's (template: "
                             f"'hybrid_query.v1@0000' -> {installed!r})") == 1  # what changed, not only its name


def test_4bit_where_it_cannot_run_is_refused_before_announcing_a_fine_tuning(tmp_path, tiny_llama_dir, teacher_path,
                                                                            data_root, mini_recbole, caplog):
    """hnlm_load_in_4bit on a machine without CUDA warned that the adapter would be fine-tuned again over (the
    compute setting differs), then failed to load the LLM: the adapter was never touched. The refusal now comes
    first, and the adapter folder stays as it was."""
    import pytest

    from recbole_hnlm.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("4-bit loading can run here")
    config = _small_finetune_config(tmp_path, tiny_llama_dir, str(tmp_path / "s.safetensors"))
    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    ensure_finetuned(LLMConfig.from_config(config), text, str(tmp_path / "s.safetensors"), progress=False,
                     lm_and_tokenizer=(model, tokenizer), embed=False)
    adapter = str(tmp_path / "adapter")
    before = folder_hash(adapter)
    caplog.set_level(logging.WARNING)
    with pytest.raises(ConfigError, match="4-bit loading \\(bitsandbytes\\) needs a CUDA GPU"):
        ensure_finetuned(LLMConfig.from_config(dict(config, hnlm_load_in_4bit=True)), text,
                         str(tmp_path / "s.safetensors"), progress=False, embed=False)
    assert "fine-tuned again" not in caplog.text and folder_hash(adapter) == before


def test_damaged_teacher_and_adapter_files_are_named(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole):
    """A truncated teacher, a store given as teacher, a truncated adapter file or settings file, or a folder as the
    store path gave raw tracebacks (SafetensorError, JSONDecodeError, IsADirectoryError); now one error naming the
    file and the remedy, and damaged adapter settings are fine-tuned again."""
    import shutil

    import pytest

    from recbole_hnlm.errors import DataError
    from recbole_hnlm.llm.pipeline import store_path_for
    from recbole_hnlm.llm.teacher import training_settings

    truncated = tmp_path / "teacher.safetensors"
    data = open(teacher_path, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    for read in (Teacher.load, training_settings):
        with pytest.raises(DataError, match=f"{truncated}: not a readable teacher file .*--overwrite"):
            read(str(truncated))

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    store = str(tmp_path / "ft.safetensors")
    config = _small_finetune_config(tmp_path, tiny_llama_dir, store)
    cfg = LLMConfig.from_config(config)
    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    with pytest.raises(DataError, match="format 'recbole_hnlm/pair-neg-emb/v1', expected"):
        Teacher.load(store)

    adapter = tmp_path / "adapter"
    broken = tmp_path / "broken"
    shutil.copytree(adapter, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match=f"{broken}: not a readable fine-tuned adapter .*Delete the folder"):
        HybridPromptEncoder.load(model, tokenizer, str(broken))
    settings = next(p for p in broken.iterdir() if p.suffix == ".json" and "adapter_config" not in p.name)
    settings.write_text(settings.read_text()[:20])
    with pytest.raises(DataError, match="not a readable fine-tuned adapter"):
        HybridPromptEncoder.load(model, tokenizer, str(broken))
    from recbole_hnlm.llm.finetune_pipeline import _adapter_refit_reason

    reason = _adapter_refit_reason(str(broken), {})  # not reused; the caller warns with this
    assert reason is not None and f"{broken}: not a readable fine-tuned adapter" in reason
    assert reason.endswith("it is fine-tuned again")

    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder: hnlm_store_path names the store's .safetensors file"):
        store_path_for(LLMConfig.from_config({**config, "hnlm_store_path": str(folder)}), data_root, "mini")


def test_saving_an_adapter_of_a_gguf_model_warns_nothing(tmp_path, tiny_llama_dir):
    """PEFT looked for config.json beside the base model to tell whether the vocabulary changed, and warned "Could not
    find a config file ... will assume that the vocabulary was not modified" at every save of SmolLM2's adapter (a
    GGUF folder has none). LoRA never targets the embeddings, so none are saved either way."""
    import warnings

    from safetensors import safe_open

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")  # fresh: LoRA is put into it in place
    encoder = HybridPromptEncoder(model, tokenizer, cf_dim=8, lora=dict(r=2, alpha=4, dropout=0.0))
    gguf_folder = tmp_path / "gguf"
    gguf_folder.mkdir()
    encoder.body.peft_config["default"].base_model_name_or_path = str(gguf_folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.save(str(tmp_path / "adapter"), {})
    assert not [str(w.message) for w in caught if "config file" in str(w.message)]
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    assert names and all("lora_" in name for name in names)


def test_runs_reusing_one_adapter_embed_side_by_side(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole,
                                                     caplog):
    """A run embedding its own store with an adapter another run was only reading (reused, not fine-tuned) was
    refused as if that run were writing it; fine-tuning over an adapter others read still is, and a fine-tuning
    that another process finished while this one waited for nothing is reused, not run again."""
    import logging

    import recbole_hnlm.llm.finetune_pipeline as pipeline
    from recbole_hnlm.errors import ConcurrentWriterError

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    first = str(tmp_path / "first.safetensors")
    cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, first))
    ensure_finetuned(cfg, text, first, progress=False, lm_and_tokenizer=(model, tokenizer))
    adapter = str(tmp_path / "adapter")
    weights = os.path.join(adapter, "adapter_model.safetensors")
    trained = os.stat(weights).st_mtime_ns
    second = str(tmp_path / "second.safetensors")
    with held_by_another_process(adapter + ".lock", shared=True):  # a run embedding with the adapter
        ensure_finetuned(cfg, text, second, progress=False, lm_and_tokenizer=(model, tokenizer))
        assert PairEmbeddingStore.open(second).num_pairs == PairEmbeddingStore.open(first).num_pairs
        other = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, second, hnlm_ft_epochs=2))
        with pytest.raises(ConcurrentWriterError, match=r"adapter\.lock: other processes are reading the adapter "):
            ensure_finetuned(other, text, second, progress=False, lm_and_tokenizer=(model, tokenizer))
    assert os.stat(weights).st_mtime_ns == trained
    # seen as missing at first (another process still fine-tuning), matching once this one holds the lock
    real, calls = pipeline._adapter_refit_reason, []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(pipeline, "_adapter_refit_reason",
                        lambda *args: calls.append(args) or ("" if len(calls) == 1 else real(*args)))
    caplog.set_level(logging.INFO, logger=pipeline.__name__)
    try:
        third = str(tmp_path / "third.safetensors")
        ensure_finetuned(cfg, text, third, progress=False, lm_and_tokenizer=(model, tokenizer))
    finally:
        monkeypatch.undo()
    # then read again as a reused adapter (a cached store is a hit; readers share its lock)
    assert len(calls) == 3 and "fine-tuned by another process meanwhile; reused" in caplog.text
    assert os.stat(weights).st_mtime_ns == trained and PairEmbeddingStore.open(third).num_pairs > 0


def test_embedding_into_a_store_another_process_computes_is_refused_before_the_llm_loads(tmp_path, tiny_llama_dir,
                                                                                          teacher_path, data_root,
                                                                                          mini_recbole):
    from recbole_hnlm.errors import ConcurrentWriterError

    store = str(tmp_path / "s.safetensors")
    with held_by_another_process(store + ".work.lock"):
        cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, store))
        text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
        with pytest.raises(ConcurrentWriterError, match=r"s\.safetensors\.work\.lock: another process"):
            ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(None, None))  # nothing may load
    assert not os.path.exists(tmp_path / "adapter")


def test_a_finetuned_store_written_meanwhile_is_reused(tmp_path, tiny_llama_dir, teacher_path, data_root,
                                                       mini_recbole, caplog, monkeypatch):
    """The fine-tuned variant's embed checks the cache again under its store's lock, as the semantic one does."""
    import logging

    import recbole_hnlm.llm.pipeline as pipeline

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    store = str(tmp_path / "ft.safetensors")
    cfg = LLMConfig.from_config(_small_finetune_config(tmp_path, tiny_llama_dir, store))
    text = DatasetText(data_root, "mini", _train_token_pairs(mini_recbole))
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    written = os.stat(store).st_mtime_ns
    real, calls = pipeline._cached, []
    monkeypatch.setattr(pipeline, "_cached", lambda *args, **kwargs: calls.append(args) or (
        False if len(calls) == 1 else real(*args, **kwargs)))
    caplog.set_level(logging.INFO)
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(model, tokenizer))
    assert os.stat(store).st_mtime_ns == written and "written by another process meanwhile; reused" in caplog.text
    assert not os.path.exists(store + ".work")
