"""Mutation-audit gaps of json_answer.py, generation.py and models.py: behaviour no test pinned. Each test names the
mutants it kills (J: json_answer, G: generation, M: models; the ids of the audit's driver, not of earlier audits)."""
import logging
import os

import pytest
import torch

from recbole_hnlm.llm.json_answer import close_truncated, parse_json_answer


# --- json_answer.py -------------------------------------------------------------------------------------------------

def test_a_trailing_comma_before_a_line_break_is_dropped():
    """Kills J01 (only a comma directly before the brace was dropped): models end their last field with ",\\n}"."""
    assert parse_json_answer('{"a": "x",\n}', ["a"]) == {"a": "x"}
    assert parse_json_answer('{"a": "x", "l": ["y" ,\n  ],\n}', ["a"]) == {"a": "x", "l": ["y"]}


def test_python_literals_are_mended_only_as_whole_words():
    """Kills J03 (True/False/None replaced inside longer words: the unquoted key isTrue became "istrue")."""
    assert parse_json_answer('{"a": "x", isTrue: True, NoneLeft: None}', ["a"]) == {
        "a": "x", "isTrue": True, "NoneLeft": None}


def test_a_brace_inside_a_single_quoted_string_is_text():
    """Kills J05 (single quotes not read as string delimiters when looking for the object: it ended at the brace
    inside 'x }')."""
    assert parse_json_answer("{'a': 'x }', 'b': 'y'}", ["a", "b"]) == {"a": "x }", "b": "y"}


def test_an_opening_brace_inside_a_string_is_text():
    """Kills J23 (an opening brace inside a string counted: the object never closed)."""
    assert parse_json_answer('{"a": "brace { inside"}', ["a"]) == {"a": "brace { inside"}


def test_a_double_quote_inside_a_single_quoted_string_is_escaped():
    """Kills J16 (the single-quoted text wrapped in double quotes as it is: its own double quotes ended it)."""
    assert parse_json_answer("""{'a': 'He said "hi"'}""", ["a"]) == {"a": 'He said "hi"'}


def test_the_text_around_a_fence_without_the_object_is_read():
    """Kills J19 (only the fence read when there is one: an object after a fenced code sample was not found)."""
    assert parse_json_answer('See ```python\nprint(1)\n``` then {"a": "x"}', ["a"]) == {"a": "x"}


@pytest.mark.parametrize("fence", ["```JSON", "```"])
def test_upper_case_and_bare_fences_are_read_first(fence):
    """Kills J28 (only a ```json fence read: an example object in the prose won over the fenced answer)."""
    raw = f'Example: {{"a": "wrong"}}\n{fence}\n{{"a": "right"}}\n```'
    assert parse_json_answer(raw, ["a"]) == {"a": "right"}


def test_a_truncated_string_is_closed_after_its_last_non_blank_character():
    """Kills J09 (the text kept its trailing blanks, so a backslash before them was not seen: the closing quote it
    escaped left no object)."""
    assert parse_json_answer('{"a": "Heat  \n', ["a"], allow_truncated=True) == {"a": "Heat"}
    assert parse_json_answer('{"a": "Heat\\  ', ["a"], allow_truncated=True) == {"a": "Heat"}


def test_a_truncated_answer_that_repeats_the_answer_prefix_is_closed():
    """The truncated twin of test_an_unbalanced_brace_before_the_object_is_skipped (test_semantic_checks.py): the
    reasoning of a hard-negative answer often runs past its 48-token budget."""
    raw = '{"hard_negative_item": "{"hard_negative_item": "Heat", "reasoning": "it is a crime film with a long'
    assert parse_json_answer(raw, ["hard_negative_item"], allow_truncated=True) == {
        "hard_negative_item": "Heat", "reasoning": "it is a crime film with a long"}


def test_a_list_cut_by_the_budget_is_closed_by_its_own_bracket():
    """An open list was closed with '}' (no JSON), so the answer fell back to the comma before it and lost the list."""
    raw = '{"hard_negative_item": "Heat", "tags": ["crime", "thri'
    assert parse_json_answer(raw, ["hard_negative_item"], allow_truncated=True) == {
        "hard_negative_item": "Heat", "tags": ["crime", "thri"]}
    assert close_truncated('{"a": {"b": [1, {"c": "d')[0] == '{"a": {"b": [1, {"c": "d"}]}}'


