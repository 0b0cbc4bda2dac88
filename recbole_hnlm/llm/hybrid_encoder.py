r"""HNLMRec hybrid-prompt encoder (paper §4.2-4.3, algorithms.md §5.3 and §10.12).

Query prompt (template ``hybrid_query.v3``, ``format: raw`` like the authors' inference prompt)::

    [BOS] Instruct: ... Query: USER: <soft_u> user text ITEM: | <soft_i>[ item text] [EOS]
    \_______________ per-user prefix (shared) _____________/   \___ per-pair suffix ___/

``[BOS]`` is whatever the tokenizer puts before a text by default (``start: tokenizer``; Llama-3's
``<|begin_of_text|>``, nothing for SmolLM2).

``<soft_u> = MLP_u(e_u)`` and ``<soft_i> = MLP_i(e_i)`` map the pre-trained CF embeddings into the LLM's token
embedding space (``ft_soft_tokens`` vectors each; fed through ``inputs_embeds``, never written as numbers). The
query embedding is the last-layer hidden state at the appended [EOS]. Training and inference run the same forward:
one row per user group, ``prefix | suffix_1 | ... | suffix_k``, under a block mask (each suffix sees the prefix
and itself, positions restart at the prefix length), so the prefix's keys and values are computed once and shared
by the group's pairs, with the numbers of separate full prompts (checked by the tests). LoRA (peft) adapts the
attention projections; the positive target is the MixGCF hard negative mapped by a trainable ``MLP_t`` into the
same space (InfoNCE, eq. 12 reconstructed).
"""
import hashlib
import json
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recbole_hnlm.errors import DataError
from recbole_hnlm.files import atomic_folder

from .models import end_of_sequence_id, sequence_start_ids
from .prefix_attention import prefix_segment_forward
from .prompts import ChatFormatter, PromptTemplate

__all__ = ["HybridPromptEncoder", "PromptGroup", "info_nce", "HYBRID_TEMPLATE"]

HYBRID_TEMPLATE = "hybrid_query.v3"
_SOFT_U, _SOFT_I = "\u2063SOFT_USER\u2063", "\u2063SOFT_ITEM\u2063"
_PROJECTORS = "projectors.safetensors"
SETTINGS_FILE = "hybrid.json"
_PAD = -2  # segment of padding tokens (-1 = prefix, k >= 0 = suffix k)


class PromptGroup(NamedTuple):
    """One user's prompt group: the shared prefix and the suffixes of some of its pairs."""
    user_text: str
    user_cf: torch.Tensor  # [d]
    item_texts: Sequence[str]
    item_cf: torch.Tensor  # [k, d]


