"""HNLMRec hybrid-prompt encoder (paper §4.2-4.3, algorithms.md §5.3 and §10.12).

Query prompt (template ``hybrid_query.v2``, ``format: raw`` like the authors' inference prompt)::

    Instruct: ... Query: USER: <soft_u> user text ITEM: | <soft_i>[ item text] [EOS]
    \________ per-user prefix (KV cached) ________/   \___ per-pair suffix ___/

``<soft_u> = MLP_u(e_u)`` and ``<soft_i> = MLP_i(e_i)`` map the pre-trained CF embeddings into the LLM's token
embedding space (``ft_soft_tokens`` vectors each; fed through ``inputs_embeds``, never written as numbers). The
query embedding is the last-layer hidden state at the appended [EOS], for training and inference alike. Training
runs each full sequence; inference runs the per-user prefix once and packs the user's suffixes behind its KV
cache under a block mask (identical numbers, checked by the tests). LoRA (peft) adapts the attention projections; the positive target is the
MixGCF hard negative mapped by a trainable ``MLP_t`` into the same space (InfoNCE, eq. 12 reconstructed).
"""
import hashlib
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .models import end_of_sequence_id
from .prompts import ChatFormatter, PromptTemplate

__all__ = ["HybridPromptEncoder", "info_nce", "HYBRID_TEMPLATE"]

HYBRID_TEMPLATE = "hybrid_query.v2"
_SOFT_U, _SOFT_I = "\u2063SOFT_USER\u2063", "\u2063SOFT_ITEM\u2063"
_PROJECTORS = "projectors.safetensors"
_SETTINGS = "hybrid.json"


