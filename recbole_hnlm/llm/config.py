"""Settings of the LLM stage, read from a RecBole ``Config`` (or any dict-like) by their ``hnlm_*`` keys.

The defaults here equal the documented defaults of ``properties/sampler/HNLMRec.yaml``; a key absent from the
config (or set to ``None``) takes the default. Unknown values raise errors naming the key.
"""
import os
from dataclasses import dataclass, field, fields
from typing import Optional

from recbole_hnlm.config_checks import is_integer, is_number
from recbole_hnlm.errors import ConfigError

__all__ = ["LLMConfig"]


#: True/False settings (a command-line ``no``, or a ``maybe`` anywhere, stays a string, which Python takes as True)
_BOOLEANS = ("load_in_4bit", "prefix_cache", "item_profiles")
#: (integer settings, smallest allowed value or None, how the error says it)
_INTEGER_RULES = (
    (("chunk_size", "negatives_per_pair", "gen_batch_size", "max_new_tokens", "profile_max_new_tokens",
      "ft_batch_size", "embed_batch_size", "embed_tokens", "ft_history", "ft_soft_tokens", "ft_pairs_per_user",
      "teacher_epochs", "ft_epochs", "ft_lora_r"), 1, "a positive integer"),
    (("max_pairs", "threads", "retries", "max_history", "max_reviews", "profile_words", "ft_max_train_pairs",
      "ft_explicit_negatives"), 0, "an integer >= 0"),
    (("seed",), None, "an integer"),
)


