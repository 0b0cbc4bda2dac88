"""Shared fixtures: a tiny ml-100k slice, a tokenizer trained on the fly, a tiny random Llama and BERT."""
import hashlib
import os

import pytest
import torch

ML100K = os.path.join(os.path.dirname(__import__("recbole").__file__), "dataset_example", "ml-100k")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MOVIES = ["Heat", "Casino", "Fargo", "Clueless", "Se7en", "Jumanji", "Sabrina", "Nixon", "Balto", "Ransom"]
SPECIALS = ["<pad>", "<unk>", "<eos>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]"]


def write_slice(root: str, name: str = "mini", users: int = 12, per_user: int = 8) -> str:
    """First ``per_user`` interactions of the first ``users`` users of ml-100k, plus their items."""
    os.makedirs(os.path.join(root, name), exist_ok=True)
    with open(os.path.join(ML100K, "ml-100k.inter"), encoding="utf-8") as handle:
        header, *lines = handle.read().splitlines()
    kept, counts = [], {}
    for line in lines:
        u = line.split("\t")[0]
        if u not in counts and len(counts) >= users:
            continue
        if counts.get(u, 0) < per_user:
            counts[u] = counts.get(u, 0) + 1
            kept.append(line)
    items = {line.split("\t")[1] for line in kept}
    with open(os.path.join(root, name, f"{name}.inter"), "w", encoding="utf-8") as handle:
        handle.write("\n".join([header] + kept) + "\n")
    with open(os.path.join(ML100K, "ml-100k.item"), encoding="utf-8") as handle:
        item_header, *item_lines = handle.read().splitlines()
    with open(os.path.join(root, name, f"{name}.item"), "w", encoding="utf-8") as handle:
        handle.write("\n".join([item_header] + [x for x in item_lines if x.split("\t")[0] in items]) + "\n")
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return write_slice(str(tmp_path_factory.mktemp("data")))


def _corpus():
    from recbole_hnlm.llm.prompts import PROMPT_DIR

    texts = []
    for name in os.listdir(PROMPT_DIR):
        with open(os.path.join(PROMPT_DIR, name), encoding="utf-8") as handle:
            texts.append(handle.read())
    with open(os.path.join(ML100K, "ml-100k.item"), encoding="utf-8") as handle:
        texts.extend(handle.read().splitlines()[:400])
    texts += ["summary of taste", "reasoning", "hard_negative_item", "assistant user system", "likes style movies",
              "similar but disliked", "sorry I cannot"] * 3 + MOVIES
    texts += [str(k) for k in range(1000)]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    tok.train_from_iterator(_corpus(), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
                                   cls_token="[CLS]", sep_token="[SEP]")
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    folder = str(tmp_path_factory.mktemp("tiny_llama"))
    LlamaForCausalLM(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tiny_tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=512, pad_token_id=tiny_tokenizer.pad_token_id)
    folder = str(tmp_path_factory.mktemp("tiny_bert"))
    BertModel(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder




def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def make_scripted_generator(tokenizer, always_bad_mod: int = 11, first_bad_mod: int = 5):
    """A :class:`Generator` whose model answers are a deterministic function of the prompt tokens.

    Every ``first_bad_mod``-th prompt answers garbage greedily (the sampled retry succeeds); every
    ``always_bad_mod``-th prompt answers garbage always (-> failure record).
    """
    from recbole_hnlm.llm.generation import Generator

    class Scripted(Generator):
        calls = 0

        def _answer(self, ids, sample):
            text = self.tokenizer.decode(ids)
            h = _h(text)
            if h % always_bad_mod == 0 or (h % first_bad_mod == 0 and not sample):
                return "sorry I cannot"
            if "negative" in text.split("assistant")[-1]:
                return f'{MOVIES[h % len(MOVIES)]} {h % 97}", "reasoning": "similar but disliked",}}'
            return f"likes {MOVIES[h % len(MOVIES)]} style movies\", 'reasoning': 'history'}}"

        def _generate_ids(self, id_lists, sample):
            Scripted.calls += 1
            return [self._answer(ids, sample) for ids in id_lists]

        def _generate_prefixed(self, cache, prefix_len, suffixes, sample):
            Scripted.calls += 1
            return [self._answer(cache["ids"] + s, sample) for s in suffixes]

        def prefix_cache(self, prefix, reserve=0):
            return {"ids": self._encode(prefix), "kv": None}

    return Scripted(torch.nn.Linear(1, 1), tokenizer, max_new_tokens=16, batch_size=4, retries=2)


def simulate_read_only(monkeypatch, folder) -> None:
    """Make ``os.access`` report ``folder`` and what is inside it as not writable, as on a read-only mount (root, as
    the tests often run, writes anywhere else)."""
    real_access, root = os.access, os.path.realpath(str(folder))

    def access(path, mode, *args, **kwargs):
        inside = os.path.commonpath([os.path.realpath(path), root]) == root
        return not (inside and mode & os.W_OK) and real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