def _mlp(d_in: int, d_out: int, hidden: Optional[int] = None) -> nn.Sequential:
    hidden = hidden or max(d_out, d_in)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: Optional[torch.Tensor], tau: float):
    """InfoNCE with cosine similarity: in-batch positives of other rows + explicit negatives ``[B, K, H]``."""
    q = F.normalize(query.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    logits = q @ p.T / tau  # [B, B], diagonal = own positive
    if negatives is not None and negatives.numel():
        n = F.normalize(negatives.float(), dim=-1)
        logits = torch.cat([logits, torch.einsum("bh,bkh->bk", q, n) / tau], dim=1)
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


class HybridPromptEncoder(nn.Module):
    """LLM body (+ LoRA) with CF soft tokens; emits one ``[H]`` embedding per (user, item) query.

    Args:
        lm: a causal LM (``AutoModelForCausalLM``) or its body; only the body runs (no LM head).
        tokenizer: its tokenizer.  cf_dim: size d of the CF embeddings.  soft_tokens: vectors per ID slot.
        lora: ``dict(r=, alpha=, dropout=)`` to add LoRA to q/k/v/o projections; None = no adapter.
    """

    def __init__(self, lm, tokenizer, cf_dim: int, soft_tokens: int = 1, lora: Optional[Dict] = None,
                 template: str = HYBRID_TEMPLATE):
        super().__init__()
        body = lm.get_decoder() if hasattr(lm, "get_decoder") else lm
        self.hidden = int(body.config.hidden_size)
        self.cf_dim, self.soft_tokens = int(cf_dim), int(soft_tokens)
        self.tokenizer, self.template = tokenizer, PromptTemplate.load(template)
        self.eos_id = end_of_sequence_id(tokenizer)
        for p in body.parameters():
            p.requires_grad_(False)
        self.lora_settings = lora
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], bias="none",
                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
            body = get_peft_model(body, config)
        self.body = body
        self.user_proj = _mlp(cf_dim, soft_tokens * self.hidden)
        self.item_proj = _mlp(cf_dim, soft_tokens * self.hidden)
        self.target_proj = _mlp(cf_dim, self.hidden)
        # soft tokens = unit direction x a trainable norm started at the mean norm of real token embeddings,
        # so the first forward stays in the LLM's input distribution whatever the CF embedding scale
        norm = float(self.token_embeddings().weight.detach().float().norm(dim=-1).mean())
        self.soft_scale = nn.Parameter(torch.tensor([norm, norm]))
        self._formatter = ChatFormatter(tokenizer)
        self._ids_cache: Dict[str, List[int]] = {}

    def token_embeddings(self) -> nn.Embedding:
        return self.body.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.token_embeddings().weight.device

    # ---- prompt pieces --------------------------------------------------------------------------------------
    def _ids(self, text: str) -> List[int]:
        if text not in self._ids_cache:
            if len(self._ids_cache) > 100_000:
                self._ids_cache.clear()
            self._ids_cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._ids_cache[text]

    def prompt_pieces(self, user_text: str, item_text: str) -> Tuple[Tuple[str, str], Tuple[str, str]]:
        """((text before soft_u, text after soft_u), (text before soft_i, text after soft_i incl. tail))."""
        prefix, tail = self._formatter.render_split(self.template, {"user_embedding": _SOFT_U,
                                                                    "user_profile": user_text})
        before_u, after_u = prefix.split(_SOFT_U, 1)
        block = self.template.render_item_block({"item_embedding": _SOFT_I, "item_text": item_text})
        before_i, after_i = (block + tail).split(_SOFT_I, 1)
        return (before_u, after_u), (before_i, after_i)

    def _embed_ids(self, ids: List[int]) -> torch.Tensor:
        return self.token_embeddings()(torch.tensor(ids, dtype=torch.long, device=self.device))

    def _soft(self, proj: nn.Module, cf: torch.Tensor) -> torch.Tensor:
        dtype = self.token_embeddings().weight.dtype
        out = proj(cf.to(self.device, torch.float32)).view(-1, self.soft_tokens, self.hidden)
        scale = self.soft_scale[0 if proj is self.user_proj else 1]
        return (F.normalize(out, dim=-1) * scale).to(dtype)

    def prefix_embeds(self, user_text: str, soft_u: torch.Tensor) -> torch.Tensor:
        (before_u, after_u), _ = self.prompt_pieces(user_text, "")
        return torch.cat([self._embed_ids(self._ids(before_u)), soft_u, self._embed_ids(self._ids(after_u))])

    def suffix_embeds(self, item_text: str, soft_i: torch.Tensor) -> torch.Tensor:
        _, (before_i, after_i) = self.prompt_pieces("", item_text)
        return torch.cat([self._embed_ids(self._ids(before_i)), soft_i,
                          self._embed_ids(self._ids(after_i) + [self.eos_id])])

    # ---- forward paths --------------------------------------------------------------------------------------
    def encode_full(self, user_texts: Sequence[str], item_texts: Sequence[str], user_cf: torch.Tensor,
                    item_cf: torch.Tensor) -> torch.Tensor:
        """Training path: every full sequence (prefix + suffix), right-padded -> ``[B, H]`` at [EOS]."""
        soft_u, soft_i = self._soft(self.user_proj, user_cf), self._soft(self.item_proj, item_cf)
        rows = [torch.cat([self.prefix_embeds(u, soft_u[k]), self.suffix_embeds(i, soft_i[k])])
                for k, (u, i) in enumerate(zip(user_texts, item_texts))]
        lengths = torch.tensor([r.shape[0] for r in rows], device=self.device)
        width = int(lengths.max())
        embeds = torch.stack([F.pad(r, (0, 0, 0, width - r.shape[0])) for r in rows])
        mask = (torch.arange(width, device=self.device)[None] < lengths[:, None]).long()
        hidden = self.body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return hidden[torch.arange(len(rows), device=self.device), lengths - 1].float()

    def encode_user_pairs(self, user_text: str, user_cf: torch.Tensor, item_texts: Sequence[str],
                          item_cf: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Inference path for one user's pairs -> ``[len(item_texts), H]``.

        The prefix runs once; up to ``batch_size`` suffixes are then packed into *one* sequence behind it, with a
        block mask (each suffix sees the prefix and its own earlier tokens) and positions restarting at the prefix
        length for every suffix. That is exactly the attention pattern of separate prompts, without copying the
        prefix KV cache per suffix (copying it cost more than the suffix forward on CPU). The cache is cropped
        back to the prefix between packs.
        """
        prefix = self.prefix_embeds(user_text, self._soft(self.user_proj, user_cf.view(1, -1))[0])
        cache = self.body(inputs_embeds=prefix[None], use_cache=True).past_key_values
        plen = prefix.shape[0]
        soft_i = self._soft(self.item_proj, item_cf)
        outputs = []
        for start in range(0, len(item_texts), batch_size):
            rows = [self.suffix_embeds(t, soft_i[start + k]) for k, t in enumerate(item_texts[start:start + batch_size])]
            lengths = torch.tensor([r.shape[0] for r in rows], device=self.device)
            segment = torch.repeat_interleave(torch.arange(len(rows), device=self.device), lengths)
            offset = torch.arange(int(lengths.sum()), device=self.device) - (torch.cumsum(lengths, 0) - lengths)[segment]
            own = (segment[:, None] == segment[None, :]) & (offset[None, :] <= offset[:, None])
            visible = torch.cat([torch.ones(own.shape[0], plen, dtype=torch.bool, device=self.device), own], dim=1)
            dtype = prefix.dtype
            mask = torch.zeros(visible.shape, dtype=dtype, device=self.device).masked_fill_(
                ~visible, torch.finfo(dtype).min)
            hidden = self.body(inputs_embeds=torch.cat(rows)[None], attention_mask=mask[None, None],
                               past_key_values=cache, position_ids=(plen + offset)[None],
                               use_cache=True).last_hidden_state[0]
            cache.crop(plen)
            outputs.append(hidden[torch.cumsum(lengths, 0) - 1].float())
        return torch.cat(outputs)

    def targets(self, cf: torch.Tensor) -> torch.Tensor:
        return self.target_proj(cf.to(self.device, torch.float32))

    # ---- persistence (safetensors + JSON, no pickle) --------------------------------------------------------
    def trainable_state(self) -> Dict[str, torch.Tensor]:
        state = {f"user_proj.{k}": v for k, v in self.user_proj.state_dict().items()}
        state.update({f"item_proj.{k}": v for k, v in self.item_proj.state_dict().items()})
        state.update({f"target_proj.{k}": v for k, v in self.target_proj.state_dict().items()})
        state["soft_scale"] = self.soft_scale
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def save(self, folder: str, settings: Dict) -> str:
        """Atomically write ``folder`` (LoRA adapter + projectors + settings). Returns the adapter hash."""
        from safetensors.torch import save_file

        tmp = f"{folder}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        if self.lora_settings is not None:
            self.body.save_pretrained(tmp, safe_serialization=True)
        save_file(self.trainable_state(), os.path.join(tmp, _PROJECTORS))
        settings = dict(settings, cf_dim=self.cf_dim, soft_tokens=self.soft_tokens, hidden=self.hidden,
                        template=self.template.version, lora=self.lora_settings)
        with open(os.path.join(tmp, _SETTINGS), "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=2, sort_keys=True)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder_hash(folder)

    @classmethod
    def load(cls, lm, tokenizer, folder: str, merge: bool = True) -> "HybridPromptEncoder":
        """Rebuild from a saved folder; ``merge`` folds LoRA into the weights (faster inference)."""
        from safetensors.torch import load_file

        settings = read_settings(folder)
        encoder = cls(lm, tokenizer, settings["cf_dim"], settings["soft_tokens"], lora=None,
                      template=settings["template"].split("@")[0])
        if settings["template"] != encoder.template.version:
            raise ValueError(f"{folder}: trained with template {settings['template']}, installed is "
                             f"{encoder.template.version}")
        if settings.get("lora") is not None:
            from peft import PeftModel

            encoder.body = PeftModel.from_pretrained(encoder.body, folder)
            if merge:
                encoder.body = encoder.body.merge_and_unload()
            encoder.lora_settings = settings["lora"]
        state = load_file(os.path.join(folder, _PROJECTORS))
        with torch.no_grad():
            encoder.soft_scale.copy_(state["soft_scale"])
        for name in ("user_proj", "item_proj", "target_proj"):
            getattr(encoder, name).load_state_dict({k[len(name) + 1:]: v for k, v in state.items()
                                                    if k.startswith(name + ".")})
        return encoder.eval()


def read_settings(folder: str) -> Dict:
    path = os.path.join(folder, _SETTINGS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: fine-tuned adapter settings missing (hnlm_adapter_path)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def folder_hash(folder: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if os.path.isfile(full):
            digest.update(name.encode())
            with open(full, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()
