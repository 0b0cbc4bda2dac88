"""Stage orchestration shared by the CLI and :func:`ensure_negatives` (the run script's entry point).

Stages: ``profiles`` (eq. 2-3) -> ``negatives`` (eq. 4-5, variant semantic) or ``finetune`` (§4.2-4.3) ->
``embed`` (variant finetuned). Each stage is resumable and skips work whose output already matches its manifest.
"""
import contextlib
import logging
import os
from typing import Iterable, Optional, Tuple

import torch

from recbole_hnlm.files import check_writable, discard_stale_work, is_safetensors_file, work_folder
from .chunks import hold_work_folder
from .config import LLMConfig
from .dataset_text import DatasetText
from .paths import artifact_dir
from .store import PairEmbeddingStore, StoreError, default_store_path, manifest_mismatch
from .throughput import (CPU_SEMANTIC_PAIRS_PER_SECOND, busy_machine_hint, long_on_this_machine, machine_load,
                         rough_duration, usable_cores)

__all__ = ["ensure_negatives", "run_profiles", "run_negatives", "profiles_path", "store_path_for",
           "load_dataset_text", "root_data_path", "teacher_path_for"]

logger = logging.getLogger(__name__)


def profiles_path(data_path: str, dataset: str) -> str:
    return os.path.join(artifact_dir(data_path, dataset), f"{dataset}.hnlm-profiles.jsonl")


def store_path_for(cfg: LLMConfig, data_path: str, dataset: str) -> str:
    path = cfg.store_path or default_store_path(data_path, dataset, cfg.variant)
    if os.path.isdir(path):  # before hours of generation that could not be written
        raise StoreError(f"{path} is a folder: hnlm_store_path names the store's .safetensors file")
    if os.path.isfile(path) and not is_safetensors_file(path):  # a store (even a damaged one) is replaced, not this
        raise StoreError(f"{path} is not a safetensors file, so not a store this plugin wrote: it is not replaced. "
                         "Give hnlm_store_path another file, or move this one away")
    return path


def teacher_path_for(config) -> str:
    """Teacher file of a RecBole run: ``hnlm_teacher_path`` or the default in the dataset's artifact folder."""
    from .teacher import default_teacher_path

    cfg = LLMConfig.from_config(config)
    dataset = config["dataset"]
    return cfg.teacher_path or default_teacher_path(root_data_path(config, dataset), dataset)


def _id_fields(config) -> Tuple[str, str]:
    def read(key, default):
        return config[key] if config is not None and key in config and config[key] else default
    return read("USER_ID_FIELD", "user_id"), read("ITEM_ID_FIELD", "item_id")


def load_dataset_text(config, dataset: str, data_path: str, train_pairs=None) -> DatasetText:
    uid, iid = _id_fields(config)
    parts = config["benchmark_filename"] if config is not None and "benchmark_filename" in config else None
    encoding = config["encoding"] if config is not None and "encoding" in config and config["encoding"] else "utf-8"
    time_field = config["TIME_FIELD"] if config is not None and "TIME_FIELD" in config else None
    return DatasetText(data_path, dataset, train_pairs, uid_field=uid, iid_field=iid, inter_parts=parts,
                       encoding=encoding, item_quoted=item_file_loaded(config), time_field=time_field)


def item_file_loaded(config) -> bool:
    """Whether RecBole loads the ``.item`` file (``load_col`` is ``None`` or names it): then the LLM stage reads it
    as RecBole does."""
    if config is None or "load_col" not in config:
        return False
    load_col = config["load_col"]
    return load_col is None or (isinstance(load_col, dict) and "item" in load_col)


def _cached(path: str, wanted: dict, say: bool = True) -> bool:
    """Whether the store at ``path`` was computed for ``wanted`` (a manifest); ``say``: warn why one is not reused."""
    if not os.path.exists(path):
        return False
    try:
        store = PairEmbeddingStore.open(path)
    except StoreError as err:
        if say:
            logger.warning("%s: unreadable store, recomputing (%s)", path, err)
        return False
    message = manifest_mismatch(store.manifest, wanted)
    if message and say:  # hours of work on a large dataset, and the file is replaced: said even under --quiet
        logger.warning("%s was built with other settings or data (%s): it is computed again and replaced (give "
                       "hnlm_store_path another file to keep it)", path, message)
    return not message


