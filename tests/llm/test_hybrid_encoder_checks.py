"""The hybrid prompt (paper §4.2, algorithms.md §5.3), its soft tokens, batching, persistence, and the prefix/segment
attention's keywords: behaviour the equivalence tests of test_llm_finetune.py and test_prefix_attention.py leave open
(they compare the encoder's paths with each other, built from the encoder's own prompt pieces)."""
import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from recbole_hnlm.errors import DataError
from recbole_hnlm.llm.hybrid_encoder import (SETTINGS_FILE, HybridPromptEncoder, PromptGroup, _sort_target_modules,
                                             folder_hash, info_nce, read_settings)
from recbole_hnlm.llm.models import load_causal_lm
from recbole_hnlm.llm.prefix_attention import _attention_forward, prefix_segment_attention, prefix_segment_forward
from test_llm_finetune import _opening_with

INSTRUCTION = ("Instruct: Based on the user's embedding and profile and the interacted item's embedding, produce the "
               "user's hard negative embedding.\nQuery: USER: ")
LORA = dict(r=4, alpha=8, dropout=0.0)


def _encoder(tiny_llama_dir, tokenizer=None, **kwargs):
    model, tok, _ = load_causal_lm(tiny_llama_dir, device="cpu")  # fresh: LoRA is put into the model in place
    torch.manual_seed(0)
    return HybridPromptEncoder(model, tokenizer or tok, cf_dim=8, **kwargs)


def _rows_of(enc, text):
    """The token-embedding rows of ``text`` tokenised alone, without special tokens."""
    ids = enc.tokenizer(text, add_special_tokens=False)["input_ids"]
    return enc.token_embeddings().weight[ids]


