"""Session-44 mutation audit of the text-side changes: the per-suffix cut of the shared-prefix generation, the lone
surrogate check, render_split's marker, title_key's fallback for sign-only titles, the keys file's line ends, the
NUL refusal of the LLM stage's files, the close-name dataset hint and the report's best-ID sentence."""
import logging
import re

import pytest
import torch

from recbole_hnlm.llm.generation import Generator

PREFIX = '{"hard_negative_item": "'
ANSWER = ('Heat", "reasoning": "r"}', False)


class _Recording(Generator):
    """A Generator whose model calls record the prefix and suffix ids they get (the cutting under test happens
    before them) and answer valid JSON."""

    def __init__(self, tokenizer, limit):
        super().__init__(torch.nn.Linear(1, 1), tokenizer, max_new_tokens=4, retries=0, max_prompt_tokens=limit)
        self.prefixes, self.suffixes = [], []

    def prefix_cache(self, prefix, reserve=0):
        return {"ids": self._encode(prefix, reserve), "kv": None}

    def _generate_prefixed(self, cache, prefix_len, suffixes, seeds):
        self.prefixes += [list(cache["ids"])] * len(suffixes)
        self.suffixes += [list(s) for s in suffixes]
        return [ANSWER] * len(suffixes)

    def _generate_ids(self, id_lists, seeds):
        self.prefixes += [list(ids) for ids in id_lists]  # prefix + suffix as one list: split by the caller
        self.suffixes += [None] * len(id_lists)
        return [ANSWER] * len(id_lists)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _words(tokenizer, count):
    """A text of exactly ``count`` tokens."""
    text = " ".join(["Heat"] * count)
    assert len(_ids(tokenizer, text)) == count
    return text


@pytest.mark.parametrize("use_cache", [True, False])
def test_ordinary_prompts_are_passed_whole_and_uncounted(tiny_tokenizer, use_cache):
    """Prefix and suffixes within the limit reach the model token for token, nothing is counted as cut."""
    gen = _Recording(tiny_tokenizer, 64)
    prefix, suffixes = "Casino Fargo Nixon", ["Heat Balto", "Clueless Se7en Jumanji"]
    gen.generate_with_prefix(prefix, suffixes, required=["hard_negative_item"], answer_prefix=PREFIX,
                             use_cache=use_cache)
    wanted = [_ids(tiny_tokenizer, prefix) + _ids(tiny_tokenizer, s) for s in suffixes]
    got = gen.prefixes if not use_cache else [p + s for p, s in zip(gen.prefixes, gen.suffixes)]
    assert got == wanted and gen.prompts_cut == 0


def test_a_suffix_one_short_of_the_limit_is_kept_whole(tiny_tokenizer):
    """A suffix of limit - 1 tokens is not cut (only the prefix, to its last token): one cut counted."""
    limit = 12
    suffix = _words(tiny_tokenizer, limit - 1)
    gen = _Recording(tiny_tokenizer, limit)
    gen.generate_with_prefix("Casino Fargo Nixon", [suffix], required=["hard_negative_item"], answer_prefix=PREFIX)
    assert gen.suffixes == [_ids(tiny_tokenizer, suffix)]
    assert gen.prefixes == [_ids(tiny_tokenizer, "Casino Fargo Nixon")[-1:]]
    assert gen.prompts_cut == 1


def test_a_long_suffix_keeps_its_end_and_the_prefix_its_last_token(tiny_tokenizer, caplog):
    """A suffix past the limit is cut from the left (its end, where the answer starts, stays) to limit - 1 tokens;
    the warning names the reason (max_prompt_tokens less the prefix)."""
    limit = 10
    suffix = "Casino Fargo " + _words(tiny_tokenizer, 30) + " Nixon Balto"
    gen = _Recording(tiny_tokenizer, limit)
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.generation"):
        gen.generate_with_prefix("Clueless Jumanji", [suffix], required=["hard_negative_item"], answer_prefix=PREFIX)
    assert gen.suffixes == [_ids(tiny_tokenizer, suffix)[-(limit - 1):]]
    assert gen.prefixes == [_ids(tiny_tokenizer, "Clueless Jumanji")[-1:]]
    warnings = [r.getMessage() for r in caplog.records if "is cut to its last" in r.getMessage()]
    assert len(warnings) == 1  # the prefix cut that follows is counted, not warned again
    assert "max_prompt_tokens, less the 1 token of the prefix before it" in warnings[0]


