"""Mutation-audit gaps of the semantic hard-negative path (json_answer.py, generation.py, semantic.py): behaviour no
test pinned. Each test names the mutants it kills (J: json_answer, G: generation, S: semantic)."""
import json
import logging

import pytest
import torch

from llm_helpers import MOVIES, make_scripted_generator
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.generation import Generator, RowSampler
from recbole_hnlm.llm.json_answer import MalformedAnswer, parse_json_answer
from recbole_hnlm.llm.models import TextEncoder, stop_token_ids
from recbole_hnlm.llm.pipeline import run_negatives
from recbole_hnlm.llm.semantic import negative_name, negative_problem, pairs_sha256, semantic_manifest
from recbole_hnlm.llm.store import PairEmbeddingStore


# --- json_answer.py -------------------------------------------------------------------------------------------------

def test_a_fenced_object_is_read_before_the_text_around_it():
    """Kills J01 (the fence not read: the prose's "{this}" was the only block tried) and J16 (the whole text tried
    before the fence: an example object in the prose won over the fenced answer)."""
    assert parse_json_answer('An answer looks like {this}.\n```json\n{"a": "x"}\n```', ["a"])["a"] == "x"
    assert parse_json_answer('Example: {"a": "wrong"}\n```json\n{"a": "right"}\n```', ["a"])["a"] == "right"


def test_an_unbalanced_brace_before_the_object_is_skipped():
    """Kills J05 (the search stopped at the first "{" that never closes). A model that repeats the answer prefix
    writes an unclosed object before the real one."""
    raw = '{"hard_negative_item": "{"hard_negative_item": "Heat", "reasoning": "r"}'
    assert parse_json_answer(raw, ["hard_negative_item"])["hard_negative_item"] == "Heat"
    assert parse_json_answer('a { brace, then {"a": "x"}', ["a"]) == {"a": "x"}


def test_a_closed_but_broken_object_is_not_mended_as_a_truncated_one():
    """Kills J07 (a balanced object cut at its commas too): only an object the budget left open is closed; one the
    model closed with a broken field stays malformed rather than losing that field silently."""
    with pytest.raises(MalformedAnswer):
        parse_json_answer('{"a": "x", "b": oops}', ["a"], allow_truncated=True)


def test_a_truncated_object_keeps_every_complete_field():
    """Kills J08 (cut at the earliest comma first: complete fields after it were dropped)."""
    assert parse_json_answer('{"a": "x", "b": "y", "c', ["a"], allow_truncated=True) == {"a": "x", "b": "y"}


def test_double_quoted_strings_survive_the_single_quote_repair():
    """Kills J11 (an apostrophe inside a double-quoted string read as a single quote) and J12 (an escaped double
    quote read as the end of its string) in an answer that mixes both quote styles."""
    assert parse_json_answer("""{"a": "Schindler's List", 'b': 'y'}""", ["a", "b"]) == {
        "a": "Schindler's List", "b": "y"}
    assert parse_json_answer("""{"a": "say \\"it's\\"", 'b': 'y'}""", ["a"]) == {"a": 'say "it\'s"', "b": "y"}


def test_a_newline_inside_a_string_is_kept():
    """Kills J13 (strict JSON: a raw newline in the model's reasoning made the whole answer malformed)."""
    assert parse_json_answer('{"a": "Heat", "reasoning": "line one\nline two"}', ["a"]) == {
        "a": "Heat", "reasoning": "line one\nline two"}


@pytest.mark.parametrize("raw", ['{"a": "   "}', '{"a": 5}', '{"a": ["Heat"]}', '{"a": null}', '{"a": {"b": "x"}}'])
def test_a_required_field_must_be_a_non_blank_string(raw):
    """Kills J14 (whitespace accepted as a value) and J15 (numbers and lists accepted)."""
    with pytest.raises(MalformedAnswer, match=r"lacks non-empty string field\(s\) \['a'\]"):
        parse_json_answer(raw, ["a"])