@dataclass
class LLMConfig:
    variant: str = field(default="finetuned", metadata={
        "help": "finetuned (HNLMRec, §4.2-4.3) | semantic (LLM-written negatives, §3.1)"})
    store_path: Optional[str] = field(default=None, metadata={
        "help": "side-car file; default <dir>/<ds>.hnlm-<variant>.safetensors"})
    generator: str = field(default="smollm2", metadata={"help": "causal LM: smollm2 | local folder | .gguf file"})
    encoder: str = field(default="minilm", metadata={"help": "text encoder (eq. 5): minilm | local folder"})
    dtype: str = field(default="float32", metadata={"help": "LLM compute dtype: float32 | bfloat16 | float16"})
    load_in_4bit: bool = field(default=False, metadata={"help": "bitsandbytes NF4 loading (CUDA only)"})
    store_dtype: str = field(default="float16", metadata={"help": "stored embedding dtype: float16 | float32"})
    seed: int = field(default=2020, metadata={"help": "seed for pair subsets, sampled retries, teacher draws"})
    max_pairs: int = field(default=0, metadata={
        "help": "0 = every training pair; N = seeded uniform subset of N pairs (the others have no negative)"})
    threads: int = field(default=0, metadata={
        "help": "torch CPU threads for the LLM stage (teacher included); 0 = torch default (use 1 on a CPU shared "
                "with other jobs)"})
    chunk_size: int = field(default=256, metadata={"help": "pairs per resumable chunk"})
    # semantic variant: generation
    negatives_per_pair: int = field(default=1, metadata={"help": "hard negatives per pair, averaged (eq. 5)"})
    gen_batch_size: int = field(default=16, metadata={"help": "prompts per generate call"})
    max_new_tokens: int = field(default=48, metadata={"help": "answer budget of a hard-negative answer"})
    profile_max_new_tokens: int = field(default=96, metadata={"help": "answer budget of a profile answer"})
    retries: int = field(default=2, metadata={"help": "sampled retries of a malformed answer, then a failure"})
    prefix_cache: bool = field(default=True, metadata={
        "help": "semantic generation: reuse the per-user prefix KV cache (same answers; ~15% faster on CPU)"})
    item_profiles: bool = field(default=True, metadata={
        "help": "generate item profiles (eq. 2); False describes items by raw title/attributes"})
    max_history: int = field(default=15, metadata={"help": "training interactions per user-profile prompt"})
    max_reviews: int = field(default=5, metadata={"help": "review texts per item-profile prompt"})
    profile_words: int = field(default=30, metadata={"help": "item-profile words inside user/negative prompts"})
    # finetuned variant
    teacher_path: Optional[str] = field(default=None, metadata={
        "help": "teacher file from export_teacher (default <dir>/<ds>.hnlm-teacher.safetensors)"})
    teacher_model: str = field(default="LightGCN", metadata={
        "help": "backbone of the MixGCF teacher trained when the teacher file is missing (variant finetuned)"})
    teacher_epochs: int = field(default=30, metadata={
        "help": "training epochs of that teacher (fixed; it never sees validation data)"})
    adapter_path: Optional[str] = field(default=None, metadata={
        "help": "fine-tuned adapter folder (default <dir>/<ds>.hnlm-adapter/)"})
    ft_epochs: int = field(default=1, metadata={"help": "fine-tuning epochs"})
    ft_max_train_pairs: int = field(default=512, metadata={"help": "0 = all teacher pairs; N = seeded subset"})
    ft_batch_size: int = field(default=16, metadata={"help": "pairs per fine-tuning step (in-batch negatives)"})
    ft_pairs_per_user: int = field(default=4, metadata={
        "help": "pairs of one user sharing a prompt prefix in a fine-tuning batch (1 = independent pairs)"})
    ft_lr: float = field(default=2e-4, metadata={"help": "AdamW learning rate (LoRA + MLPs)"})
    ft_tau: float = field(default=0.05, metadata={"help": "InfoNCE temperature of fine-tuning"})
    ft_explicit_negatives: int = field(default=1, metadata={"help": "random-item negatives per query (InfoNCE)"})
    ft_lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    ft_lora_alpha: float = field(default=32, metadata={"help": "LoRA alpha (a number > 0)"})
    ft_lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    ft_soft_tokens: int = field(default=1, metadata={"help": "soft tokens per CF embedding slot"})
    ft_item_text: str = field(default="none", metadata={
        "help": "item text after the item soft token: none (2 tokens per pair, the CPU default) | title | profile"})
    ft_history: int = field(default=8, metadata={
        "help": "recent training titles in the hybrid prompt's user text (ft_user_text history)"})
    ft_user_text: str = field(default="history", metadata={
        "help": "user text in the hybrid prompt: history (recent training titles; CPU default) | profile (eq. 3, "
                "generated first: hours on CPU, the paper's choice on a GPU)"})
    embed_batch_size: int = field(default=256, metadata={
        "help": "suffixes packed behind one user prefix per forward row (fine-tuned embed)"})
    embed_tokens: int = field(default=512, metadata={
        "help": "padded tokens per embed forward: small users' rows share a forward up to this (CPU optimum)"})

    @property
    def compute(self) -> str:
        """The LLM's numerics, part of every artifact's identity: ``float32``, ``bfloat16``, ``nf4+bfloat16``, ..."""
        return f"nf4+{self.dtype}" if self.load_in_4bit else self.dtype

    @classmethod
    def from_config(cls, config=None, **overrides) -> "LLMConfig":
        """Read ``hnlm_<name>`` keys of a RecBole Config / dict; keyword overrides win."""
        values = {}
        for spec in fields(cls):
            key = f"hnlm_{spec.name}"
            if config is not None and key in config and config[key] is not None:
                values[spec.name] = config[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        out = cls(**values)
        out.validate()
        return out

    def __post_init__(self):  # a pathlib.Path (LLMConfig(store_path=Path(...)), from_config's too): the path it names
        for spec in fields(self):
            if isinstance(getattr(self, spec.name), os.PathLike):
                setattr(self, spec.name, os.fspath(getattr(self, spec.name)))

    def validate(self) -> None:
        choices = {"variant": ("semantic", "finetuned"), "store_dtype": ("float16", "float32"),
                   "dtype": ("float32", "bfloat16", "float16"), "ft_item_text": ("title", "profile", "none"),
                   "ft_user_text": ("profile", "history")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"hnlm_{name}={getattr(self, name)!r}: expected one of {allowed}")
        for names, minimum, kind in _INTEGER_RULES:
            for name in names:
                value = getattr(self, name)
                if not is_integer(value) or (minimum is not None and value < minimum):
                    raise ConfigError(f"hnlm_{name} must be {kind}, got {value!r}")
        for name in ("generator", "encoder", "teacher_model"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value):
                raise ConfigError(f"hnlm_{name} must be a name or path, got {value!r}")
        for name in ("store_path", "teacher_path", "adapter_path"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(f"hnlm_{name} must be ~ (the default path) or a path, got {value!r}")
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"hnlm_{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("ft_tau", "ft_lr", "ft_lora_alpha"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise ConfigError(f"hnlm_{name} must be a positive number, got {value!r}")
        dropout = self.ft_lora_dropout
        if not is_number(dropout) or not 0 <= dropout < 1:
            raise ConfigError(f"hnlm_ft_lora_dropout must be a number in [0, 1), got {dropout!r}")
        if self.variant == "finetuned" and self.ft_item_text == "profile" and not self.item_profiles:
            # the hybrid prompt would show whatever item profiles an earlier run left in the profiles file
            raise ConfigError("hnlm_ft_item_text=profile needs generated item profiles, but hnlm_item_profiles is "
                              "False: set hnlm_item_profiles: True, or hnlm_ft_item_text: title (raw title and "
                              "attributes)")

    @staticmethod
    def help_table() -> str:
        """One ``hnlm_<key>: <default>   # help`` line per setting, the default written as YAML (``~``, not
        ``None``, which a config file reads as the string 'None')."""
        def shown(value):
            return "~" if value is None else str(value)

        return "\n".join(f"hnlm_{f.name}: {shown(f.default)}   # {f.metadata.get('help', '')}"
                         for f in fields(LLMConfig))