# ---- the prompt of Eq. 11 ----------------------------------------------------------------------------------------
def test_the_hybrid_prompt_is_instruction_user_soft_tokens_profile_item_soft_tokens_text_and_eos(tiny_llama_dir):
    """x = [instruction; MLP(e_u), profile_u, MLP(e_i), profile_i] + [EOS], the soft tokens in their slots."""
    enc = _encoder(tiny_llama_dir, soft_tokens=2)
    soft_u = enc._soft(enc.user_proj, torch.randn(1, 8))[0]
    soft_i = enc._soft(enc.item_proj, torch.randn(1, 8))[0]
    with torch.no_grad():
        prefix = enc.prefix_embeds("liked: Heat", soft_u)
        suffix = enc.suffix_embeds(" Fargo", soft_i)
        head, tail = _rows_of(enc, INSTRUCTION), _rows_of(enc, " liked: Heat\nITEM:")
        item = _rows_of(enc, " Fargo")
    assert enc.start_ids == []  # the tiny tokenizer opens texts with nothing
    torch.testing.assert_close(prefix, torch.cat([head, soft_u, tail]), rtol=0, atol=0)
    eos = enc.token_embeddings().weight[enc.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert enc.eos_id == enc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    torch.testing.assert_close(suffix, torch.cat([soft_i, item, eos[None]]), rtol=0, atol=0)


def test_pieces_are_tokenised_without_special_tokens_and_the_start_token_opens_the_prompt_once(tiny_llama_dir):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    opening = _opening_with(tokenizer, "[CLS]")
    enc = HybridPromptEncoder(model, opening, cf_dim=8)
    cls_row = enc.token_embeddings().weight[opening.convert_tokens_to_ids("[CLS]")]
    with torch.no_grad():
        prefix = enc.prefix_embeds("liked: Heat", enc._soft(enc.user_proj, torch.randn(1, 8))[0])
        suffix = enc.suffix_embeds(" Fargo", enc._soft(enc.item_proj, torch.randn(1, 8))[0])
    is_cls = lambda rows: [bool(torch.equal(r, cls_row)) for r in rows]  # noqa: E731
    assert is_cls(prefix) == [True] + [False] * (prefix.shape[0] - 1)
    assert not any(is_cls(suffix))
    assert enc._ids("liked: Heat") == tokenizer("liked: Heat", add_special_tokens=False)["input_ids"]


def test_a_template_without_a_start_section_adds_no_start_token(tiny_llama_dir, tmp_path):
    source = open(os.path.join(os.path.dirname(__import__("recbole_hnlm.llm.prompts", fromlist=["x"]).__file__),
                               "prompts", "hybrid_query.v3.txt"), encoding="utf-8").read()
    path = tmp_path / "hybrid_nostart.v1.txt"
    path.write_text(source.replace("### start\ntokenizer\n", ""), encoding="utf-8")
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    enc = HybridPromptEncoder(model, _opening_with(tokenizer, "[CLS]"), cf_dim=8, template=str(path))
    assert not enc.template.opens_with_start_tokens and enc.start_ids == []


# ---- soft tokens and projectors ---------------------------------------------------------------------------------
def test_soft_tokens_are_unit_directions_times_their_slots_trainable_norm(tiny_llama_dir):
    """The norm starts at the mean norm of the real token embeddings; user and item slots have one norm each."""
    enc = _encoder(tiny_llama_dir, soft_tokens=3)
    mean_norm = enc.token_embeddings().weight.detach().norm(dim=-1).mean()
    torch.testing.assert_close(enc.soft_scale.detach(), torch.stack([mean_norm, mean_norm]))
    cf = torch.randn(4, 8) * 100  # whatever the CF scale
    with torch.no_grad():
        enc.soft_scale.copy_(torch.tensor([2.0, 5.0]))
        user, item = enc._soft(enc.user_proj, cf), enc._soft(enc.item_proj, cf)
    assert user.shape == item.shape == (4, 3, 32) and user.dtype == torch.float32
    torch.testing.assert_close(user.norm(dim=-1), torch.full((4, 3), 2.0))
    torch.testing.assert_close(item.norm(dim=-1), torch.full((4, 3), 5.0))
    torch.testing.assert_close(enc.targets(cf.double()), enc.targets(cf))  # any float CF dtype


def test_projectors_are_two_layer_mlps_and_only_lora_and_projectors_train(tiny_llama_dir):
    """MLP "analogous to Eq. 6" (W2 act(W1 x + b1) + b2), hidden = max(in, out); the LLM body is frozen, LoRA on
    q/k/v/o with the settings given."""
    enc = _encoder(tiny_llama_dir, soft_tokens=2, lora=dict(r=4, alpha=16, dropout=0.1))
    shapes = {name: tuple(t.shape) for name, t in enc.trainable_state().items()}
    assert shapes == {"user_proj.0.weight": (64, 8), "user_proj.0.bias": (64,), "user_proj.2.weight": (64, 64),
                      "user_proj.2.bias": (64,), "item_proj.0.weight": (64, 8), "item_proj.0.bias": (64,),
                      "item_proj.2.weight": (64, 64), "item_proj.2.bias": (64,), "target_proj.0.weight": (32, 8),
                      "target_proj.0.bias": (32,), "target_proj.2.weight": (32, 32), "target_proj.2.bias": (32,),
                      "soft_scale": (2,)}
    assert isinstance(enc.user_proj[1], torch.nn.GELU) and isinstance(enc.target_proj[1], torch.nn.GELU)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    body = {n for n in trainable if n.startswith("body.")}
    assert body and all("lora_" in n for n in body)
    assert trainable - body == {n for n, _ in enc.named_parameters() if n.startswith(("user_proj", "item_proj",
                                                                                      "target_proj", "soft_scale"))}
    config = enc.body.peft_config["default"]
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 16, 0.1)
    assert {n.split(".")[-4] for n in body} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    plain = _encoder(tiny_llama_dir)  # no adapter (embedding with a loaded one): the LLM body stays frozen too
    assert not any(p.requires_grad for p in plain.body.parameters())