def test_a_truncated_object_must_hold_non_blank_required_fields():
    """Kills J18 (a closed truncated object with a blank required field accepted)."""
    with pytest.raises(MalformedAnswer):
        parse_json_answer('{"a": "  ", "b": "x", "c', ["a"], allow_truncated=True)


def test_python_literals_become_their_json_values():
    """Kills J20 (None read as false)."""
    assert parse_json_answer("{'a': 'x', 'b': None, 'c': True, 'd': False}", ["a"]) == {
        "a": "x", "b": None, "c": True, "d": False}


# --- generation.py --------------------------------------------------------------------------------------------------

class _Scripted(Generator):
    """The model's answers from ``answer(prompt_text, seed)`` (seed None: greedy); each call's prompts and seeds are
    recorded. Everything around the model (_run, retries, seeds, parsing, checks) is the real Generator."""

    def __init__(self, tokenizer, answer, **kwargs):
        super().__init__(torch.nn.Linear(1, 1), tokenizer, **kwargs)
        self.answer, self.calls = answer, []

    def _generate_ids(self, id_lists, seeds):
        prompts = [self.tokenizer.decode(ids) for ids in id_lists]
        self.calls.append((prompts, seeds))
        return [self.answer(p, s) for p, s in zip(prompts, seeds or [None] * len(prompts))]


def test_retries_sample_with_a_new_seed_per_attempt_and_skip_accepted_prompts(tiny_tokenizer):
    """Kills G01 (the seed did not depend on the attempt: every retry drew the same answer again), G09 (prompts
    already accepted were generated again, their answers replaced) and G12 (one attempt fewer than 1 + retries)."""
    def answer(prompt, seed):
        return '"x"}' if "Heat" in prompt and seed is None else "sorry I cannot"

    gen = _Scripted(tiny_tokenizer, answer, retries=2, batch_size=8)
    results = gen.generate(["Heat", "Fargo"], required=["a"], answer_prefix='{"a": ')
    assert [r["ok"] for r in results] == [True, False]
    assert [r["attempts"] for r in results] == [1, 3] and len(results[1]["errors"]) == 3
    assert [prompts for prompts, _ in gen.calls] == [["Heat", "Fargo"], ["Fargo"], ["Fargo"]]
    assert gen.calls[0][1] is None  # the first attempt is greedy
    seeds = [call[1][0] for call in gen.calls[1:]]
    assert len(set(seeds)) == 2  # each retry draws anew


def test_a_shared_prefix_is_part_of_the_prompts_sampling_seed(tiny_tokenizer):
    """Kills G23 (seeds keyed by the suffix only: two users' prompts for the same item drew the same sample)."""
    seen = []
    gen = _Scripted(tiny_tokenizer, lambda prompt, seed: seen.append(seed) or '"x"}', retries=0, do_sample=True)
    for user in ("Heat", "Fargo"):
        gen.generate_with_prefix(user, [" Casino"], required=["a"], answer_prefix='{"a": ', use_cache=False)
    assert len(seen) == 2 and seen[0] != seen[1]


def test_a_low_temperature_draws_the_most_likely_token():
    """Kills G03 (scores multiplied by the temperature: 0.001 flattened them to a nearly uniform draw)."""
    scores = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    kept = RowSampler(list(range(8)), temperature=1e-3, top_p=1.0, device="cpu")(None, scores.clone())
    assert torch.equal(kept.argmax(1), scores.argmax(1))


def test_decoding_stops_at_the_first_stop_token_and_tells_a_budget_cut(tiny_tokenizer):
    """Kills G15 (the truncation flag inverted: a finished answer was closed as cut, a cut one refused), G16 (cut at
    the last stop token: text after the first leaked in) and G17 (generated tokens not counted)."""
    gen = Generator(torch.nn.Linear(1, 1), tiny_tokenizer)
    heat, fargo = (tiny_tokenizer.convert_tokens_to_ids(w) for w in ("Heat", "Fargo"))
    stop = stop_token_ids(tiny_tokenizer)[0]
    decoded = gen._decode(torch.tensor([[heat, stop, fargo, stop], [heat, fargo, heat, fargo]]))
    assert decoded == [("Heat", False), ("Heat Fargo Heat Fargo", True)]
    assert gen.tokens_generated == 1 + 4


