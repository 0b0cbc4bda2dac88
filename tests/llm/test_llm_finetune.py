"""Fine-tuned variant (§4.2-4.3): teacher export, hybrid prompt, InfoNCE training, embed path, store."""
import os

import pytest
import torch

from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.finetune import PairTexts, train_hybrid_encoder, training_examples
from recbole_hnlm.llm.finetune_pipeline import ensure_finetuned
from recbole_hnlm.llm.hybrid_encoder import HybridPromptEncoder, info_nce
from recbole_hnlm.llm.models import load_causal_lm
from recbole_hnlm.llm.store import PairEmbeddingStore
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


def test_kv_cache_inference_equals_training_forward(tiny_llama_dir):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    enc = HybridPromptEncoder(model, tokenizer, cf_dim=8, soft_tokens=2, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    user_cf, item_cf = torch.randn(8), torch.randn(3, 8)
    items = ["Toy Story (1995, Animation)", "Heat", ""]
    with torch.no_grad():
        full = enc.encode_full(["liked: Fargo; Heat"] * 3, items, user_cf.expand(3, -1), item_cf)
        cached = enc.encode_user_pairs("liked: Fargo; Heat", user_cf, items, item_cf)
        # packs of two: the second pack must see the prefix only (cache cropped back after the first)
        packed_by_two = enc.encode_user_pairs("liked: Fargo; Heat", user_cf, items, item_cf, batch_size=2)
    assert full.shape == (3, 32)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed_by_two, full, atol=1e-5, rtol=1e-4)
    assert (full[0] - full[1]).abs().max() > 1e-4  # different items -> different embeddings


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
    assert len(examples) == 16
    enc = HybridPromptEncoder(model, tokenizer, teacher.dim, 1, lora=dict(r=4, alpha=8, dropout=0.0))
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert any("lora" in n for n in trainable) and not any("embed_tokens" in n for n in trainable)
    losses = train_hybrid_encoder(enc, teacher, examples, cfg, progress=False)
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:2]) / 2


def test_finetuned_embed_writes_store_and_caches(tmp_path, tiny_llama_dir, teacher_path, data_root, mini_recbole):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    store = str(tmp_path / "ft.safetensors")
    config = {"hnlm_variant": "finetuned", "hnlm_ft_user_text": "history", "hnlm_ft_max_train_pairs": 16,
              "hnlm_ft_batch_size": 8, "hnlm_ft_epochs": 1, "hnlm_chunk_size": 16, "hnlm_store_path": store,
              "hnlm_adapter_path": str(tmp_path / "adapter"), "hnlm_generator": tiny_llama_dir}
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
    # cache hit: nothing is loaded or trained again
    mtime = os.path.getmtime(store)
    ensure_finetuned(cfg, text, store, progress=False, lm_and_tokenizer=(None, None))
    assert os.path.getmtime(store) == mtime
    # the saved adapter reproduces the in-memory embeddings
    model2, tokenizer2, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    enc = HybridPromptEncoder.load(model2, tokenizer2, str(tmp_path / "adapter"))
    teacher = Teacher.load(teacher_path)
    texts = PairTexts(text, cfg)
    u, i = s.user_tokens[0], s.item_tokens[0]
    with torch.no_grad():
        again = enc.encode_user_pairs(texts.user_text(u), teacher.user_emb[teacher.user_tokens.index(u)],
                                      [texts.item_text(i)], teacher.item_emb[[teacher.item_tokens.index(i)]])
    torch.testing.assert_close(again[0], s.emb[0].float(), atol=2e-2, rtol=1e-2)
