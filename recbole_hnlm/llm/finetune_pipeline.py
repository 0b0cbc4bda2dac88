"""Variant finetuned end to end: profiles (if used) -> fine-tuning (cached adapter) -> one embedding per training
pair written to the side-car store (no text generation; §4.3 "the tuned model outputs negative embeddings").
"""
import contextlib
import json
import logging
import os
from typing import Callable, Dict, List, Optional, Tuple

import torch

from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.files import (check_writable, discard_stale_work, exclusive_lock, lock_file, work_folder,
                                 write_text_atomic)
from .chunks import ChunkedRun, finished_meanwhile, hold_work_folder, user_aligned_starts
from .config import LLMConfig
from .dataset_text import DatasetText
from .hybrid_encoder import HYBRID_TEMPLATE, HybridPromptEncoder, PromptGroup, folder_hash, read_settings
from .paths import artifact_dir
from .prompts import PromptTemplate
from .semantic import pairs_sha256
from .store import split_sha256, write_pair_store
from .teacher import Teacher, default_teacher_path

__all__ = ["ensure_finetuned", "check_adapter_path", "check_teacher_split", "adapter_identity", "embed_pairs",
           "default_adapter_path", "finetuned_manifest"]

logger = logging.getLogger(__name__)


def default_adapter_path(data_path: str, dataset: str) -> str:
    return os.path.join(artifact_dir(data_path, dataset), f"{dataset}.hnlm-adapter")


def _profile_settings(cfg: LLMConfig) -> Dict:
    """What decides the generated profiles, when the hybrid prompt shows them (``ft_*_text: profile``)."""
    if "profile" not in (cfg.ft_user_text, cfg.ft_item_text):
        return {}
    versions = {"user_profile": PromptTemplate.load("user_profile.v1").version}
    if cfg.item_profiles:
        versions["item_profile"] = PromptTemplate.load("item_profile.v1").version
    return dict(item_profiles=cfg.item_profiles, max_reviews=cfg.max_reviews,
                profile_max_new_tokens=cfg.profile_max_new_tokens, retries=cfg.retries, profile_prompts=versions)


def adapter_identity(cfg: LLMConfig, teacher: Teacher, generator_name: str, text: DatasetText) -> Dict:
    """What a saved adapter must have been trained with to be reused: the teacher, the fine-tuning settings, and
    the texts its prompts were built from (the dataset files and the training pairs behind the histories).
    ``ft_max_train_pairs`` at or above the teacher's pair count draws every pair, as 0 does, and is recorded as 0."""
    every_pair = cfg.ft_max_train_pairs >= teacher.pair_user.numel()
    return dict(teacher_hash=teacher.sha256, generator=generator_name,
                template=PromptTemplate.load(HYBRID_TEMPLATE).version, dataset_hash=text.dataset_hash(),
                train_pairs_hash=pairs_sha256(text.pairs), **_profile_settings(cfg), ft_epochs=cfg.ft_epochs,
                ft_max_train_pairs=0 if every_pair else cfg.ft_max_train_pairs, ft_batch_size=cfg.ft_batch_size,
                ft_pairs_per_user=cfg.ft_pairs_per_user, ft_lr=cfg.ft_lr,
                ft_tau=cfg.ft_tau, ft_explicit_negatives=cfg.ft_explicit_negatives, ft_lora_r=cfg.ft_lora_r,
                ft_lora_alpha=cfg.ft_lora_alpha, ft_lora_dropout=cfg.ft_lora_dropout,
                ft_soft_tokens=cfg.ft_soft_tokens, ft_user_text=cfg.ft_user_text, ft_item_text=cfg.ft_item_text,
                ft_history=cfg.ft_history, max_history=cfg.max_history, profile_words=cfg.profile_words,
                compute=cfg.compute, seed=cfg.seed)


def check_adapter_path(folder: str) -> None:
    """Refuse, before any work, an ``hnlm_adapter_path`` that fine-tuning could not write or would wipe: a file, or a
    folder holding files but no adapter settings (fine-tuning replaces the whole folder)."""
    from .hybrid_encoder import SETTINGS_FILE

    if os.path.isfile(folder):
        raise ConfigError(f"{folder} is a file: hnlm_adapter_path names the adapter's folder")
    if os.path.isdir(folder) and os.listdir(folder) and not os.path.exists(os.path.join(folder, SETTINGS_FILE)):
        raise ConfigError(f"{folder} holds files but no {SETTINGS_FILE}, so it is not an adapter folder, and "
                          "fine-tuning would replace everything in it: give hnlm_adapter_path a new or empty folder "
                          "(or move the files away)")


