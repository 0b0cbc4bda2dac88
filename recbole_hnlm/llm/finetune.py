"""Contrastive supervised fine-tuning of the hybrid-prompt encoder (paper §4.3; algorithms.md §10.12-13).

Query = hybrid prompt of (u, i) -> [EOS] hidden state ``h_q``. Positive = ``MLP_t(z_ui)``, the MixGCF hard negative
of the pair from the teacher file. Negatives = the other rows' positives (in-batch) + ``ft_explicit_negatives``
random items ``MLP_t(e_j)`` per row. Loss = InfoNCE with cosine similarity and temperature ``ft_tau`` (0.05).
Only LoRA, the soft-token MLPs, the soft-token norms and ``MLP_t`` train; the LLM weights stay frozen.
"""
import logging
import random
from typing import List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from .config import LLMConfig
from .dataset_text import DatasetText
from .hybrid_encoder import HybridPromptEncoder, info_nce
from .teacher import Teacher

__all__ = ["PairTexts", "train_hybrid_encoder"]

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

    def user_text(self, user: str) -> Optional[str]:
        if self.cfg.ft_user_text == "profile":
            return self.book.summary("user", user)
        titles = [self.text.items[e.item].title for e in self.text.user_history(user, self.cfg.max_history)]
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


def training_examples(teacher: Teacher, texts: PairTexts, cfg: LLMConfig) -> List[Tuple[int, str, str]]:
    """(teacher pair row, user text, item text) for a seeded subset of the teacher's pairs with a user text."""
    rows = list(range(teacher.pair_user.shape[0]))
    if 0 < cfg.ft_max_train_pairs < len(rows):
        rows = sorted(random.Random(cfg.seed).sample(rows, cfg.ft_max_train_pairs))
    out = []
    for r in rows:
        user = teacher.user_tokens[int(teacher.pair_user[r])]
        item = teacher.item_tokens[int(teacher.pair_item[r])]
        if item not in texts.text.items:
            continue
        user_text = texts.user_text(user)
        if user_text is not None:
            out.append((r, user_text, texts.item_text(item)))
    return out


def train_hybrid_encoder(encoder: HybridPromptEncoder, teacher: Teacher, examples: Sequence[Tuple[int, str, str]],
                         cfg: LLMConfig, progress: bool = True, max_steps: Optional[int] = None) -> List[float]:
    """Run ``ft_epochs`` of InfoNCE fine-tuning; returns the loss of every step."""
    if not examples:
        raise ValueError("no fine-tuning examples (teacher pairs without user text or item)")
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.ft_lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    draw = torch.Generator().manual_seed(cfg.seed)
    n_items = teacher.item_emb.shape[0]
    losses: List[float] = []
    encoder.train()
    steps = cfg.ft_epochs * ((len(examples) + cfg.ft_batch_size - 1) // cfg.ft_batch_size)
    bar = tqdm(total=min(steps, max_steps or steps), desc="fine-tune", unit="step", disable=not progress)
    for _ in range(cfg.ft_epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.ft_batch_size):
            batch = [examples[k] for k in order[start:start + cfg.ft_batch_size]]
            if len(batch) < 2:
                continue  # InfoNCE needs in-batch negatives
            rows = torch.tensor([r for r, _, _ in batch])
            query = encoder.encode_full([u for _, u, _ in batch], [i for _, _, i in batch],
                                        teacher.user_emb[teacher.pair_user[rows]],
                                        teacher.item_emb[teacher.pair_item[rows]])
            positive = encoder.targets(teacher.neg_emb[rows])
            negatives = None
            if cfg.ft_explicit_negatives > 0:
                random_items = torch.randint(0, n_items, (len(batch), cfg.ft_explicit_negatives), generator=draw)
                negatives = encoder.targets(teacher.item_emb[random_items].view(-1, teacher.dim)).view(
                    len(batch), cfg.ft_explicit_negatives, -1)
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
            if max_steps is not None and len(losses) >= max_steps:
                bar.close()
                encoder.eval()
                return losses
    bar.close()
    encoder.eval()
    return losses
