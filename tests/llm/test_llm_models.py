"""Model loading: clear errors for missing paths and for 4-bit on the CPU; offline by default."""
import io
import os

import pytest
import torch

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.models import ModelNotFound, TextEncoder, load_causal_lm, resolve_encoder, resolve_generator


def test_missing_model_path_names_the_option(tmp_path):
    with pytest.raises(ModelNotFound, match="hnlm_generator"):
        resolve_generator(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match="hnlm_encoder"):
        resolve_encoder(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match="GGUF"):
        resolve_generator(str(tmp_path / "x.gguf"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_path_that_holds_no_model_names_the_option(tmp_path, tiny_llama_dir):
    """An empty folder and a file that is not GGUF were raw transformers tracebacks (``'NoneType' object has no
    attribute 'endswith'``, ``GGUF magic invalid``) after the data had loaded."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="hnlm_generator: .*empty is not a model folder: it has no config.json"):
        resolve_generator(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFound, match="hnlm_encoder: .*empty is not a model folder"):
        resolve_encoder(str(tmp_path / "empty"))
    (tmp_path / "fake.gguf").write_bytes(b"not a model")
    with pytest.raises(ModelNotFound, match="hnlm_generator: .*fake.gguf is not a GGUF file"):
        resolve_generator(str(tmp_path / "fake.gguf"))
    assert resolve_generator(tiny_llama_dir).gguf_file is None  # a real folder still resolves
    assert resolve_generator("smollm2").gguf_file  # and the packaged GGUF file passes the magic check


def test_local_models_are_named_by_their_files_not_only_their_folder(tmp_path, tiny_llama_dir):
    """Two checkpoints in folders of one name (``model``, ``checkpoint-500``) must not share cached artifacts; a
    copy of a model elsewhere keeps its name (artifacts move with it)."""
    import shutil

    first, second, copy = tmp_path / "a" / "model", tmp_path / "b" / "model", tmp_path / "c" / "model"
    shutil.copytree(tiny_llama_dir, first)
    shutil.copytree(tiny_llama_dir, copy)
    shutil.copytree(tiny_llama_dir, second)
    weights = next(p for p in os.listdir(second) if p.endswith(".safetensors"))
    data = bytearray((second / weights).read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    (second / weights).write_bytes(bytes(data))
    names = [resolve_generator(str(folder)).name for folder in (first, second, copy)]
    assert names[0].startswith("model@") and names[0] != names[1] and names[0] == names[2]
    assert resolve_encoder(str(first)).name == names[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_4bit_on_cpu_is_a_clear_error(tiny_llama_dir):
    with pytest.raises(ConfigError, match="4-bit.*CUDA"):  # one clear CLI line, not a traceback
        load_causal_lm(tiny_llama_dir, load_in_4bit=True)


def test_mean_pooled_encoder_and_config_validation(tiny_encoder_dir):
    enc = TextEncoder(tiny_encoder_dir, batch_size=2)
    out = enc.encode(["Heat", "Fargo Casino", "Heat"])
    assert out.shape == (3, 24) and torch.allclose(out[0], out[2], atol=1e-5)
    assert (out[0] - out[1]).abs().max() > 1e-3
    # the mean of the last hidden states over each text's own tokens, computed one text at a time (no padding): a
    # first-token pooling, or padding counted in the mean of the shorter text of a batch, passed the checks above
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir, local_files_only=True)
    bert = AutoModel.from_pretrained(tiny_encoder_dir, local_files_only=True).eval()
    for row, text in enumerate(["Heat", "Fargo Casino"]):
        with torch.no_grad():
            hidden = bert(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]
        assert hidden.shape[0] >= row + 1  # "Fargo Casino": several tokens, so a first-token pooling differs
        torch.testing.assert_close(out[row], hidden.mean(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="hnlm_variant"):
        LLMConfig.from_config({"hnlm_variant": "magic"})
    assert LLMConfig.from_config({"hnlm_max_pairs": None}).max_pairs == 0
    # values that used to reach the stages and fail there with a TypeError
    for key, value, expected in (("hnlm_retries", -1, "an integer >= 0"), ("hnlm_max_pairs", "abc", "an integer >= 0"),
                                 ("hnlm_profile_max_new_tokens", 0, "a positive integer"),
                                 ("hnlm_max_history", 1.5, "an integer >= 0"), ("hnlm_seed", "x", "an integer")):
        with pytest.raises(ConfigError, match=f"{key} must be {expected}, got {value!r}"):
            LLMConfig.from_config({key: value})


@pytest.mark.parametrize("key,value,expected", [
    ("hnlm_ft_lr", -1, "a positive number"), ("hnlm_ft_lr", 0, "a positive number"),
    ("hnlm_ft_lr", "fast", "a positive number"), ("hnlm_ft_tau", 0, "a positive number"),
    ("hnlm_ft_lora_r", -3, "a positive integer"), ("hnlm_ft_lora_alpha", 0, "a positive number"),
    ("hnlm_ft_lora_dropout", 1.5, r"a number in \[0, 1\)"), ("hnlm_ft_lora_dropout", -0.1, r"a number in \[0, 1\)"),
    ("hnlm_item_profiles", "maybe", "True or False"), ("hnlm_load_in_4bit", "no", "True or False"),
    ("hnlm_prefix_cache", 1, "True or False"),
])
def test_fine_tuning_and_switch_settings_are_checked(key, value, expected):
    """These reached torch's AdamW, peft's LoRA or torch's dropout after the teacher had trained (raw tracebacks),
    or, for the switches, any string was taken as True."""
    with pytest.raises(ConfigError, match=f"{key} must be {expected}, got {value!r}"):
        LLMConfig.from_config({key: value})


@pytest.mark.parametrize("key,value", [
    ("hnlm_generator", 5), ("hnlm_encoder", ""), ("hnlm_teacher_model", ""), ("hnlm_teacher_model", 5),
    ("hnlm_teacher_path", ""), ("hnlm_teacher_path", 3), ("hnlm_adapter_path", ""), ("hnlm_adapter_path", 3),
    ("hnlm_store_path", ""), ("hnlm_store_path", ["a"]),
])
def test_names_and_paths_of_another_type_are_refused(key, value):
    """A number as the generator was an AttributeError once the data had loaded; the LLM stage's own reader checks
    them (the CLI stages run without the sampler's checks)."""
    with pytest.raises(ConfigError, match=f"{key} must be"):
        LLMConfig.from_config({key: value})


def test_pathlib_paths_are_taken_as_the_paths_they_name(fast_config, tmp_path):
    """Python callers pass ``pathlib.Path`` objects: the path and name checks refused them ("got PosixPath(...)"),
    through ``LLMConfig`` and through a run's ``Config`` alike (``hnlm_file``, RecBole's own path options too)."""
    from pathlib import Path

    from recbole_hnlm.config import Config

    settings = LLMConfig.from_config({"hnlm_store_path": tmp_path / "s.safetensors", "hnlm_generator": Path("gen")})
    assert settings.store_path == str(tmp_path / "s.safetensors") and settings.generator == "gen"
    config = Config(model="MF", command_line=False, config_dict={
        **fast_config, "sampler": "HNLMRec", "hnlm_file": tmp_path / "s.safetensors",
        "hnlm_teacher_path": tmp_path / "t.safetensors", "checkpoint_dir": tmp_path / "ckpt"})
    assert config["hnlm_file"] == str(tmp_path / "s.safetensors")
    assert config["checkpoint_dir"] == str(tmp_path / "ckpt")
    assert LLMConfig.from_config(config).teacher_path == str(tmp_path / "t.safetensors")


def test_pathlib_keyword_overrides_and_direct_settings_are_taken_as_paths(tmp_path):
    """``LLMConfig.from_config(config, store_path=Path(...))`` and ``LLMConfig(store_path=Path(...))``: the keyword
    overrides and the dataclass built directly take the paths too (the latter was refused by ``validate``)."""
    settings = LLMConfig.from_config({"hnlm_store_path": "other.safetensors"}, store_path=tmp_path / "s.safetensors",
                                     teacher_path=tmp_path / "t.safetensors")
    assert settings.store_path == str(tmp_path / "s.safetensors")
    assert settings.teacher_path == str(tmp_path / "t.safetensors")
    direct = LLMConfig(store_path=tmp_path / "s.safetensors")
    direct.validate()
    assert direct.store_path == str(tmp_path / "s.safetensors")


def test_bad_llm_settings_stop_a_run_before_the_dataset_loads(fast_config):
    from recbole_hnlm.config import Config

    with pytest.raises(ConfigError, match="hnlm_ft_lr must be a positive number"):
        Config(model="MF", config_dict={**fast_config, "sampler": "HNLMRec", "hnlm_ft_lr": -1})
    assert LLMConfig.from_config({"hnlm_ft_lora_dropout": 0, "hnlm_ft_lr": 1}).ft_lr == 1
    assert LLMConfig.from_config({"hnlm_ft_lora_alpha": 16.0}).ft_lora_alpha == 16.0  # peft takes a float


def test_llm_config_defaults_equal_the_sampler_yaml():
    """Every hnlm_* key of LLMConfig is in properties/sampler/HNLMRec.yaml with the same default (one source of
    truth for users reading the yaml, and for code that builds LLMConfig without RecBole)."""
    from dataclasses import fields

    import yaml

    from recbole_hnlm.config import PROPERTIES_DIR

    with open(os.path.join(PROPERTIES_DIR, "sampler", "HNLMRec.yaml"), encoding="utf-8") as handle:
        documented = yaml.safe_load(handle)
    for spec in fields(LLMConfig):
        key = f"hnlm_{spec.name}"
        assert key in documented, f"{key} missing from HNLMRec.yaml"
        assert documented[key] == spec.default, f"{key}: yaml {documented[key]!r} != LLMConfig {spec.default!r}"


def test_progress_off_silences_plain_tqdm_while_the_model_loads(tiny_llama_dir, monkeypatch):
    """transformers' GGUF loader draws a plain-tqdm bar inside from_pretrained: with progress off (a run with
    show_progress off) plain tqdm is disabled there, and only there; load_causal_lm and the stages' lazy generator
    pass it on. Mutants: the context swapped or dropped in load_model; progress not passed by load_causal_lm or by
    pipeline._generator (only --quiet's own silencing was tested)."""
    import tqdm
    from transformers import AutoModelForCausalLM

    from recbole_hnlm.llm import models
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.pipeline import _generator

    real = AutoModelForCausalLM.from_pretrained
    silenced = []

    def recording(folder, **kwargs):
        silenced.append(tqdm.std.tqdm(range(1), file=io.StringIO()).disable)
        return real(folder, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording)
    ref = models.resolve_generator(tiny_llama_dir)
    models.load_model(ref, device="cpu", progress=False)
    models.load_model(ref, device="cpu")
    models.load_causal_lm(tiny_llama_dir, device="cpu", progress=False)
    generator, _ = _generator(LLMConfig.from_config({"hnlm_generator": tiny_llama_dir}), 4, progress=False)
    generator._load_model()
    assert silenced == [True, False, True, True]
    assert not tqdm.std.tqdm(range(1), file=io.StringIO()).disable  # back after each load