def _adapter_refit_reason(folder: str, identity: Dict) -> Optional[str]:
    """None when the adapter in ``folder`` was fine-tuned with ``identity`` (reused); otherwise why it is fine-tuned
    again: ``""`` when there is none yet, else the warning for a folder that is fine-tuned over (damaged, or of other
    settings or data), which the caller gives once it knows the fine-tuning can run."""
    if not os.path.isdir(folder):
        return ""
    try:
        settings = read_settings(folder)
    except FileNotFoundError:
        return ""
    except DataError as error:  # a damaged folder is fine-tuned again (saved atomically over it)
        return f"{error}; it is fine-tuned again"
    changed = [key for key, value in identity.items() if settings.get(key) != value]
    if not changed:
        return None
    # a cache: the run's adapter replaces it, but a folder the user named may be one they meant to keep
    described = [key if isinstance(identity[key], str) and len(identity[key]) == 64 else
                 f"{key}: {settings.get(key)!r} -> {identity[key]!r}" for key in changed]  # hashes by name only
    return (f"HNLMRec adapter: {folder} was fine-tuned with other settings or data than this run's "
            f"({'; '.join(described)}); it is fine-tuned again over it. Give hnlm_adapter_path another folder to "
            "keep it.")


def finetuned_manifest(cfg: LLMConfig, text: DatasetText, pairs, generator_name: str, teacher: Teacher,
                       adapter_hash: str) -> Dict:
    versions = {"hybrid_query": PromptTemplate.load(HYBRID_TEMPLATE).version}
    if cfg.ft_user_text == "profile":
        versions["user_profile"] = PromptTemplate.load("user_profile.v1").version
    return dict(variant="finetuned", dataset=text.dataset, dataset_hash=text.dataset_hash(),
                pairs_hash=pairs_sha256(pairs), generator=generator_name, encoder="[EOS] last hidden state",
                prompt_version=",".join(f"{k}={v}" for k, v in sorted(versions.items())),
                negatives_per_pair=1, adapter_hash=adapter_hash, teacher_hash=teacher.sha256,
                max_pairs=text.effective_max_pairs(cfg.max_pairs), split_hash=split_sha256(text.split_pairs),
                seed=cfg.seed, dtype=cfg.store_dtype,
                settings=dict(ft_user_text=cfg.ft_user_text, ft_item_text=cfg.ft_item_text,
                              ft_history=cfg.ft_history, max_history=cfg.max_history,
                              profile_words=cfg.profile_words, compute=cfg.compute, **_profile_settings(cfg)))


def _missing_user_text(cfg: LLMConfig) -> str:
    """Why a user of the teacher has no prompt text (:meth:`PairTexts.user_text` gave None)."""
    return "user text missing (profile failed)" if cfg.ft_user_text == "profile" else \
        "user text missing (no training history)"


@torch.inference_mode()
def _embed_chunk(rows: range, pairs, encoder: HybridPromptEncoder, teacher: Teacher, texts, cfg: LLMConfig):
    lookup = {t: r for r, t in enumerate(teacher.user_tokens)}, {t: r for r, t in enumerate(teacher.item_tokens)}
    by_user: Dict[str, List[int]] = {}
    for row in rows:
        by_user.setdefault(pairs[row][0], []).append(row)
    ok_rows, records, groups = [], [], []
    for user, user_rows in by_user.items():
        user_text = texts.user_text(user) if user in lookup[0] else None
        good = [r for r in user_rows if pairs[r][1] in lookup[1] and pairs[r][1] in texts.text.items]
        for r in user_rows:
            if user not in lookup[0] or user_text is None or r not in good:
                reason = ("user not in teacher" if user not in lookup[0] else
                          _missing_user_text(cfg) if user_text is None else
                          "item not in teacher" if pairs[r][1] not in lookup[1] else "item text missing")
                records.append(dict(row=r, user=user, item=pairs[r][1], ok=False, error=reason))
        if user_text is None or not good:
            continue
        item_rows = torch.tensor([lookup[1][pairs[r][1]] for r in good])
        groups.append(PromptGroup(user_text, teacher.user_emb[lookup[0][user]],
                                  [texts.item_text(pairs[r][1]) for r in good], teacher.item_emb[item_rows]))
        ok_rows.extend(good)
        records.extend(dict(row=r, user=user, item=pairs[r][1], ok=True, error=None) for r in good)
    emb = encoder.embed(groups, cfg.embed_batch_size, cfg.embed_tokens).cpu()  # [0, H] without groups
    return torch.tensor(ok_rows, dtype=torch.int64), emb, records