def test_a_prefix_cut_for_its_suffixes_names_the_text_that_follows(tiny_tokenizer, caplog):
    """The prefix's own cut (suffixes within the limit) keeps its wording: less the tokens of the text after it."""
    gen = _Recording(tiny_tokenizer, 8)
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.llm.generation"):
        gen.generate_with_prefix(_words(tiny_tokenizer, 20), ["Casino Fargo"], required=["hard_negative_item"],
                                 answer_prefix=PREFIX)
    reserve = len(_ids(tiny_tokenizer, "Casino Fargo"))
    assert any(f"less the {reserve} tokens of the text that follows it" in r.getMessage() for r in caplog.records)
    assert gen.prefixes == [_ids(tiny_tokenizer, _words(tiny_tokenizer, 20))[-(8 - reserve):]]


def test_a_one_token_limit_still_cuts_a_suffix(tiny_tokenizer):
    """max_prompt_tokens=1: a suffix keeps its last token (never its whole length, as ids[-0:] would)."""
    gen = _Recording(tiny_tokenizer, 1)
    gen.generate_with_prefix("Casino", ["Heat Fargo Nixon"], required=["hard_negative_item"], answer_prefix=PREFIX)
    assert gen.suffixes == [_ids(tiny_tokenizer, "Heat Fargo Nixon")[-1:]]


# ---------------------------------------------------------------- render_split's marker

class _NoChat:
    """A tokenizer without a chat template (ChatFormatter's plain rendering)."""


@pytest.mark.parametrize("profile", ["likes \u2063HNLM_ITEM_BLOCK", "\u2063HNLM_ITEM_BLOCK\u2063",
                                     "x\u2063HNLM_ITEM_BLOCK\u2063\u2063"])
def test_a_value_just_before_the_item_block_does_not_move_the_split(tmp_path, profile):
    """A template with a value right before $item_block: the value's end and the marker's start made the marker
    (found inside the value), and the split fell inside the value."""
    from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate

    path = tmp_path / "adjacent.v1.txt"
    path.write_text("### system\nS\n### user\nU: $user_profile$item_block END\n### item_block\n<$item_title>\n",
                    encoding="utf-8")
    template = PromptTemplate.load(str(path))
    formatter = ChatFormatter(_NoChat())
    prefix, tail = formatter.render_split(template, {"user_profile": profile})
    assert prefix.endswith("U: " + profile) and tail.startswith(" END")
    full = formatter.render("S", template.user_message({"user_profile": profile}, {"item_title": "Heat"}))
    assert prefix + "<Heat>" + tail == full


# ---------------------------------------------------------------- title_key's sign-only fallback

def test_sign_only_title_keys_drop_a_trailing_year_like_word_titles():
    """'!!! (2001)' and '!!!' are one title (as 'Heat (1995)' and 'Heat'); a title that is only a year keeps it."""
    from recbole_hnlm.llm.semantic import title_key

    assert title_key("!!! (2001)") == title_key("!!!") == title_key("  !!!  ")
    assert title_key("Heat (1995)") == title_key("Heat")  # the rule the fallback follows
    assert title_key("(1994)") and title_key("(1994)") != title_key("(1995)")


def test_a_sign_only_title_with_a_year_is_refused_as_the_item_and_its_namesake_is_not():
    """The interacted item '!!! (2001)' named as '!!!' or '!!! (2001)' is refused; '!!! (1999)' is another one."""
    from recbole_hnlm.llm.semantic import negative_problem

    assert "no letter or digit" in negative_problem({"hard_negative_item": "!!!"}, "!!! (2001)")  # since v17
    for title, year in (("!!! (2001)", None), ("!!!", "2001")):
        assert "interacted item itself" in negative_problem({"hard_negative_item": "!!! (2001)"}, title, year)
    assert negative_problem({"hard_negative_item": "!!! (1999)"}, "!!! (2001)") is None


def test_sign_only_title_keys_keep_distinct_titles_apart_and_fold_case():
    """Different signs are different keys; a sign with a case (circled letters are symbols) compares in lower case,
    spaces collapsed."""
    from recbole_hnlm.llm.semantic import title_key

    keys = [title_key(t) for t in ("!!!", "!!", "! !", "\U0001F3AC", "\U0001F37F", "...")]
    assert len(set(keys)) == len(keys) and all(keys)
    assert title_key("\u24B6\u24B7") == title_key("\u24D0\u24D1")  # circled A B, circled a b
    assert title_key("!  !") == title_key("! !")


# ---------------------------------------------------------------- keys file

def _store(tmp_path, users, items):
    from recbole_hnlm.llm.store import write_pair_store

    path = str(tmp_path / "s.safetensors")
    write_pair_store(path, users, items, torch.randn(len(users), 3),
                     dict(variant="semantic", dataset="x", dataset_hash="h"))
    return path