def test_a_long_prompt_keeps_its_end(tiny_tokenizer, caplog):
    """Kills G18 (cut from the right: the prompt's end, where the answer starts, was lost) and G24 (the cut warned
    about for every prompt instead of once, then counted)."""
    gen = _Scripted(tiny_tokenizer, lambda prompt, seed: '"x"}', retries=0, max_prompt_tokens=2)
    caplog.set_level(logging.WARNING)
    gen.generate(["Heat Casino Fargo", "Balto Nixon Ransom"], required=["a"], answer_prefix='{"a": ')
    assert gen.calls[0][0] == ["Casino Fargo", "Nixon Ransom"]
    assert gen.prompts_cut == 2 and caplog.text.count("is cut to its last 2") == 1


def test_a_model_without_a_context_size_gets_2048_tokens(tiny_tokenizer):
    """Kills G20 (another default context)."""
    assert Generator(torch.nn.Linear(1, 1), tiny_tokenizer, max_new_tokens=48).prompt_limit() == 2048 - 48


def test_a_generator_needs_a_model_or_a_loader(tiny_tokenizer):
    """Kills G27 (no model and no loader accepted: it failed at the first answer, after the profiles)."""
    with pytest.raises(ValueError, match="give a model, or load_model"):
        Generator(None, tiny_tokenizer)


# --- semantic.py: the answer checks ---------------------------------------------------------------------------------

def _problem(answer, interacted="Fargo", year="1996", history=(), profile="", ids=()):
    return negative_problem({"hard_negative_item": answer}, interacted, year, history, profile, ids)


def test_a_profile_opening_of_twenty_characters_is_a_repeat():
    """Kills S14 (profiles shorter than 30 characters never compared by their start)."""
    profile = "Likes crime thrillers."  # title_key: 21 characters
    assert "repeats the user's profile" in _problem("likes crime thrillers a lot", profile=profile)


def test_a_short_title_the_profile_opens_with_is_not_a_repeat():
    """Kills S15 (an answer of under 20 characters that the profile starts with read as the profile copied)."""
    assert _problem("Heat", profile="Heat and Casino are favourites of this crime-film fan") is None


def test_four_profile_words_in_six_are_no_repeat():
    """Kills S17 (4 in 6 profile words counted as a copy): 5 in 6 is the documented share."""
    profile = "This user enjoys tense crime thrillers and heist films of the nineties."
    assert _problem("Tense Thrillers of the Cold War", profile=profile) is None
    assert "repeats the user's profile" in _problem("Tense Thrillers of the Heist War", profile=profile)


@pytest.mark.parametrize("answer", ["XB00DFT27EQ", "B00DFT27EQX Bundle", "Set B00DFT27EQ2"])
def test_a_long_id_inside_a_longer_word_is_not_an_echo(answer):
    """Kills S19 (the id matched inside a longer token, not as a word)."""
    assert _problem(answer, "LEGO Plush Bear", None, ids=("B00DFT27EQ",)) is None


def test_a_year_after_a_title_that_a_comma_ends_dates_the_answer():
    """Kills S22 (the year read from the whole answer only: "There Is No Tomorrow (1993), a drama" read as undated,
    so as the none-like "there is no ...")."""
    assert _problem("There Is No Tomorrow (1993), a drama") is None
    assert "no item named" in _problem("There is no such item, sorry")


def test_negative_names_collapse_whitespace():
    """Kills S43 (inner runs of whitespace kept: the stored and embedded text differed from the checked one)."""
    assert negative_name({"hard_negative_item": "  Heat \n\t (1995) "}) == "Heat (1995)"
    assert negative_name({"reasoning": "x"}) == ""


# --- semantic.py: identity of a store -------------------------------------------------------------------------------