_BUSY_MACHINE_SAID = []  # the busy-machine hint of this process, once said


@contextlib.contextmanager
def llm_threads(cfg: LLMConfig):
    """``hnlm_threads`` for the LLM stage only: the thread count before it is restored after it, so the CF training
    that follows runs with the same threads whether the stage ran or its store was cached (the plugin's ops give the
    same bits on any thread count, torch's own sums such as the L2 term may not). With torch's default threads on a
    busy CPU the stage says that one thread may be faster (:func:`busy_machine_hint`),
    once per process."""
    before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif not torch.cuda.is_available() and not _BUSY_MACHINE_SAID:
        hint = busy_machine_hint(before, machine_load(), usable_cores())
        if hint:
            _BUSY_MACHINE_SAID.append(hint)
            logger.warning("HNLMRec LLM stage: %s", hint)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _generator(cfg: LLMConfig, max_new_tokens: int, progress: bool = True):
    """The stage's :class:`Generator` and its ``ModelRef``; the model itself loads at the first answer not cached
    (without the GGUF loader's bar when ``progress`` is off)."""
    from .generation import Generator
    from . import models

    models.check_4bit(cfg.load_in_4bit, "hnlm_generator")
    tokenizer, ref = models.load_tokenizer(cfg.generator)
    return Generator(None, tokenizer, max_new_tokens=max_new_tokens, batch_size=cfg.gen_batch_size,
                     retries=cfg.retries, seed=cfg.seed,
                     load_model=lambda: models.load_model(ref, cfg.dtype, cfg.load_in_4bit, progress=progress)), ref


def run_profiles(cfg: LLMConfig, text: DatasetText, pairs, generator=None, generator_name: Optional[str] = None,
                 progress: bool = True):
    """Item then user profiles needed by ``pairs`` (resumable JSONL). Returns (book, prompt versions)."""
    with llm_threads(cfg):
        return _run_profiles(cfg, text, pairs, generator, generator_name, progress)


def _run_profiles(cfg: LLMConfig, text: DatasetText, pairs, generator, generator_name: Optional[str], progress: bool):
    from .models import resolve_generator
    from .profiles import ProfileBook, build_profiles

    if generator is None:
        generator, ref = _generator(cfg, cfg.profile_max_new_tokens, progress)
        generator_name = ref.name
    generator_name = generator_name or resolve_generator(cfg.generator).name
    book = ProfileBook(profiles_path(text.data_path, text.dataset))
    users = list(dict.fromkeys(u for u, _ in pairs))
    items = None
    if cfg.item_profiles:
        items = sorted({i for _, i in pairs} | {e.item for u in users for e in text.user_history(u, cfg.max_history)})
    saved = generator.max_new_tokens
    generator.max_new_tokens = cfg.profile_max_new_tokens
    try:
        versions = build_profiles(text, generator, generator_name, book, users=users, items=items,
                                  max_history=cfg.max_history, max_reviews=cfg.max_reviews,
                                  profile_words=cfg.profile_words, item_profiles=cfg.item_profiles,
                                  progress=progress, compute=cfg.compute)
    finally:
        generator.max_new_tokens = saved
    return book, versions


def _prompt_versions(cfg: LLMConfig):
    from .prompts import PromptTemplate
    from .semantic import NEGATIVE_TEMPLATE

    versions = {"user_profile": PromptTemplate.load("user_profile.v1").version,
                "hard_negative": PromptTemplate.load(NEGATIVE_TEMPLATE).version}
    if cfg.item_profiles:
        versions["item_profile"] = PromptTemplate.load("item_profile.v1").version
    return versions