def test_info_nce_is_softmax_over_cosines_with_in_batch_and_explicit_negatives():
    """Reconstructed Eq. 12: -log softmax of cos/tau, the own positive against other rows' positives and the
    row's explicit negatives."""
    torch.manual_seed(0)
    q, p, n, tau = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 2, 5), 0.2
    cos = lambda a, b: F.cosine_similarity(a, b, dim=-1)  # noqa: E731
    expected = 0.0
    for b in range(3):
        logits = torch.cat([cos(q[b][None], p), cos(q[b][None], n[b])]) / tau
        expected += -torch.log_softmax(logits, 0)[b] / 3
    torch.testing.assert_close(info_nce(q, p * 7, n * 3, tau), expected)
    torch.testing.assert_close(info_nce(q, p, torch.zeros(3, 0, 5), tau), info_nce(q, p, None, tau))


# ---- batching of embed ------------------------------------------------------------------------------------------
def _forward_batches(enc, groups, **kwargs):
    """Rows per forward of ``enc.embed`` (a hook on the real body, which still runs) and the embeddings."""
    sizes = []
    hook = enc.body.register_forward_pre_hook(lambda m, a, kw: sizes.append(tuple(kw["inputs_embeds"].shape[:2])),
                                              with_kwargs=True)
    try:
        with torch.no_grad():
            out = enc.embed(groups, **kwargs)
    finally:
        hook.remove()
    return sizes, out


def test_embed_packs_rows_into_forwards_of_at_most_tokens_per_forward(tiny_llama_dir):
    """A wide row fills its forward alone; the narrow rows after it, two to the budget, share the next."""
    enc = _encoder(tiny_llama_dir).eval()
    wide = "liked: Toy Story (1995); Babe; Casino; Clerks; Seven; Fargo; Heat"
    groups = [PromptGroup(u, torch.randn(8), ["x"], torch.randn(1, 8)) for u in (wide, "liked: Heat", "liked: Babe")]
    widths = [r.width for r in enc._rows(groups)]
    assert widths[1] == widths[2] < widths[0]
    sizes, out = _forward_batches(enc, groups, tokens_per_forward=2 * widths[1])
    assert [s[0] for s in sizes] == [1, 2]
    with torch.no_grad():
        torch.testing.assert_close(out, enc.encode_groups(groups), atol=1e-5, rtol=1e-4)
    sizes, _ = _forward_batches(enc, groups, tokens_per_forward=3 * widths[0])
    assert [s[0] for s in sizes] == [3]


def test_embed_forwards_stay_within_tokens_per_forward_on_the_segment_path(tiny_llama_dir):
    """embed() budgeted a forward as its widest row times its rows, while the segment path pads every row to the
    longest prefix plus the most suffix tokens: a long-prefix row beside a many-item row went 26 % over."""
    enc = _encoder(tiny_llama_dir).eval()
    long_user = "liked: Toy Story (1995); Babe; Casino; Clerks; Seven; Fargo; Heat"
    groups = [PromptGroup(long_user, torch.randn(8), [""], torch.randn(1, 8)),
              PromptGroup("liked: Heat", torch.randn(8), [""] * 12, torch.randn(12, 8))]
    budget = 2 * max(r.width for r in enc._rows(groups))
    sizes, _ = _forward_batches(enc, groups, tokens_per_forward=budget)
    assert all(rows * width <= budget for rows, width in sizes if rows > 1), (sizes, budget)


def test_equal_suffixes_run_the_prefix_segment_layout_and_unequal_ones_the_dense_mask(tiny_llama_dir):
    enc = _encoder(tiny_llama_dir).eval()
    calls = []
    hook = enc.body.register_forward_pre_hook(lambda m, a, kw: calls.append(sorted(kw)), with_kwargs=True)
    try:
        with torch.no_grad():
            enc.encode_groups([PromptGroup("liked: Heat", torch.randn(8), ["", ""], torch.randn(2, 8))])
            enc.encode_groups([PromptGroup("liked: Heat", torch.randn(8), ["", " Fargo"], torch.randn(2, 8))])
    finally:
        hook.remove()
    assert "hnlm_layout" in calls[0] and "attention_mask" not in calls[0]
    assert "hnlm_layout" not in calls[1] and "attention_mask" in calls[1]


