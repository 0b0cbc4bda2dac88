"""Session 45 audit (mutation testing of the day's changes): what the LLM-side tests did not pin yet.

The fine-tuned variant's embed holds its store's work folder from before the model is used until the store is
written (``hold_work_folder``), as the semantic variant does; the adapter-only path (``embed=False``) takes no lock
on a store it does not write; the bounded repair of a cut JSON answer keeps its documented boundaries.
"""
import os

import pytest
import torch

from lock_holder import seen_held_by_another_process
from recbole_hnlm.files import lock_file, work_folder
from recbole_hnlm.llm import json_answer
from recbole_hnlm.llm.json_answer import MalformedAnswer, close_truncated, parse_json_answer


# --- the fine-tuned variant holds its store's work folder -----------------------------------------------------------

@pytest.fixture(scope="module")
def finetune_setup(data_root, tmp_path_factory):
    """A RecBole split of the mini slice and a teacher of it written to its own file (not the dataset's default)."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.llm.teacher import export_teacher

    folder = tmp_path_factory.mktemp("s45ft")
    config = Config(model="BPR", dataset="mini", config_dict={
        "data_path": data_root, "show_progress": False, "checkpoint_dir": str(folder / "ck"),
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}})
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)

    class CF(torch.nn.Module):  # the two methods export_teacher reads, as test_llm_finetune's stand-in
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(3)
            self.user, self.item = torch.randn(dataset.user_num, 8, generator=g), torch.randn(dataset.item_num, 8,
                                                                                                generator=g)

        def pooled_embeddings(self):
            return self.user, self.item

        def hard_negatives(self, user_ids, pos_ids):
            return self.item[pos_ids].flip(0)

    teacher = str(folder / "teacher.safetensors")
    export_teacher(CF(), dataset, train, teacher)
    feat = train._dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return teacher, list(zip(users.tolist(), items.tolist()))


def _finetune_cfg(tmp_path, tiny_llama_dir, teacher, store):
    from recbole_hnlm.llm.config import LLMConfig

    return LLMConfig.from_config({
        "hnlm_variant": "finetuned", "hnlm_ft_user_text": "history", "hnlm_ft_max_train_pairs": 16,
        "hnlm_ft_batch_size": 8, "hnlm_ft_epochs": 1, "hnlm_chunk_size": 16, "hnlm_store_path": store,
        "hnlm_adapter_path": str(tmp_path / "adapter"), "hnlm_generator": tiny_llama_dir, "hnlm_teacher_path": teacher})


def _probe_while(monkeypatch, module, name, path, seen):
    """Wrap ``module.name`` (called with the LLM loaded) so that it first asks a child process whether ``path`` is
    locked; the original then runs unchanged."""
    original = getattr(module, name)

    def probed(*args, **kwargs):
        seen.append(seen_held_by_another_process(path))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, probed)


def test_the_finetuned_embed_holds_its_store_while_the_model_trains_and_embeds(tmp_path, tiny_llama_dir,
                                                                              finetune_setup, data_root, monkeypatch):
    """hold_work_folder replaced a lock taken and let go at once (refuse_if_running): a second fine-tuned stage on
    the same store started while the first one fine-tuned passed that look and loaded its LLM. Another process now
    finds the store's work folder locked while the adapter trains and while its pairs are embedded, and free once
    the store is written."""
    from recbole_hnlm.llm import finetune, finetune_pipeline
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.finetune_pipeline import ensure_finetuned
    from recbole_hnlm.llm.models import load_causal_lm
    from recbole_hnlm.llm.store import PairEmbeddingStore

    teacher, pairs = finetune_setup
    store = str(tmp_path / "ft.safetensors")
    lock, seen = lock_file(work_folder(store)), []
    _probe_while(monkeypatch, finetune, "train_hybrid_encoder", lock, seen)
    _probe_while(monkeypatch, finetune_pipeline, "embed_pairs", lock, seen)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    cfg = _finetune_cfg(tmp_path, tiny_llama_dir, teacher, store)
    assert ensure_finetuned(cfg, DatasetText(data_root, "mini", pairs), store, progress=False,
                            lm_and_tokenizer=(model, tokenizer)) == store
    assert seen == [True, True], "another process found the store free while this one fine-tuned or embedded"
    assert PairEmbeddingStore.open(store).num_pairs > 0
    assert not seen_held_by_another_process(lock)


def test_fine_tuning_the_adapter_alone_takes_no_lock_on_the_store(tmp_path, tiny_llama_dir, finetune_setup,
                                                                  data_root, monkeypatch):
    """``embed=False`` (the CLI's ``finetune``) writes no store: it neither waits for nor blocks a stage computing
    that store, and leaves no lock file beside it."""
    from recbole_hnlm.llm import finetune
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.finetune_pipeline import ensure_finetuned
    from recbole_hnlm.llm.models import load_causal_lm

    teacher, pairs = finetune_setup
    store = str(tmp_path / "ft.safetensors")
    lock, seen = lock_file(work_folder(store)), []
    _probe_while(monkeypatch, finetune, "train_hybrid_encoder", lock, seen)
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    cfg = _finetune_cfg(tmp_path, tiny_llama_dir, teacher, store)
    adapter = ensure_finetuned(cfg, DatasetText(data_root, "mini", pairs), store, progress=False,
                               lm_and_tokenizer=(model, tokenizer), embed=False)
    assert adapter == str(tmp_path / "adapter") and os.path.isdir(adapter)
    assert seen == [False] and not os.path.exists(lock) and not os.path.exists(store)


# --- the bounded repair of a cut answer -----------------------------------------------------------------------------

def _cut_object(fields: int) -> str:
    """An object of ``fields`` numbered fields, cut by the budget inside one more key: ``fields`` top-level commas."""
    return "{" + ", ".join(f'"k{i}": {i}' for i in range(fields)) + ', "cut'


def _closed_field_counts(text: str):
    """How many fields each closing at a comma keeps, in the order close_truncated offers them."""
    return [len(json_answer._loads_lenient(candidate)) for candidate in close_truncated(text)[1:]]


@pytest.mark.parametrize("extra", [0, 1, 7])
def test_a_cut_object_is_closed_at_every_comma_up_to_max_commas_then_at_its_first_and_last_ones(extra):
    """Up to MAX_COMMAS top-level commas, each is a closing point, latest first; one more and the object is closed
    only after its first MAX_COMMAS // 2 fields and before its last MAX_COMMAS // 2 commas (the middle ones go)."""
    fields, half = json_answer.MAX_COMMAS + extra, json_answer.MAX_COMMAS // 2
    counts = _closed_field_counts(_cut_object(fields))
    if not extra:
        assert counts == list(range(fields, 0, -1))
    else:
        assert counts == list(range(fields, fields - half, -1)) + list(range(half, 0, -1))


_REAL = '{"hard_negative_item": "Heat", "reasoning": "a cut'


@pytest.mark.parametrize("nested", ["{{", "{ {", "{[", "{\n ["])
def test_openings_of_nested_objects_or_lists_are_skipped_without_counting(nested):
    """``{{`` and ``{[`` (whitespace between too) open nothing a repair can make an object of: they are passed over
    and do not use up the MAX_OPENINGS openings tried, so the real object after more of them than that is repaired."""
    text = nested * (json_answer.MAX_OPENINGS + 2) + _REAL
    assert parse_json_answer(text, ["hard_negative_item"], allow_truncated=True) == {
        "hard_negative_item": "Heat", "reasoning": "a cut"}


@pytest.mark.parametrize("before", ["max - 1", "max"])
def test_a_cut_object_is_repaired_from_each_of_the_first_max_openings_only(before):
    """A model repeating the answer prefix opens objects it never closes before the real one: the repair closes from
    each of the first MAX_OPENINGS openings in turn (the real one among them: repaired), and from no later one."""
    repeats = json_answer.MAX_OPENINGS - (1 if before == "max - 1" else 0)
    text = '{"answer": ' * repeats + _REAL
    if before == "max - 1":
        assert parse_json_answer(text, ["hard_negative_item"], allow_truncated=True)["hard_negative_item"] == "Heat"
    else:
        with pytest.raises(MalformedAnswer):
            parse_json_answer(text, ["hard_negative_item"], allow_truncated=True)


def test_an_answer_that_ended_unclosed_is_not_repaired():
    """Only an answer the token budget cut (``allow_truncated``) is closed: one that ended without closing its object
    stays malformed, as the module's docstring says."""
    with pytest.raises(MalformedAnswer):
        parse_json_answer(_REAL, ["hard_negative_item"], allow_truncated=False)
    assert parse_json_answer(_REAL, ["hard_negative_item"], allow_truncated=True)["hard_negative_item"] == "Heat"


@pytest.mark.parametrize("answer, token", [("ab12", "AB12"), ("SS7", "\u00df7"), ("item_id: CAFE9", "Caf\u00e99"),
                                           ("\uff21\uff22\uff11\uff12", "ab12")])
def test_a_short_id_is_recognised_up_to_case_folding_accents_and_width(answer, token):
    """v17 compares the answer with the prompt's ids both folded (ANSWER_CHECKS: "titles and ids compared up to
    accents, compatibility forms, invisible characters and case folding"): the id's case, ß, accent or width as
    the model wrote them still echo it; another id does not."""
    from recbole_hnlm.llm.semantic import negative_problem

    assert "an id from the prompt" in negative_problem({"hard_negative_item": answer}, "Heat (1995)", ids=[token])
    assert negative_problem({"hard_negative_item": answer}, "Heat (1995)", ids=[token + "0"]) is None


# --- hold_work_folder and the ChunkedRun inside it ------------------------------------------------------------------

def test_a_held_folder_is_held_once_however_written_and_let_go_after(tmp_path, monkeypatch):
    """Inside hold_work_folder, a nested hold and the ChunkedRun of the same folder (written relative or absolute)
    take no second lock (one of this process would be refused by its own); the folder stays locked for other
    processes until the outer block ends, and a run after it locks the folder itself again."""
    from recbole_hnlm.llm.chunks import ChunkedRun, hold_work_folder

    monkeypatch.chdir(tmp_path)
    work = str(tmp_path / "s.safetensors.work")
    lock = lock_file(work)
    with hold_work_folder("s.safetensors.work"):
        with hold_work_folder(work), ChunkedRun(work, {}, 4, 2) as run:
            assert run.pending() == [0, 1]
        with ChunkedRun("s.safetensors.work", {}, 4, 2) as run:
            assert run.pending() == [0, 1]
        assert seen_held_by_another_process(lock)
    assert not seen_held_by_another_process(lock)
    with ChunkedRun(work, {}, 4, 2):
        assert seen_held_by_another_process(lock), "a run after the hold took no lock of its own"