def test_pairs_hash_separates_user_and_item():
    """Kills S01 (the tokens joined without separators: ("1", "23") and ("12", "3") hashed alike)."""
    assert pairs_sha256([("1", "23")]) != pairs_sha256([("12", "3")])
    assert pairs_sha256([("1", "2"), ("3", "4")]) != pairs_sha256([("3", "4"), ("1", "2")])


@pytest.mark.parametrize("key, value", [
    ("retries", 0), ("negatives_per_pair", 2), ("max_new_tokens", 20), ("profile_words", 5), ("seed", 7),
    ("max_reviews", 1), ("max_history", 3), ("profile_max_new_tokens", 20), ("item_profiles", False),
    ("store_dtype", "float32"), ("dtype", "bfloat16")])
def test_every_setting_that_changes_the_negatives_is_in_the_manifest(data_root, key, value):
    """Kills S02-S08 (a setting dropped from the manifest: a store computed under other settings was a cache hit)."""
    from recbole_hnlm.llm.semantic import ANSWER_CHECKS
    from recbole_hnlm.llm.store import manifest_mismatch

    text = DatasetText(data_root, "mini")
    pairs = text.pairs[:5]
    base = semantic_manifest(LLMConfig(), text, pairs, "g", "e", {"hard_negative": "v1"})
    other = semantic_manifest(LLMConfig(**{key: value}), text, pairs, "g", "e", {"hard_negative": "v1"})
    assert manifest_mismatch(base, other) is not None
    assert base["answer_checks"] == ANSWER_CHECKS


# --- semantic.py: the stage -----------------------------------------------------------------------------------------

def _stage(root, store, tokenizer, encoder_dir, answer, **overrides):
    """The semantic stage on the mini slice with the scripted generator of llm_helpers (its profiles), whose
    hard-negative answers come from ``answer(prefix_text, suffix_text, seed)``."""
    gen = make_scripted_generator(tokenizer, always_bad_mod=10 ** 9, first_bad_mod=10 ** 9)

    def prefixed(cache, prefix_len, suffixes, seeds):
        prefix = tokenizer.decode(cache["ids"])
        return [answer(prefix, tokenizer.decode(s), seed) for s, seed in zip(suffixes, seeds or [None] * len(suffixes))]

    gen._generate_prefixed = prefixed
    settings = {"hnlm_variant": "semantic", "hnlm_chunk_size": 7, "hnlm_max_pairs": 12, "hnlm_store_dtype": "float32",
                "hnlm_generator": "scripted", **{f"hnlm_{k}": v for k, v in overrides.items()}}
    cfg = LLMConfig.from_config(settings)
    gen.retries = cfg.retries
    encoder = TextEncoder(encoder_dir, batch_size=8)
    run_negatives(cfg, DatasetText(root, "mini"), store, progress=False, generator=gen, encoder=encoder,
                  generator_name="scripted")
    records = [json.loads(line) for line in open(store + ".texts.jsonl", encoding="utf-8")]
    return gen, cfg, encoder, records