# ---- persistence ------------------------------------------------------------------------------------------------
@pytest.fixture
def saved(tiny_llama_dir, tmp_path):
    enc = _encoder(tiny_llama_dir, soft_tokens=2, lora=LORA)
    with torch.no_grad():
        enc.soft_scale.copy_(torch.tensor([3.0, 4.0]))
        for p in enc.body.parameters():
            if p.requires_grad:  # a non-zero adapter (lora_B starts at zero)
                p.add_(0.05)
    folder = str(tmp_path / "adapter")
    enc.save(folder, {"b": 1, "a": 2})
    return enc.eval(), folder


def _embeddings(enc):
    torch.manual_seed(5)
    groups = [PromptGroup("liked: Heat", torch.randn(8), ["", " Fargo"], torch.randn(2, 8))]
    with torch.no_grad():
        return enc.encode_groups(groups)


def test_a_saved_encoder_loads_merged_in_eval_mode_with_its_settings_scale_and_numbers(saved, tiny_llama_dir):
    enc, folder = saved
    settings = read_settings(folder)
    assert settings == {"a": 2, "b": 1, "cf_dim": 8, "soft_tokens": 2, "hidden": 32, "lora": LORA,
                        "template": enc.template.version}
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    loaded = HybridPromptEncoder.load(model, tokenizer, folder)
    assert not loaded.training and loaded.lora_settings == LORA
    assert not any("lora_" in n for n, _ in loaded.named_parameters())  # merged into the weights
    torch.testing.assert_close(loaded.soft_scale.detach(), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(_embeddings(loaded), _embeddings(enc), atol=1e-5, rtol=1e-4)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    unmerged = HybridPromptEncoder.load(model, tokenizer, folder, merge=False)
    assert any("lora_" in n for n, _ in unmerged.named_parameters())
    torch.testing.assert_close(_embeddings(unmerged), _embeddings(enc), atol=1e-5, rtol=1e-4)


def test_the_adapter_hash_is_independent_of_the_settings_order_and_covers_file_names(saved, tmp_path):
    enc, folder = saved
    other = str(tmp_path / "other")
    assert enc.save(other, {"a": 2, "b": 1}) == folder_hash(folder)
    renamed = tmp_path / "renamed"
    shutil.copytree(folder, renamed)
    os.rename(renamed / "projectors.safetensors", renamed / "projectors2.safetensors")
    assert folder_hash(str(renamed)) != folder_hash(folder)


def test_an_adapter_of_another_template_version_is_refused(saved, tiny_llama_dir):
    _, folder = saved
    path = os.path.join(folder, SETTINGS_FILE)
    settings = read_settings(folder)
    settings["template"] = settings["template"].split("@")[0] + "@00000000"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    with pytest.raises(ValueError, match="trained with template hybrid_query.v3@00000000, installed is"):
        HybridPromptEncoder.load(model, tokenizer, folder)


@pytest.mark.parametrize("damage", ["missing_key", "a_list"])
def test_settings_without_a_key_or_not_an_object_are_a_damaged_adapter(saved, tiny_llama_dir, damage):
    _, folder = saved
    settings = read_settings(folder)
    del settings["cf_dim"]
    with open(os.path.join(folder, SETTINGS_FILE), "w", encoding="utf-8") as handle:
        json.dump(settings if damage == "missing_key" else [settings], handle)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    with pytest.raises(DataError, match="not a readable fine-tuned adapter"):
        HybridPromptEncoder.load(model, tokenizer, folder)


def test_adapter_target_modules_are_written_sorted(tmp_path):
    path = str(tmp_path / "adapter_config.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"target_modules": ["v_proj", "q_proj", "o_proj", "k_proj"], "r": 4}, handle)
    _sort_target_modules(path)
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == {"target_modules": ["k_proj", "o_proj", "q_proj", "v_proj"], "r": 4}
    _sort_target_modules(str(tmp_path / "absent.json"))  # no adapter config (no LoRA): nothing to do


# ---- prefix/segment attention keywords --------------------------------------------------------------------------
def _layout_inputs(seed=0):
    torch.manual_seed(seed)
    zone, seg, n = 4, 2, 3
    q = torch.randn(2, 4, zone + n * seg, 8)
    k, v = torch.randn(2, 2, zone + n * seg, 8), torch.randn(2, 2, zone + n * seg, 8)
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    return q, k, v, zone, seg, valid


def test_the_attention_interface_passes_scaling_and_dropout_and_returns_batch_first():
    q, k, v, zone, seg, valid = _layout_inputs()
    out, weights = _attention_forward(None, q, k, v, None, dropout=0.0, scaling=0.3, hnlm_layout=(zone, seg, valid))
    assert weights is None and out.shape == (2, q.shape[2], 4, 8)
    torch.testing.assert_close(out, prefix_segment_attention(q, k, v, zone, seg, valid, 0.3).transpose(1, 2))
    default, _ = _attention_forward(None, q, k, v, None, hnlm_layout=(zone, seg, valid))
    torch.testing.assert_close(default, prefix_segment_attention(q, k, v, zone, seg, valid, 8 ** -0.5).transpose(1, 2))
    torch.manual_seed(1)
    dropped, _ = _attention_forward(None, q, k, v, None, dropout=0.5, scaling=0.3, hnlm_layout=(zone, seg, valid))
    assert not torch.allclose(dropped[:, zone:], out[:, zone:])


def test_attention_dropout_reaches_prefix_and_segment_queries_and_keeps_the_mean():
    q, k, v, zone, seg, valid = _layout_inputs()
    plain = prefix_segment_attention(q, k, v, zone, seg, valid, 0.35)
    torch.manual_seed(2)
    runs = torch.stack([prefix_segment_attention(q, k, v, zone, seg, valid, 0.35, dropout=0.3) for _ in range(400)])
    for part in (slice(0, zone), slice(zone, None)):
        assert not torch.allclose(runs[0][:, :, part], plain[:, :, part])
    torch.testing.assert_close(runs.mean(0), plain, atol=0.15, rtol=0)  # inverted dropout: the same expectation


def test_the_prefix_segment_forward_restores_the_attention_implementation_even_after_an_error(tiny_llama_dir):
    model, _, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    config = model.config
    before = config._attn_implementation
    with prefix_segment_forward(config):
        assert config._attn_implementation == "hnlm_prefix_segments"
    assert config._attn_implementation == before
    with pytest.raises(RuntimeError, match="stop"):
        with prefix_segment_forward(config):
            raise RuntimeError("stop")
    assert config._attn_implementation == before


def test_users_without_items_have_no_output_row_and_nothing_at_all_is_an_empty_batch(tiny_llama_dir):
    """A group without items adds no row (``[sum of pairs, H]``; ``encode_groups`` failed on its reshape, and both
    failed on no group at all with "stack expects a non-empty TensorList"); nothing in gives ``[0, H]`` float32 on
    the encoder's device, as the forwards' outputs are."""
    enc = _encoder(tiny_llama_dir)
    heat = PromptGroup("liked: Heat", torch.randn(8), [" Fargo", " Alien"], torch.randn(2, 8))
    nobody = PromptGroup("liked: Fargo", torch.randn(8), [], torch.randn(0, 8))
    with torch.no_grad():
        for run in (enc.encode_groups, enc.embed):
            for groups in ([], [nobody], [nobody, nobody]):
                out = run(groups)
                assert out.shape == (0, enc.hidden) and out.dtype == torch.float32 and out.device == enc.device
            torch.testing.assert_close(run([nobody, heat, nobody]), run([heat]), rtol=0, atol=0)
            assert run([nobody, heat]).shape == (2, enc.hidden)