def embed_pairs(cfg: LLMConfig, pairs: List[Tuple[str, str]], store_path: str, encoder: HybridPromptEncoder,
                teacher: Teacher, texts, manifest: Dict, on_chunk: Optional[Callable[[int], None]] = None,
                progress: bool = True) -> Dict:
    """One [EOS] embedding per pair, chunked and resumable, merged into ``store_path``."""

    def compute(rows_range, advance):  # a chunk takes about a second: the bar moves per chunk
        rows, emb, records = _embed_chunk(rows_range, pairs, encoder, teacher, texts, cfg)
        return rows, emb.reshape(-1, encoder.hidden), records

    with ChunkedRun(work_folder(store_path), dict(manifest=manifest), len(pairs), cfg.chunk_size,
                    starts=user_aligned_starts(pairs, cfg.chunk_size)) as run:
        if finished_meanwhile(store_path, manifest, run):
            return None
        run.run_pending(compute, "fine-tuned embed", progress, on_chunk)
        rows, emb, records = run.merge()
        failures = [r for r in records if not r["ok"]]
        full = dict(manifest, num_failures=len(failures), num_requested=len(pairs))
        # the failures first: the store is the cache key, so once it exists everything beside it must be complete
        write_text_atomic(store_path + ".failures.jsonl", "".join(json.dumps(r) + "\n" for r in failures))
        written = write_pair_store(store_path, [pairs[r][0] for r in rows.tolist()],
                                   [pairs[r][1] for r in rows.tolist()], emb, full, getattr(torch, cfg.store_dtype))
        run.cleanup()
    if failures:
        logger.warning("%s: %d/%d pairs have no embedding (see %s.failures.jsonl)", store_path, len(failures),
                       len(pairs), store_path)
    return written


def check_teacher_split(teacher: Teacher, text: DatasetText) -> None:
    """Refuse a teacher trained on another split: its pairs, embeddings and MixGCF negatives would carry this run's
    validation and test interactions into the fine-tuned LLM (§4.2 trains it on the training split only)."""
    outside = teacher.pairs_outside(text.pairs)
    if not outside:
        return
    user, item = outside[0]
    raise DataError(
        f"{teacher.path}: {len(outside)} of the teacher's {teacher.pair_user.numel()} training pairs (e.g. user "
        f"{user!r}, item {item!r}) are not training pairs of this run's split of {text.inter_path}, so it was trained "
        "on another split (another seed, eval_args or dataset filter) or before that file changed, and fine-tuning "
        "on it would leak this run's "
        "validation and test interactions. Give this split a teacher of its own: set hnlm_teacher_path to another "
        "file (the run script trains one there; the file above stays for its own split), with hnlm_adapter_path "
        "and hnlm_store_path also naming this split's own (the default ones follow the teacher and would be "
        "fine-tuned again at each switch), or replace this teacher with `python -m recbole_hnlm.llm teacher "
        "--overwrite` and the run's settings, or move it away (a benchmark grid over seeds: give it --split_seed, "
        "one split for all)")


def ensure_finetuned(cfg: LLMConfig, text: DatasetText, store_path: str, progress: bool = True,
                     lm_and_tokenizer=None, generator_name: Optional[str] = None, on_chunk=None,
                     embed: bool = True) -> str:
    """Fine-tune (or reuse the matching adapter) and embed every selected training pair; cache-aware.

    With ``embed=False`` only the adapter is ensured (CLI ``finetune``); returns the adapter folder then.
    """
    from .models import check_4bit, resolve_generator
    from .pipeline import _cached, llm_threads

    if cfg.negatives_per_pair != 1:
        logger.warning("hnlm_negatives_per_pair=%d is ignored: it averages several written negatives (eq. 5) in the "
                       "semantic variant, and the fine-tuned variant emits one [EOS] embedding per pair.",
                       cfg.negatives_per_pair)
    adapter = cfg.adapter_path or default_adapter_path(text.data_path, text.dataset)
    check_adapter_path(adapter)
    teacher = Teacher.load(cfg.teacher_path or default_teacher_path(text.data_path, text.dataset))
    check_teacher_split(teacher, text)
    generator_name = generator_name or resolve_generator(cfg.generator).name
    identity = adapter_identity(cfg, teacher, generator_name, text)
    pairs = text.select_pairs(cfg.max_pairs, cfg.seed)
    refit = _adapter_refit_reason(adapter, identity)  # read once: a mismatch is warned about once
    reusable = refit is None
    if refit:  # refused first when the fine-tuning cannot run here: no false "fine-tuned again"
        check_4bit(cfg.load_in_4bit, "hnlm_load_in_4bit")
        logger.warning("%s", refit)
    if reusable:  # a fine-tuning stopped between saving the adapter and removing its resume state
        discard_stale_work(adapter)
    if embed and not reusable and os.path.exists(store_path):  # its manifest names the adapter hash: never a hit
        logger.warning("%s: its adapter %s is fine-tuned again, so the store is computed again and replaced (give "
                       "hnlm_store_path another file to keep it)", store_path, adapter)
    if reusable and not embed:
        logger.info("%s: matching adapter already trained", adapter)
        return adapter
    if reusable:
        wanted = finetuned_manifest(cfg, text, pairs, generator_name, teacher, folder_hash(adapter))
        if _cached(store_path, wanted):
            logger.info("%s: cache hit, fine-tuned negatives already computed", store_path)
            discard_stale_work(store_path)
            return store_path
    for path, option, written in ((adapter, "hnlm_adapter_path", not reusable), (store_path, "hnlm_store_path", embed)):
        if written:
            check_writable(path, option)
    with contextlib.ExitStack() as held:
        if embed:  # the store's work folder: refused now, before the model loads, when another process computes it
            held.enter_context(hold_work_folder(work_folder(store_path)))
        # one run at a time fine-tunes the adapter folder (a second one would save over it after hours), and none
        # while others read it: runs reusing it to embed their stores hold it together
        with exclusive_lock(lock_file(adapter), f"the adapter {adapter}", shared=reusable), llm_threads(cfg):
            if reusable or _adapter_refit_reason(adapter, identity) is not None:
                return _train_and_embed(cfg, text, store_path, progress, lm_and_tokenizer, generator_name, on_chunk,
                                        embed, teacher, adapter, identity, pairs, reusable)
        # another process fine-tuned it while this one got ready: reuse it as any run does (its store may be cached,
        # and runs reading it embed side by side)
        logger.info("%s: fine-tuned by another process meanwhile; reused", adapter)
        return ensure_finetuned(cfg, text, store_path, progress, lm_and_tokenizer, generator_name, on_chunk, embed)