def test_a_keys_file_with_windows_line_ends_opens_as_written(tmp_path):
    """keys.tsv rewritten with CRLF line ends (an editor, git autocrlf) is read as the same keys, digest too."""
    from recbole_hnlm.llm.store import PairEmbeddingStore

    users, items = ["ua", "ub", "uc"], ["i\u20281", "i2", "i3"]
    path = _store(tmp_path, users, items)
    keys = tmp_path / "s.safetensors.keys.tsv"
    keys.write_bytes(keys.read_bytes().replace(b"\n", b"\r\n"))
    store = PairEmbeddingStore.open(path)
    assert (store.user_tokens, store.item_tokens) == (users, items)


@pytest.mark.parametrize("token", ["u\r1", "u\t1", "u\n1"])
def test_a_token_with_a_carriage_return_tab_or_newline_is_refused(tmp_path, token):
    """A '\\r' in a token would be read back as a line end (text mode): refused when writing, like tab and newline."""
    from recbole_hnlm.llm.store import StoreError

    with pytest.raises(StoreError, match="cannot be keyed"):
        _store(tmp_path, ["ua", token], ["i1", "i2"])
    assert not (tmp_path / "s.safetensors").exists()


# ---------------------------------------------------------------- NUL bytes

def test_a_nul_byte_is_refused_only_for_the_llm_stage(tmp_path):
    """check_records keeps a NUL (RecBole's reader does) unless refuse_nul; then the error names the line, also
    for a NUL that is the file's last character."""
    from recbole_hnlm.data_checks import check_records
    from recbole_hnlm.errors import DataError

    path = tmp_path / "t.item"
    path.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tSev\x00en\n", encoding="utf-8")
    assert check_records(str(path)) is True
    with pytest.raises(DataError, match=r"t\.item:3: a NUL byte"):
        check_records(str(path), refuse_nul=True)
    path.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tSeven\x00", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.item:3: a NUL byte"):
        check_records(str(path), refuse_nul=True)


# ---------------------------------------------------------------- report

def test_the_best_id_sentence_names_the_id_based_samplers_and_not_rns():
    """The comparison paragraph says which samplers the best ID-based one is chosen from (never RNS)."""
    from recbole_hnlm.benchmark import report as R
    from recbole_hnlm.benchmark.runner import METRICS

    def run(sampler, seed, value):
        return {"cell": f"MF-{sampler}-seed{seed}", "model": "MF", "sampler": sampler, "seed": seed,
                "train_ratio": 1.0, "dataset": "toy", "valid_metric": "NDCG@20", "best_valid_score": value,
                "best_epoch": 0, "epochs_run": 1, "mean_epoch_time": 1.0, "total_time": 1.0, "analysis": {},
                "test_result": {m: value for m in METRICS}, "epochs": [{"epoch": 0, "train_time": 1.0}],
                "split": {"fingerprint": "0" * 40}, "metric_decimal_place": 4}

    text = R.markdown_report([run(s, k, v) for s, v in (("RNS", 0.9), ("DNS", 0.2), ("AHNS", 0.3)) for k in (1, 2)])
    sentence = re.search(r"the best ID-based sampler \(([^)]*)\)", text)
    assert sentence, text
    assert all(s in sentence.group(1) for s in R.ID_BASED) and "never RNS" in sentence.group(1)


# ---------------------------------------------------------------- lone surrogates; a template without an item block

def test_a_later_whole_answer_is_used_after_one_with_half_a_character():
    """A fenced object holding a lone surrogate is passed over like any malformed candidate: the answer's first
    object outside the fence is used."""
    from recbole_hnlm.llm.json_answer import parse_json_answer

    text = '{"hard_negative_item": "Casino"} ```json\n{"hard_negative_item": "Heat \\ud83c"}\n```'
    assert parse_json_answer(text, ["hard_negative_item"])["hard_negative_item"] == "Casino"


def test_a_template_without_an_item_block_is_refused_also_when_a_value_holds_the_marker():
    """No $item_block to split at: a ValueError naming it, even when a value holds the default marker."""
    from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate

    template = PromptTemplate.load("user_profile.v1")
    name = next(iter(re.findall(r"\$(\w+)", template.sections["user"])))
    with pytest.raises(ValueError, match=r"no \$item_block to split at"):
        ChatFormatter(_NoChat()).render_split(template, {name: "a \u2063HNLM_ITEM_BLOCK\u2063 b"})
