"""Contrastive supervised fine-tuning of the hybrid-prompt encoder (paper §4.3; algorithms.md §10.12-13).

Query = hybrid prompt of (u, i) -> [EOS] hidden state ``h_q``. Positive = ``MLP_t(z_ui)``, the MixGCF hard negative
of the pair from the teacher file. Negatives = the other rows' positives (in-batch) + ``ft_explicit_negatives``
random items ``MLP_t(e_j)`` per row. Loss = InfoNCE with cosine similarity and temperature ``ft_tau`` (0.05).
Only LoRA, the soft-token MLPs, the soft-token norms and ``MLP_t`` train; the LLM weights stay frozen.
A batch holds ``ft_batch_size`` pairs in groups of up to ``ft_pairs_per_user`` pairs of one user: each group is one
row of the same forward the embed stage runs (the user's prefix once, its pairs' suffixes behind it), so a step
costs about one prompt per user rather than one per pair; in-batch negatives include the same user's other pairs.
"""
import logging
import random
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from tqdm.auto import tqdm

from .config import LLMConfig
from .dataset_text import DatasetText
from .finetune_state import SAVE_EVERY_SECONDS, FineTuneProgress, load_finetune_state, save_finetune_state
from .hybrid_encoder import HybridPromptEncoder, PromptGroup, info_nce
from .teacher import Teacher

__all__ = ["PairTexts", "TrainingGroup", "training_examples", "train_hybrid_encoder"]

logger = logging.getLogger(__name__)


class PairTexts:
    """User and item texts of the hybrid prompt, per ``ft_user_text`` / ``ft_item_text``.

    ``user_text`` returns None when the configured profile is missing or failed (the pair is then a recorded
    failure, not filled with something else).
    """

    def __init__(self, text: DatasetText, cfg: LLMConfig, book=None):
        self.text, self.cfg, self.book = text, cfg, book
        if (cfg.ft_user_text == "profile" or cfg.ft_item_text == "profile") and book is None:
            raise ValueError("hnlm_ft_user_text/hnlm_ft_item_text = profile needs generated profiles")
        if cfg.ft_item_text == "profile" and not cfg.item_profiles:  # LLMConfig.validate says so first
            raise ValueError("hnlm_ft_item_text=profile needs hnlm_item_profiles: True")

    def user_text(self, user: str) -> Optional[str]:
        if self.cfg.ft_user_text == "profile":
            return self.book.summary("user", user)
        titles = [self.text.items[e.item].title for e in self.text.user_history(user, self.cfg.ft_history)]
        return "liked: " + "; ".join(titles) if titles else None

    def item_text(self, item: str) -> str:
        info = self.text.items[item]
        if self.cfg.ft_item_text == "none":
            return ""
        prefix = " "  # the item text follows the soft token
        if self.cfg.ft_item_text == "profile" and self.book is not None and self.book.summary("item", item):
            return prefix + " ".join(self.book.summary("item", item).split()[:self.cfg.profile_words])
        extra = ", ".join(v for k, v in info.attributes.items() if k in ("year", "genres", "categories", "city"))
        return prefix + (f"{info.title} ({extra})" if extra else info.title)


class TrainingGroup(NamedTuple):
    """Up to ``ft_pairs_per_user`` teacher pairs of one user: one row of a fine-tuning forward."""
    user_text: str
    rows: List[int]  # teacher pair rows
    item_texts: List[str]


def training_examples(teacher: Teacher, texts: PairTexts, cfg: LLMConfig) -> List[TrainingGroup]:
    """Seeded user groups of teacher pairs, ``ft_max_train_pairs`` pairs in all (0 = every pair).

    Each user's pairs (with an item and a user text) are shuffled and cut into groups of ``ft_pairs_per_user``;
    whole groups are then drawn at random until the pair budget is reached. ``ft_pairs_per_user: 1`` draws
    independent pairs, each its own full prompt.
    """
    rng = random.Random(cfg.seed)
    by_user: Dict[int, List[int]] = {}
    for r, u in enumerate(teacher.pair_user.tolist()):
        by_user.setdefault(u, []).append(r)
    groups = []
    for u, rows in by_user.items():
        user_text = texts.user_text(teacher.user_tokens[u])
        rows = [r for r in rows if teacher.item_tokens[int(teacher.pair_item[r])] in texts.text.items]
        if user_text is None or not rows:
            continue
        rng.shuffle(rows)
        for s in range(0, len(rows), cfg.ft_pairs_per_user):
            part = sorted(rows[s:s + cfg.ft_pairs_per_user])
            items = [texts.item_text(teacher.item_tokens[int(teacher.pair_item[r])]) for r in part]
            groups.append(TrainingGroup(user_text, part, items))
    rng.shuffle(groups)
    if cfg.ft_max_train_pairs > 0:
        chosen, total = [], 0
        for g in groups:
            if total >= cfg.ft_max_train_pairs:
                break
            g = g._replace(rows=g.rows[:cfg.ft_max_train_pairs - total],
                           item_texts=g.item_texts[:cfg.ft_max_train_pairs - total])
            chosen.append(g)
            total += len(g.rows)
        groups = chosen
    return groups