def test_each_draw_samples_anew_and_the_pair_embeds_their_mean(tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """hnlm_negatives_per_pair=3: the first draw greedy, the others sampled with their own seeds; the stored vector is
    the mean of the three texts' embeddings (eq. 5), the record keeps each text and reasoning, and the generator is
    greedy again after the stage. Kills S27 (every draw on one seed), S28 (every draw greedy), S29 (left sampling),
    S34 (reasoning not recorded), S35 (the first negative's vector stored), S36 (vectors misaligned)."""
    from llm_helpers import write_slice

    def answer(prefix, suffix, seed):
        number = 999 if seed is None else seed % 997
        return f'{MOVIES[number % len(MOVIES)]} {number}", "reasoning": "drawn {number}"}}'

    root, store = write_slice(str(tmp_path / "data")), str(tmp_path / "s.safetensors")
    gen, cfg, encoder, records = _stage(root, store, tiny_tokenizer, tiny_encoder_dir, answer, negatives_per_pair=3)
    assert len(records) == 12 and all(r["ok"] and len(r["negatives"]) == 3 for r in records)
    for r in records:
        assert r["negatives"][0] == "Ransom 999" and len(set(r["negatives"])) == 3, r["negatives"]
        assert r["reasoning"] == [f"drawn {n.split()[-1]}" for n in r["negatives"]]
    assert (gen.do_sample, gen.seed) == (False, cfg.seed)
    stored = PairEmbeddingStore.open(store)
    by_pair = {(r["user"], r["item"]): r["negatives"] for r in records}
    for row, pair in enumerate(zip(stored.user_tokens, stored.item_tokens)):
        torch.testing.assert_close(stored.emb[row], encoder.encode(by_pair[pair]).mean(0), atol=1e-5, rtol=1e-5)


def test_an_answer_repeating_the_users_profile_is_a_failure_record(tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """Kills S31 (the stage passed no profile to the checks: a model copying the profile, as SmolLM2 did in 16 of
    27 answers, had its copy stored)."""
    import re

    from llm_helpers import write_slice

    def answer(prefix, suffix, seed):
        return re.findall(r'user _ profile " : " (.*?) "', prefix)[-1] + '", "reasoning": "r"}'

    root, store = write_slice(str(tmp_path / "data")), str(tmp_path / "s.safetensors")
    _, _, _, records = _stage(root, store, tiny_tokenizer, tiny_encoder_dir, answer, retries=0)
    assert records and all(not r["ok"] and "repeats the user's profile" in r["error"] for r in records), records


def test_the_items_year_tells_a_namesake_from_the_item(tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """ml-100k's titles carry no year (release_year is a field): the stage gives the checks the interacted item's and
    the history items' years, so "<the title> (1900)" names a namesake and is stored, and "<the title> (<its year>)"
    is refused. Kills S38 (history without years) and S39 (the interacted item without its year)."""
    import re

    from llm_helpers import write_slice
    from recbole_hnlm.llm.semantic import title_key

    root = write_slice(str(tmp_path / "data"))
    text = DatasetText(root, "mini")
    by_key = {title_key(tiny_tokenizer.decode(tiny_tokenizer(item.title, add_special_tokens=False)["input_ids"])):
              item for item in text.items.values()}

    def answer(year_of):
        def write(prefix, suffix, seed):
            item = by_key.get(title_key(re.findall(r'title " : " (.*?) " ?,', suffix)[-1]))
            return f'{item.title if item else "Heat"} ({year_of(item)})", "reasoning": "r"}}'
        return write

    store = str(tmp_path / "namesake.safetensors")
    _, _, _, records = _stage(root, store, tiny_tokenizer, tiny_encoder_dir, answer(lambda item: 1900), retries=0)
    named = [r for r in records if not r["negatives"] or r["negatives"][0] != "Heat (1900)"]
    assert len(named) >= 6 and all(r["ok"] for r in named), records
    store = str(tmp_path / "same.safetensors")
    _, _, _, records = _stage(root, store, tiny_tokenizer, tiny_encoder_dir,
                              answer(lambda item: item.attributes["year"] if item else 1900), retries=0)
    refused = [r for r in records if not r["ok"]]
    assert len(refused) >= 6 and all("names the interacted item itself" in r["error"] for r in refused), records


def test_a_lead_in_before_a_title_with_a_colon_is_read_through():
    """Kills S47 (the "The movie" lead-in kept: the preamble rule read "2001" as a year before "A Space Odyssey", and
    the docstring's own example was accepted as the item's negative)."""
    assert "names the interacted item itself" in _problem("The movie 2001: A Space Odyssey.",
                                                         "2001: A Space Odyssey", "1968")


def test_an_answer_cut_inside_an_escape_is_closed():
    """The closing quote added after a lone trailing backslash was read as escaped: no object, a retry spent."""
    assert parse_json_answer('{"a": "x\\', ["a"], allow_truncated=True) == {"a": "x"}
    assert parse_json_answer('{"a": "x\\\\', ["a"], allow_truncated=True) == {"a": "x\\"}