def _train_and_embed(cfg, text, store_path, progress, lm_and_tokenizer, generator_name, on_chunk, embed, teacher,
                     adapter, identity, pairs, reusable):
    """The uncached part of :func:`ensure_finetuned`: load the LLM, fine-tune or load the adapter, embed."""
    from .finetune import PairTexts, train_hybrid_encoder, training_examples
    from .finetune_state import discard_finetune_state
    from .models import load_causal_lm
    from .pipeline import run_profiles

    if lm_and_tokenizer is None:
        lm, tokenizer, _ = load_causal_lm(cfg.generator, cfg.dtype, cfg.load_in_4bit, progress=progress)
    else:
        lm, tokenizer = lm_and_tokenizer
    book = None
    if cfg.ft_user_text == "profile" or cfg.ft_item_text == "profile":
        from .generation import Generator

        generator = Generator(lm, tokenizer, max_new_tokens=cfg.profile_max_new_tokens,
                              batch_size=cfg.gen_batch_size, retries=cfg.retries, seed=cfg.seed)
        # the users and items of the pairs to embed and of the teacher's pairs (fine-tuning examples)
        needed = list(dict.fromkeys(list(pairs) + teacher.token_pairs()))
        book, _ = run_profiles(cfg, text, needed, generator, generator_name, progress)  # its profiles, not another
        # run's appended since (a reload would read the latest record per key, whoever wrote it)
    texts = PairTexts(text, cfg, book)
    if reusable:
        encoder = HybridPromptEncoder.load(lm, tokenizer, adapter, merge=not cfg.load_in_4bit)
    else:
        lora = dict(r=cfg.ft_lora_r, alpha=cfg.ft_lora_alpha, dropout=cfg.ft_lora_dropout)
        work_dir = work_folder(adapter)  # the resume state of an interrupted fine-tuning
        # LoRA and MLP initialisation and dropout draw from hnlm_seed, not from where the caller left the global RNG
        # (restored afterwards): the CLI stage and a run build the same adapter
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            encoder = HybridPromptEncoder(lm, tokenizer, teacher.dim, cfg.ft_soft_tokens, lora=lora)
            examples = training_examples(teacher, texts, cfg)
            losses = train_hybrid_encoder(encoder, teacher, examples, cfg, progress, work_dir=work_dir,
                                          identity=identity)
        if not losses:
            raise_ = "hnlm_ft_batch_size (now 1)" if cfg.ft_batch_size < 2 else "hnlm_ft_max_train_pairs"
            raise ConfigError(f"fine-tuning ran no step: {len(examples)} training examples, and a step needs a batch "
                              f"of at least two (in-batch negatives). Raise {raise_}, or check that the teacher's "
                              "pairs have texts.")
        logger.info("fine-tuning: %d steps, loss %.4f -> %.4f", len(losses), losses[0], losses[-1])
        encoder.save(adapter, dict(identity, losses=losses))
        discard_finetune_state(work_dir)
        if not cfg.load_in_4bit:  # merging into 4-bit weights would re-quantise them: keep LoRA separate there
            encoder.body = encoder.body.merge_and_unload()
        encoder.eval()
    if not embed:
        return adapter
    manifest = finetuned_manifest(cfg, text, pairs, generator_name, teacher, folder_hash(adapter))
    embed_pairs(cfg, pairs, store_path, encoder, teacher, texts, manifest, on_chunk, progress)
    return store_path