def _batches(groups: Sequence[TrainingGroup], order: Sequence[int], batch_size: int) -> List[List[TrainingGroup]]:
    """Consecutive groups until each batch holds at least ``batch_size`` pairs (the last may hold fewer)."""
    batches, current, size = [], [], 0
    for k in order:
        current.append(groups[k])
        size += len(groups[k].rows)
        if size >= batch_size:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _pairs_in(batch: Sequence[TrainingGroup]) -> int:
    return sum(len(group.rows) for group in batch)


def train_hybrid_encoder(encoder: HybridPromptEncoder, teacher: Teacher, examples: Sequence[TrainingGroup],
                         cfg: LLMConfig, progress: bool = True, max_steps: Optional[int] = None,
                         work_dir: Optional[str] = None, identity: Optional[Dict] = None,
                         save_every: Optional[float] = None) -> List[float]:
    """Run ``ft_epochs`` of InfoNCE fine-tuning over user groups; returns the loss of every step.

    With ``work_dir``, the resume state (``finetune_state.py``) is written there at most every ``save_every`` seconds
    (default :data:`SAVE_EVERY_SECONDS`), and a state saved by an interrupted fine-tuning of the same ``identity`` (the
    adapter's) is continued.
    """
    if not examples:
        raise ValueError("no fine-tuning examples (teacher pairs without user text or item)")
    save_every = SAVE_EVERY_SECONDS if save_every is None else save_every
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.ft_lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    draw = torch.Generator().manual_seed(cfg.seed)
    n_items = teacher.item_emb.shape[0]
    encoder.train()
    epochs = []
    for _ in range(cfg.ft_epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        epochs.append(_batches(examples, order, cfg.ft_batch_size))
    batches = [b for e in epochs for b in e]
    resumed = None
    if work_dir is not None:
        resumed = load_finetune_state(work_dir, identity or {}, encoder, optimizer, draw, len(batches))
    start, losses = resumed or FineTuneProgress(0, [])
    steps = sum(1 for batch in batches if _pairs_in(batch) >= 2)  # a batch of one pair is no step (below)
    bar = tqdm(total=min(steps, max_steps or steps), initial=len(losses), desc="fine-tune", unit="step",
               disable=not progress)
    last_save = time.monotonic()
    for index in range(start, len(batches)):
        if max_steps is not None and len(losses) >= max_steps:
            break
        if work_dir is not None and index > start and time.monotonic() - last_save >= save_every:
            save_finetune_state(work_dir, identity or {}, encoder, optimizer, draw, FineTuneProgress(index, losses),
                                len(batches))
            last_save = time.monotonic()
        batch = batches[index]
        if _pairs_in(batch) < 2:
            continue  # InfoNCE needs in-batch negatives
        rows = torch.tensor([r for g in batch for r in g.rows])
        query = encoder.encode_groups([
            PromptGroup(g.user_text, teacher.user_emb[teacher.pair_user[g.rows[0]]], g.item_texts,
                        teacher.item_emb[teacher.pair_item[torch.tensor(g.rows)]]) for g in batch])
        positive = encoder.targets(teacher.neg_emb[rows])
        negatives = None
        if cfg.ft_explicit_negatives > 0:
            random_items = torch.randint(0, n_items, (len(rows), cfg.ft_explicit_negatives), generator=draw)
            negatives = encoder.targets(teacher.item_emb[random_items].view(-1, teacher.dim)).view(
                len(rows), cfg.ft_explicit_negatives, -1)
        loss = info_nce(query, positive, negatives, cfg.ft_tau)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if len(losses) % 10 == 0:
            logger.info("fine-tune step %d/%d loss %.4f", len(losses), steps, losses[-1])
    bar.close()
    encoder.eval()
    return losses