class _Row(NamedTuple):
    prefix: torch.Tensor  # [P, H]
    suffixes: List[torch.Tensor]  # [L_k, H] each

    @property
    def width(self) -> int:
        return self.prefix.shape[0] + sum(s.shape[0] for s in self.suffixes)


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    """The projectors (soft tokens, target): two linear layers, GELU between (eq. 6's unnamed σ), hidden width the
    larger of ``d_in`` and ``d_out``."""
    hidden = max(d_out, d_in)
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
        self.start_ids = sequence_start_ids(tokenizer) if self.template.opens_with_start_tokens else []
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
        for part in (self.user_proj, self.item_proj, self.target_proj):  # float32, beside the LLM (e.g. on CUDA)
            part.to(self.device)
        self.soft_scale.data = self.soft_scale.data.to(self.device)
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
        return torch.cat([self._embed_ids(self.start_ids + self._ids(before_u)), soft_u,
                          self._embed_ids(self._ids(after_u))])

    def suffix_embeds(self, item_text: str, soft_i: torch.Tensor) -> torch.Tensor:
        _, (before_i, after_i) = self.prompt_pieces("", item_text)
        return torch.cat([self._embed_ids(self._ids(before_i)), soft_i,
                          self._embed_ids(self._ids(after_i) + [self.eos_id])])

    # ---- forward paths --------------------------------------------------------------------------------------
    def _row(self, group: PromptGroup, soft_u: torch.Tensor, soft_i: torch.Tensor) -> _Row:
        return _Row(self.prefix_embeds(group.user_text, soft_u),
                    [self.suffix_embeds(t, soft_i[k]) for k, t in enumerate(group.item_texts)])

    def _forward_rows(self, rows: Sequence[_Row]) -> torch.Tensor:
        """One forward over ``rows`` -> the [EOS] states of every suffix, row by row ``[sum k, H]``."""
        if not rows:  # no suffix at all: no forward
            return torch.zeros(0, self.hidden, device=self.device)
        lengths = {s.shape[0] for r in rows for s in r.suffixes}
        if len(lengths) == 1:
            return self._forward_segments(rows, lengths.pop())
        return self._forward_masked(rows)

    def _forward_segments(self, rows: Sequence[_Row], seg: int) -> torch.Tensor:
        """Fast path, suffixes of equal length: ``prefix zone | segments`` rows (:mod:`.prefix_attention`)."""
        dev = self.device
        zone = max(r.prefix.shape[0] for r in rows)
        n = max(len(r.suffixes) for r in rows)
        prefix_len = torch.tensor([r.prefix.shape[0] for r in rows], device=dev)
        embeds = torch.stack([torch.cat([F.pad(r.prefix, (0, 0, 0, zone - r.prefix.shape[0]))] + r.suffixes +
                                        [r.prefix.new_zeros((n - len(r.suffixes)) * seg, r.prefix.shape[1])])
                              for r in rows])
        in_segment = torch.arange(n * seg, device=dev) % seg
        position = torch.cat([torch.arange(zone, device=dev).expand(len(rows), -1),
                              prefix_len[:, None] + in_segment[None]], dim=1)
        valid = torch.arange(zone, device=dev)[None] < prefix_len[:, None]
        with prefix_segment_forward(self.body.config):
            hidden = self.body(inputs_embeds=embeds, position_ids=position, use_cache=False,
                               hnlm_layout=(zone, seg, valid)).last_hidden_state
        row_of = torch.tensor([k for k, r in enumerate(rows) for _ in r.suffixes], device=dev)
        ends = torch.tensor([zone + j * seg + seg - 1 for r in rows for j in range(len(r.suffixes))], device=dev)
        return hidden[row_of, ends].float()

    def _forward_masked(self, rows: Sequence[_Row]) -> torch.Tensor:
        """Reference path, any suffix lengths: rows ``prefix | suffix_1 | ...`` right-padded, dense block mask."""
        dev = self.device
        width = max(r.width for r in rows)
        embeds = torch.stack([F.pad(torch.cat([r.prefix] + r.suffixes), (0, 0, 0, width - r.width)) for r in rows])
        segment = torch.full((len(rows), width), _PAD, device=dev)
        position = torch.zeros((len(rows), width), dtype=torch.long, device=dev)
        ends = []
        for k, r in enumerate(rows):
            plen = r.prefix.shape[0]
            segment[k, :plen], position[k, :plen] = -1, torch.arange(plen, device=dev)
            start = plen
            for j, s in enumerate(r.suffixes):
                segment[k, start:start + s.shape[0]] = j
                position[k, start:start + s.shape[0]] = plen + torch.arange(s.shape[0], device=dev)
                start += s.shape[0]
                ends.append((k, start - 1))
        index = torch.arange(width, device=dev)
        # query t sees key s <= t of the prefix or of its own suffix (pads see the prefix and pads: never empty)
        visible = (index[None, None, :] <= index[None, :, None]) & (
            (segment[:, None, :] == -1) | (segment[:, None, :] == segment[:, :, None]))
        dtype = embeds.dtype
        mask = torch.zeros(visible.shape, dtype=dtype, device=dev).masked_fill_(~visible, torch.finfo(dtype).min)
        hidden = self.body(inputs_embeds=embeds, attention_mask=mask[:, None], position_ids=position,
                           use_cache=False).last_hidden_state
        row_of, at = zip(*ends)
        return hidden[torch.tensor(row_of, device=dev), torch.tensor(at, device=dev)].float()

    def _rows(self, groups: Sequence[PromptGroup]) -> List[_Row]:
        groups = [g for g in groups if len(g.item_texts)]  # a user without items has no suffix, hence no output row
        if not groups:
            return []
        soft_u = self._soft(self.user_proj, torch.stack([g.user_cf.reshape(-1) for g in groups]))
        soft_i = self._soft(self.item_proj, torch.cat([g.item_cf.reshape(len(g.item_texts), -1) for g in groups]))
        starts = [0] + torch.tensor([len(g.item_texts) for g in groups]).cumsum(0).tolist()
        return [self._row(g, soft_u[k], soft_i[starts[k]:starts[k + 1]]) for k, g in enumerate(groups)]

    def encode_groups(self, groups: Sequence[PromptGroup]) -> torch.Tensor:
        """One forward (training and inference): row ``k`` = user k's prefix + its packed suffixes -> ``[sum k, H]``.

        Each suffix sees the prefix and its own earlier tokens, with positions restarting at the prefix length:
        exactly the attention of separate ``prefix + suffix`` prompts, while the prefix runs once per row.
        """
        return self._forward_rows(self._rows(groups))

    def encode_full(self, user_texts: Sequence[str], item_texts: Sequence[str], user_cf: torch.Tensor,
                    item_cf: torch.Tensor) -> torch.Tensor:
        """Every pair as its own full prompt (groups of one) -> ``[B, H]``."""
        return self.encode_groups([PromptGroup(u, user_cf[k], [i], item_cf[k:k + 1])
                                   for k, (u, i) in enumerate(zip(user_texts, item_texts))])

    def embed(self, groups: Sequence[PromptGroup], pairs_per_row: int = 256, tokens_per_forward: int = 2048,
              ) -> torch.Tensor:
        """Inference over many groups: each split into rows of <= ``pairs_per_row`` suffixes, rows batched into
        forwards of <= ``tokens_per_forward`` padded tokens (one row at least). ``[sum of pairs, H]`` in order."""
        pieces = [PromptGroup(g.user_text, g.user_cf, g.item_texts[s:s + pairs_per_row],
                              g.item_cf[s:s + pairs_per_row])
                  for g in groups for s in range(0, len(g.item_texts), pairs_per_row)]
        # padded width of a forward: the segment path pads every row to the longest prefix + the most suffix
        # tokens (which bounds the dense path's longest row too)
        rows, outputs, batch, zone, tail = self._rows(pieces), [], [], 0, 0
        for row in rows:
            prefix = row.prefix.shape[0]
            if batch and (max(zone, prefix) + max(tail, row.width - prefix)) * (len(batch) + 1) > tokens_per_forward:
                outputs.append(self._forward_rows(batch))
                batch, zone, tail = [], 0, 0
            batch.append(row)
            zone, tail = max(zone, prefix), max(tail, row.width - prefix)
        if batch:
            outputs.append(self._forward_rows(batch))
        return torch.cat(outputs) if outputs else self._forward_rows([])

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

        with atomic_folder(folder) as tmp:
            if self.lora_settings is not None:
                # LoRA never targets the embeddings: PEFT's "auto" looked for the base model's config.json to tell
                # (a GGUF file has none) and warned "Could not find a config file" at every save
                self.body.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
                _sort_target_modules(os.path.join(tmp, "adapter_config.json"))
            save_file(self.trainable_state(), os.path.join(tmp, _PROJECTORS))
            settings = dict(settings, cf_dim=self.cf_dim, soft_tokens=self.soft_tokens, hidden=self.hidden,
                            template=self.template.version, lora=self.lora_settings)
            with open(os.path.join(tmp, SETTINGS_FILE), "w", encoding="utf-8") as handle:
                json.dump(settings, handle, indent=2, sort_keys=True)
        return folder_hash(folder)

    @classmethod
    def load(cls, lm, tokenizer, folder: str, merge: bool = True) -> "HybridPromptEncoder":
        """Rebuild from a saved folder; ``merge`` folds LoRA into the weights (faster inference)."""
        from safetensors import SafetensorError

        settings = read_settings(folder)
        try:
            return cls._from_folder(lm, tokenizer, folder, settings, merge)
        except (SafetensorError, OSError, KeyError) as error:  # truncated or missing files, settings without a key
            raise _damaged(folder, f"{type(error).__name__}: {error}") from error

    @classmethod
    def _from_folder(cls, lm, tokenizer, folder: str, settings: Dict, merge: bool) -> "HybridPromptEncoder":
        from safetensors.torch import load_file

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


def _sort_target_modules(path: str) -> None:
    """peft writes LoRA's ``target_modules`` from a set, in the order of the process's string hashing: sorted, equal
    adapters trained in two processes have equal files, and so the same adapter hash (the store's cache key)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)


def _damaged(folder: str, error) -> DataError:
    """A fine-tuned adapter folder whose files cannot be read (a killed copy, hand edits)."""
    return DataError(f"{folder}: not a readable fine-tuned adapter ({error}). Delete the folder to fine-tune again, "
                     "or point hnlm_adapter_path at a complete one.")


def read_settings(folder: str) -> Dict:
    path = os.path.join(folder, SETTINGS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: fine-tuned adapter settings missing (hnlm_adapter_path)")
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(folder, f"{SETTINGS_FILE}: {error}") from error
    if not isinstance(settings, dict):
        raise _damaged(folder, f"{SETTINGS_FILE} is not a JSON object")
    return settings


def folder_hash(folder: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if os.path.isfile(full):
            digest.update(name.encode())
            with open(full, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()