def run_negatives(cfg: LLMConfig, text: DatasetText, store_path: Optional[str] = None, progress: bool = True,
                  on_chunk=None, generator=None, encoder=None, generator_name: Optional[str] = None) -> str:
    """Semantic variant end to end (profiles + negatives + store); a matching store is a cache hit."""
    from .models import TextEncoder, resolve_encoder, resolve_generator
    from .semantic import run_semantic_negatives, semantic_manifest

    store_path = store_path or default_store_path(text.data_path, text.dataset, "semantic")
    pairs = text.select_pairs(cfg.max_pairs, cfg.seed)
    generator_name = generator_name or resolve_generator(cfg.generator).name
    encoder_name = encoder.name if encoder is not None else resolve_encoder(cfg.encoder).name
    wanted = semantic_manifest(cfg, text, pairs, generator_name, encoder_name, _prompt_versions(cfg))
    if _cached(store_path, wanted):
        logger.info("%s: cache hit, semantic negatives already computed", store_path)
        discard_stale_work(store_path)
        return store_path
    check_writable(store_path, "hnlm_store_path")
    if long_on_this_machine(len(pairs)):
        logger.warning("HNLMRec semantic variant: %d pairs, each an LLM answer (docs/llm.md measures about %s pairs/s "
                       "on 2 CPU cores: %s), after the profiles of their users and items; it resumes where it stops. "
                       "hnlm_max_pairs=N with hnlm_missing=random writes a subset.", len(pairs),
                       CPU_SEMANTIC_PAIRS_PER_SECOND, rough_duration(len(pairs) / CPU_SEMANTIC_PAIRS_PER_SECOND))
    # the store's work folder: refused now, before the models load and the profiles are written, when another
    # process computes it; held until the store is written
    with hold_work_folder(work_folder(store_path)), llm_threads(cfg):
        if generator is None:
            generator, _ = _generator(cfg, cfg.max_new_tokens, progress)
        if encoder is None:
            encoder = TextEncoder(cfg.encoder)
        book, _ = run_profiles(cfg, text, pairs, generator, generator_name, progress)
        generator.max_new_tokens = cfg.max_new_tokens
        cut = generator.prompts_cut
        run_semantic_negatives(cfg, text, pairs, store_path, generator, encoder, book, wanted, on_chunk, progress)
        if generator.prompts_cut > cut:
            logger.warning("%d hard-negative prompts were longer than the model's context and lost their start (the "
                           "instructions): shorten the user profiles' histories (hnlm_max_history, "
                           "hnlm_profile_words)", generator.prompts_cut - cut)
    return store_path


def root_data_path(config, dataset: str) -> str:
    """RecBole stores ``data_path`` already joined with the dataset name; return the folder above it."""
    path = os.path.normpath(config["data_path"])
    return os.path.dirname(path) if os.path.basename(path) == dataset else path


def ensure_negatives(config, dataset_name, data_path: Optional[str] = None,
                     train_pairs: Optional[Iterable[Tuple[str, str]]] = None, progress: bool = True) -> str:
    """Make sure the side-car store for ``config`` exists and matches; compute what is missing. Returns its path.

    Call forms::

        ensure_negatives(config, "ml-100k", data_path, train_pairs)   # explicit
        ensure_negatives(config, train_dataset)                        # RecBole: name, path and split from them

    Args:
        config: RecBole Config or dict with ``hnlm_*`` keys (see :class:`LLMConfig`); ``hnlm_variant`` picks
            finetuned (default) or semantic.
        dataset_name: dataset name, or the RecBole training Dataset / dataloader (then ``config["dataset"]``,
            ``config["data_path"]`` and the training pairs are read from them).
        data_path: folder holding ``<dataset_name>/``; default derived from ``config["data_path"]``.
        train_pairs: the training split as ``(user_token, item_token)`` pairs (original tokens). ``None`` uses
            every interaction (fallback, logged).
    """
    if not isinstance(dataset_name, str):
        from .recbole_pairs import train_pairs_from_dataset

        train_pairs = train_pairs_from_dataset(dataset_name) if train_pairs is None else train_pairs
        dataset_name = config["dataset"]
    if data_path is None:
        data_path = root_data_path(config, dataset_name)
    cfg = LLMConfig.from_config(config)
    text = load_dataset_text(config, dataset_name, data_path, train_pairs)
    path = store_path_for(cfg, data_path, dataset_name)
    if cfg.variant == "semantic":
        return run_negatives(cfg, text, path, progress)
    from .finetune_pipeline import ensure_finetuned

    return ensure_finetuned(cfg, text, path, progress)