# --- models.py: the names of local models ---------------------------------------------------------------------------

def _write(path, data: bytes):
    with open(path, "wb") as handle:
        handle.write(data)


def test_a_large_file_is_fingerprinted_by_its_size_and_its_start_middle_and_end(tmp_path):
    """Kills M01 (only files up to 4 MiB read whole: a change 4.5 MiB into an 11 MiB file went unseen), M02 / M03
    (the end / start sample dropped) and M04 (the size not hashed: two checkpoints alike in every sample)."""
    from recbole_hnlm.llm.models import _SAMPLE_BYTES, _file_fingerprint

    mib = 2 ** 20
    assert _SAMPLE_BYTES == 4 * mib
    base = bytes(range(256)) * (13 * mib // 256)  # 13 MiB: sampled (start, middle, end)
    path = str(tmp_path / "w.bin")
    _write(path, base)
    reference = _file_fingerprint(path)
    for offset in (0, len(base) - 1):  # a byte of the first and of the last tensor
        changed = bytearray(base)
        changed[offset] ^= 1
        _write(path, bytes(changed))
        assert _file_fingerprint(path) != reference, offset
    changed = bytearray(base)
    changed[5 * mib] ^= 1  # between the start and the middle sample: not read (the documented trade-off)
    _write(path, bytes(changed))
    assert _file_fingerprint(path) == reference
    _write(path, bytes(13 * mib))
    zeros_13 = _file_fingerprint(path)
    _write(path, bytes(14 * mib))
    assert _file_fingerprint(path) != zeros_13  # same samples, another size
    medium = bytearray(11 * mib)  # up to 12 MiB: read whole
    _write(path, bytes(medium))
    whole = _file_fingerprint(path)
    medium[4 * mib + mib // 2] = 1
    _write(path, bytes(medium))
    assert _file_fingerprint(path) != whole


def test_a_models_fingerprint_covers_its_file_names_in_any_order(tmp_path):
    """Kills M05 (file names not hashed: a file renamed, e.g. another tokenizer file, kept the name) and M06 (the
    files in os.walk order: a copy elsewhere, walked in another order, got another name)."""
    from recbole_hnlm.llm.models import _model_fingerprint

    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("{}")
    assert _model_fingerprint(str(tmp_path), ["a.json"]) != _model_fingerprint(str(tmp_path), ["b.json"])
    assert _model_fingerprint(str(tmp_path), ["a.json", "b.json"]) == _model_fingerprint(str(tmp_path),
                                                                                         ["b.json", "a.json"])


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_a_models_name_follows_its_configs_and_nested_files_not_its_readme(tmp_path, tiny_llama_dir):
    """Kills M07 (.json files left out: a changed config or tokenizer_config kept the name and its cached
    artifacts), M08 (READMEs and hidden files counted: a note added to the folder changed the name), M09 (files in
    sub-folders, e.g. sentence-transformers' 1_Pooling/config.json, left out) and M34 (a shorter fingerprint)."""
    import json
    import re

    from recbole_hnlm.llm.models import resolve_encoder, resolve_generator

    folder = _copy(tiny_llama_dir, tmp_path / "model")
    name = resolve_generator(folder).name
    assert re.fullmatch(r"model@[0-9a-f]{12}", name), name
    (tmp_path / "model" / "README.txt").write_text("notes")
    (tmp_path / "model" / ".notes.json").write_text("{}")
    assert resolve_generator(folder).name == name
    config = json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())
    config["model_max_length"] = 128
    (tmp_path / "model" / "tokenizer_config.json").write_text(json.dumps(config))
    renamed = resolve_generator(folder).name
    assert renamed != name
    (tmp_path / "model" / "1_Pooling").mkdir()
    (tmp_path / "model" / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    pooled = resolve_encoder(folder).name
    assert pooled != renamed
    (tmp_path / "model" / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert resolve_encoder(folder).name != pooled


def test_a_gguf_file_is_named_by_itself_and_found_by_its_absolute_folder(tmp_path, monkeypatch):
    """Kills M10 (a GGUF file named by every file of its folder: another quantisation saved beside it changed its
    name), M11 (a relative path gave the folder "", which transformers cannot load from)."""
    from recbole_hnlm.llm.models import resolve_generator

    _write(str(tmp_path / "a.Q4.gguf"), b"GGUF" + bytes(64))
    name = resolve_generator(str(tmp_path / "a.Q4.gguf")).name
    assert name.startswith("a.Q4.gguf@")
    _write(str(tmp_path / "a.Q8.gguf"), b"GGUF" + bytes(128))
    assert resolve_generator(str(tmp_path / "a.Q4.gguf")).name == name
    monkeypatch.chdir(tmp_path)
    ref = resolve_generator("a.Q4.gguf")
    assert (ref.folder, ref.gguf_file, ref.name) == (str(tmp_path), "a.Q4.gguf", name)


def test_a_folder_given_with_a_trailing_slash_keeps_its_name(tmp_path, tiny_llama_dir):
    """Kills M12 (the base name of "model/" is "": the name became "@<fingerprint>")."""
    from recbole_hnlm.llm.models import resolve_generator

    folder = _copy(tiny_llama_dir, tmp_path / "model")
    assert resolve_generator(folder + os.sep).name == resolve_generator(folder).name
    assert resolve_generator(folder + os.sep).name.startswith("model@")


def test_a_missing_folder_is_reported_as_missing(tmp_path):
    """Kills M13 / M14 (a path that does not exist reported as a folder without config.json)."""
    from recbole_hnlm.llm.models import ModelNotFound, resolve_encoder, resolve_generator

    with pytest.raises(ModelNotFound, match=r"hnlm_encoder: encoder folder .*nope not found \(no hub access"):
        resolve_encoder(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match=r"hnlm_generator: model folder .*nope not found \(no hub access"):
        resolve_generator(str(tmp_path / "nope"))


def test_a_default_model_module_that_is_no_package_is_not_found():
    """Kills M36 (a module of the package's name, which has no folder, was a TypeError)."""
    from recbole_hnlm.llm.models import ModelNotFound, _package_folder

    with pytest.raises(ModelNotFound, match="hnlm_generator: default model package 'hashlib' is not installed"):
        _package_folder("hashlib", "hnlm_generator")


# --- models.py: loading ---------------------------------------------------------------------------------------------

def test_a_loaded_model_is_in_eval_mode_in_the_dtype_asked(tiny_llama_dir):
    """Pins eval mode (M16, model.eval() dropped, is equivalent today: from_pretrained already returns the model in
    eval mode) and kills M17 (the dtype not passed)."""
    from recbole_hnlm.llm.models import load_model, resolve_generator

    model = load_model(resolve_generator(tiny_llama_dir), dtype="bfloat16", device="cpu")
    assert not model.training and not any(m.training for m in model.modules())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_the_legacy_notice_filter_drops_that_notice_only_and_is_added_once():
    """Kills M18 (every record passed) and M19 (a filter added at every tokenizer load)."""
    from recbole_hnlm.llm.models import _LEGACY_NOTICE_LOGGERS, _LegacyNoticeFilter, _quiet_legacy_notice

    _quiet_legacy_notice()
    _quiet_legacy_notice()
    for name in _LEGACY_NOTICE_LOGGERS:
        target = logging.getLogger(name)
        assert sum(isinstance(f, _LegacyNoticeFilter) for f in target.filters) == 1

        def record(msg):
            return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

        assert not target.filter(record("You are using the default legacy behaviour of the <class 'x'>."))
        assert target.filter(record("Some other warning"))


def test_a_loaded_tokenizer_pads_on_the_left_with_a_pad_token(tiny_llama_dir):
    """Kills M20 (right padding) and M21 (no pad token set when the tokenizer has none: generate had no pad id)."""
    from transformers import AutoTokenizer

    from recbole_hnlm.llm.models import load_tokenizer, prepare_tokenizer

    tokenizer, _ = load_tokenizer(tiny_llama_dir)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<pad>"
    bare = AutoTokenizer.from_pretrained(tiny_llama_dir, local_files_only=True)
    bare.pad_token = None
    prepare_tokenizer(bare)
    assert bare.pad_token == "<eos>" and bare.padding_side == "left"


def _word_tokenizer(words, eos=None):
    """A word-level tokenizer of ``words`` (the first is its unknown token), with ``eos`` as its EOS when given."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=words[0], eos_token=eos)


def test_stop_tokens_are_eos_and_the_end_of_turn_markers(tiny_tokenizer):
    """Kills M22 (EOS left out of the stop ids) and M23 (ChatML's <|im_end|> left out: generation ran on past the
    end of the answer's turn, into the next one)."""
    from recbole_hnlm.llm.models import stop_token_ids

    ids = tiny_tokenizer.convert_tokens_to_ids(["<eos>", "<|im_end|>"])
    assert stop_token_ids(tiny_tokenizer) == ids
    assert stop_token_ids(_word_tokenizer(["<unk>", "a", "</s>"], eos="</s>")) == [2]  # listed once


def test_the_pooled_end_token_is_the_end_of_turn_marker_else_eos():
    """Kills M24 (EOS pooled where the tokenizer has <|im_end|>) and M25 (no EOS at all was token id None)."""
    from recbole_hnlm.llm.models import end_of_sequence_id

    assert end_of_sequence_id(_word_tokenizer(["<unk>", "<eos>", "<|im_end|>"], eos="<eos>")) == 2
    assert end_of_sequence_id(_word_tokenizer(["<unk>", "<eos>", "a"], eos="<eos>")) == 1
    with pytest.raises(ValueError, match="no EOS token to pool at"):
        end_of_sequence_id(_word_tokenizer(["<unk>", "a"]))


def test_the_mean_pooled_encoder_normalises_cuts_at_256_tokens_and_encodes_nothing(tiny_encoder_dir):
    """Kills M27 (normalize ignored by mean pooling), M30 (load_text_encoder dropped normalize), M28 (no texts: a
    1-d tensor instead of [0, dim]) and M29 (texts cut at another length)."""
    from llm_helpers import MOVIES
    from recbole_hnlm.llm.models import load_text_encoder

    encoder = load_text_encoder(tiny_encoder_dir, batch_size=2, normalize=True)
    out = encoder.encode(["Heat", "Fargo Casino", "Balto"])
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert encoder.encode([]).shape == (0, 24)
    words = (MOVIES * 40)[:300]
    long, cut = encoder.encode([" ".join(words), " ".join(words[:256])])
    torch.testing.assert_close(long, cut)


MOVIES_5 = ["Heat", "Casino", "Fargo", "Clueless", "Balto"]


# --- generation.py --------------------------------------------------------------------------------------------------

def _scripted(tokenizer, answer, **kwargs):
    """A real :class:`Generator` whose model answers ``answer(prompt_text, seed)``; each call's prompts recorded."""
    from recbole_hnlm.llm.generation import Generator

    class Scripted(Generator):
        def _generate_ids(self, id_lists, seeds):
            prompts = [self.tokenizer.decode(ids) for ids in id_lists]
            self.calls.append(prompts)
            return [answer(p, s) for p, s in zip(prompts, seeds or [None] * len(prompts))]

    gen = Scripted(torch.nn.Linear(1, 1), tokenizer, **kwargs)
    gen.calls = []
    return gen


def test_special_tokens_the_model_writes_are_left_out_of_its_answer(tiny_tokenizer):
    """Kills G16 (special tokens decoded as text: "<|im_start|>" inside the answer the parser then reads)."""
    from recbole_hnlm.llm.generation import Generator

    gen = Generator(torch.nn.Linear(1, 1), tiny_tokenizer)
    heat, start, fargo, stop = tiny_tokenizer.convert_tokens_to_ids(["Heat", "<|im_start|>", "Fargo", "<|im_end|>"])
    assert gen._decode(torch.tensor([[heat, start, fargo, stop]])) == [("Heat Fargo", False)]


def test_prompts_are_generated_batch_size_at_a_time(tiny_tokenizer):
    """Kills G27 (every prompt still to answer in one generate call, whatever gen_batch_size: the memory bound the
    setting promises was gone)."""
    gen = _scripted(tiny_tokenizer, lambda prompt, seed: '"x"}', batch_size=2, retries=0)
    results = gen.generate(MOVIES_5, required=["a"], answer_prefix='{"a": ')
    assert [r["ok"] for r in results] == [True] * 5
    assert gen.calls == [MOVIES_5[:2], MOVIES_5[2:4], MOVIES_5[4:]]



def test_the_stages_retries_sample_at_the_documented_temperature_and_top_p(tiny_llama_dir):
    """Kills G38 / G39 (another default temperature / top-p: the stage passes none, docs/llm.md states 0.7 / 0.9,
    and neither is in the store's generation settings, so other answers would have been cache hits)."""
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.generation import RowSampler
    from recbole_hnlm.llm.pipeline import _generator

    gen, _ = _generator(LLMConfig(generator=tiny_llama_dir), 8, progress=False)
    assert (gen.do_sample, gen.temperature, gen.top_p) == (False, 0.7, 0.9)
    sampler = gen._gen_kwargs([1, 2])["logits_processor"][0]
    assert isinstance(sampler, RowSampler) and (sampler.temperature, sampler.top_p) == (0.7, 0.9)
    assert "logits_processor" not in gen._gen_kwargs(None)  # greedy first attempts


def test_a_deferred_model_loads_once_at_its_first_use(tiny_tokenizer):
    """Kills G41 (the loader called at every use of .model: a 7B model loaded again for each batch)."""
    from recbole_hnlm.llm.generation import Generator

    loads = []

    def load():
        loads.append(1)
        return torch.nn.Linear(1, 1)

    gen = Generator(None, tiny_tokenizer, load_model=load)
    assert loads == []
    assert gen.model is gen.model and gen.device == torch.device("cpu")
    assert loads == [1]


def test_the_check_gets_each_prompts_own_index_across_batches(tiny_tokenizer):
    """Kills G44 (the check given the index within the batch: with gen_batch_size below the number of pairs, a pair's
    answer was checked against another pair's item)."""
    seen = []

    def check(index, answer):
        seen.append((index, answer["a"]))
        return None if answer["a"] != "Fargo" else "names the interacted item itself"

    gen = _scripted(tiny_tokenizer, lambda prompt, seed: f'{prompt.split()[-1]}"}}', batch_size=2, retries=0)
    results = gen.generate_with_prefix("user", [f" {m}" for m in MOVIES_5], required=["a"], answer_prefix='{"a": "',
                                       use_cache=False, check=check)
    assert seen == list(enumerate(MOVIES_5))
    assert [r["ok"] for r in results] == [True, True, False, True, True]
    assert results[2]["error"] == "names the interacted item itself"


def test_sampling_seeds_are_63_bit_and_differ_between_prompts():
    """Kills G43 (seeds cut to 16 bits: among a dataset's thousands of pairs, many drew the same random stream)."""
    from recbole_hnlm.llm.generation import _seed_for

    seeds = {_seed_for(f"prompt {k}", 1, 2020) for k in range(2000)}
    assert len(seeds) == 2000 and max(seeds) < 2 ** 63 and max(seeds) > 2 ** 60
    assert _seed_for("prompt 1", 1, 2020) == _seed_for("prompt 1", 1, 2020)


def test_the_cut_warning_names_the_limit_that_cut(tiny_llama_dir, caplog):
    """The warning always blamed "the model's context less the answer budget", also when the limit was the user's
    max_prompt_tokens or left room for the suffix that follows a shared prefix."""
    from recbole_hnlm.llm.generation import Generator
    from recbole_hnlm.llm.models import load_causal_lm

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    caplog.set_level(logging.WARNING)
    Generator(model, tokenizer, max_new_tokens=3, retries=0, max_prompt_tokens=4)._encode("Heat " * 10, reserve=1)
    assert "is cut to its last 3 (max_prompt_tokens, less the 1 token of the text that follows it)" in caplog.text
    caplog.clear()
    context = model.config.max_position_embeddings
    Generator(model, tokenizer, max_new_tokens=3, retries=0)._encode("Heat " * (context + 10))
    assert f"is cut to its last {context - 3} (the model's context less the answer budget):" in caplog.text
