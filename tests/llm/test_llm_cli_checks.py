"""Mutation audit of the LLM stage's command line (``python -m recbole_hnlm.llm``), its settings (``LLMConfig``),
the artifact folder (``paths.artifact_dir``) and the training pairs of a RecBole split (``recbole_pairs``): behaviour
no other test pinned down. Each test names the mutants it kills."""
import json
import logging
import os
import subprocess
import sys

import pytest

from llm_helpers import simulate_read_only, write_slice
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.__main__ import main
from recbole_hnlm.llm.config import LLMConfig


def _empty_dataset(root, name="empty"):
    """A dataset folder whose ``.inter`` has a header only: a stage that gets past its settings stops there."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n")
    return str(root)


NO_PAIRS = "has a header but no interactions"  # the error of a stage that got past its settings (_empty_dataset)


# --- LLMConfig ---------------------------------------------------------------------------------------------------

#: the documented lower bounds (docs/llm.md, `keys`), written out: not read from the rules under test
POSITIVE = ("chunk_size", "negatives_per_pair", "gen_batch_size", "max_new_tokens", "profile_max_new_tokens",
            "ft_batch_size", "embed_batch_size", "embed_tokens", "ft_history", "ft_soft_tokens", "ft_pairs_per_user",
            "teacher_epochs", "ft_epochs", "ft_lora_r")
NOT_NEGATIVE = ("max_pairs", "threads", "retries", "max_history", "max_reviews", "profile_words",
                "ft_max_train_pairs", "ft_explicit_negatives")
INTEGER_KEYS = ([(name, 1, "a positive integer") for name in POSITIVE]
                + [(name, 0, "an integer >= 0") for name in NOT_NEGATIVE] + [("seed", None, "an integer")])


def test_the_integer_rules_cover_every_integer_setting():
    """Every int field of LLMConfig has a rule, once, with its documented bound (mutant: a name dropped from a
    rule's list left that setting unchecked: ``hnlm_chunk_size: 0`` reached the chunking)."""
    from dataclasses import fields

    from recbole_hnlm.llm.config import _INTEGER_RULES

    integer_fields = sorted(f.name for f in fields(LLMConfig) if f.type in (int, "int"))
    assert sorted(name for name, _, _ in INTEGER_KEYS) == integer_fields
    ruled = sorted((name, minimum, kind) for names, minimum, kind in _INTEGER_RULES for name in names)
    assert ruled == sorted(INTEGER_KEYS)


@pytest.mark.parametrize("name,minimum,kind", INTEGER_KEYS, ids=[name for name, _, _ in INTEGER_KEYS])
def test_each_integer_setting_has_its_documented_lower_bound(name, minimum, kind):
    """The smallest allowed value is taken, one less is refused with the rule's words, a fraction is refused
    (mutants: a name moved to another rule or dropped, a bound changed, ``hnlm_seed`` bounded)."""
    key = f"hnlm_{name}"
    lowest = -7 if minimum is None else minimum
    assert getattr(LLMConfig.from_config({key: lowest}), name) == lowest
    if minimum is not None:
        with pytest.raises(ConfigError, match=f"^{key} must be {kind}, got {minimum - 1}$"):
            LLMConfig.from_config({key: minimum - 1})
    with pytest.raises(ConfigError, match=f"^{key} must be {kind}, got 2.5$"):
        LLMConfig.from_config({key: 2.5})


@pytest.mark.parametrize("key,values", [
    ("hnlm_variant", ("semantic", "finetuned")), ("hnlm_store_dtype", ("float16", "float32")),
    ("hnlm_dtype", ("float32", "bfloat16", "float16")), ("hnlm_ft_item_text", ("title", "profile", "none")),
    ("hnlm_ft_user_text", ("profile", "history")),
])
def test_every_documented_choice_is_taken_and_another_is_named(key, values):
    """Each value `keys` documents is accepted (mutant: ``float16`` dropped from hnlm_dtype's choices, ``float32``
    from hnlm_store_dtype's: no test used them); any other value is refused with the list."""
    for value in values:
        assert getattr(LLMConfig.from_config({key: value}), key[len("hnlm_"):]) == value
    with pytest.raises(ConfigError, match=f"^{key}='other': expected one of "):
        LLMConfig.from_config({key: "other"})


def test_a_lora_dropout_of_one_is_refused():
    """[0, 1): 1 would drop every LoRA input (mutant: ``<= 1``)."""
    with pytest.raises(ConfigError, match=r"hnlm_ft_lora_dropout must be a number in \[0, 1\), got 1"):
        LLMConfig.from_config({"hnlm_ft_lora_dropout": 1})
    assert LLMConfig.from_config({"hnlm_ft_lora_dropout": 0.99}).ft_lora_dropout == 0.99


def test_keyword_overrides_win_but_none_keeps_the_configs_value():
    """``from_config(config, store_path=None)`` keeps the config's store path; a value given wins (mutants: None
    overriding, overrides dropped)."""
    config = {"hnlm_store_path": "from-config.safetensors", "hnlm_retries": 4}
    assert LLMConfig.from_config(config, store_path=None).store_path == "from-config.safetensors"
    assert LLMConfig.from_config(config, retries=1).retries == 1
    with pytest.raises(ConfigError, match="hnlm_retries must be an integer >= 0, got -1"):
        LLMConfig.from_config(config, retries=-1)  # overrides are checked too


def test_compute_names_the_4bit_numerics():
    """``compute`` is part of every artifact's identity: NF4 weights are not the dtype's (mutant: ``compute`` the
    dtype alone, so a 4-bit adapter and store were reused by a bf16 run)."""
    assert LLMConfig(dtype="bfloat16", load_in_4bit=True).compute == "nf4+bfloat16"
    assert LLMConfig(dtype="bfloat16").compute == "bfloat16"


# --- paths.artifact_dir ------------------------------------------------------------------------------------------

def _read_only_dataset_folder(tmp_path, monkeypatch, names):
    folder = tmp_path / "ro" / "mini"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    simulate_read_only(monkeypatch, folder)
    monkeypatch.chdir(tmp_path)
    return str(tmp_path / "ro")


def test_the_read_only_warning_names_this_datasets_artifacts_once(tmp_path, monkeypatch, caplog):
    """Only ``<dataset>.*.hnlm-*`` files are this dataset's artifacts; the warning comes once per folder (mutants:
    the dataset prefix not checked, the once-per-folder set not consulted)."""
    from recbole_hnlm.llm.paths import artifact_dir

    root = _read_only_dataset_folder(tmp_path, monkeypatch, [
        "mini.inter", "mini.hnlm-teacher.safetensors", "other.hnlm-semantic.safetensors", "mini.item"])
    caplog.set_level(logging.WARNING, logger="recbole_hnlm.llm.paths")
    elsewhere = os.path.join(str(tmp_path), "saved", "hnlm", "mini")
    assert artifact_dir(root, "mini") == elsewhere
    assert artifact_dir(root, "mini") == elsewhere
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 1, said
    assert "the 1 there (mini.hnlm-teacher.safetensors) are not read" in said[0]


def test_the_read_only_warning_lists_four_artifacts_and_counts_all(tmp_path, monkeypatch, caplog):
    """Five artifacts: four named, then " ...", and the count is all five (mutants: three named, no " ...")."""
    from recbole_hnlm.llm.paths import artifact_dir

    names = [f"mini.hnlm-{kind}" for kind in ("a", "b", "c", "d", "e")]
    root = _read_only_dataset_folder(tmp_path, monkeypatch, names)
    caplog.set_level(logging.WARNING, logger="recbole_hnlm.llm.paths")
    artifact_dir(root, "mini")
    assert "the 5 there (mini.hnlm-a, mini.hnlm-b, mini.hnlm-c, mini.hnlm-d ...) are not read" in caplog.text


def test_a_read_only_folder_without_artifacts_is_not_warned_about(tmp_path, monkeypatch, caplog):
    """Nothing left behind, nothing to say (mutant: "the 0 there () are not read")."""
    from recbole_hnlm.llm.paths import artifact_dir

    root = _read_only_dataset_folder(tmp_path, monkeypatch, ["mini.inter"])
    caplog.set_level(logging.WARNING, logger="recbole_hnlm.llm.paths")
    assert artifact_dir(root, "mini") == os.path.join(str(tmp_path), "saved", "hnlm", "mini")
    assert caplog.text == ""


def test_a_link_to_an_installed_package_is_inside_it(tmp_path, monkeypatch):
    """A symbolic link to RecBole's bundled folder is still inside the installed package (mutant: the folder's own
    path compared, not its real path)."""
    import recbole

    from recbole_hnlm.llm.paths import artifact_dir

    link = tmp_path / "linked"
    link.symlink_to(os.path.join(os.path.dirname(recbole.__file__), "dataset_example"))
    monkeypatch.chdir(tmp_path)
    assert artifact_dir(str(link), "ml-100k") == str(tmp_path / "saved" / "hnlm" / "ml-100k")


# --- recbole_pairs -----------------------------------------------------------------------------------------------

def test_training_pairs_are_user_then_item_tokens_of_the_split(fast_config):
    """``(user, item)`` original tokens of the training split's rows, in its order, from the dataloader or its
    Dataset alike (mutants: tokens swapped, items looked up by the user column)."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset

    config = Config(model="LightGCN", dataset=fast_config["dataset"], command_line=False,
                    config_dict=dict(fast_config, sampler="RNS"))
    train, _, _ = data_preparation(config, create_dataset(config))
    pairs = train_pairs_from_dataset(train)
    assert pairs == train_pairs_from_dataset(train.dataset) == train_pairs_from_dataset(train._dataset)
    inter = os.path.join(fast_config["data_path"], fast_config["dataset"], f"{fast_config['dataset']}.inter")
    with open(inter, encoding="utf-8") as handle:
        in_file = {tuple(line.split("\t")[:2]) for line in handle.read().splitlines()[1:]}
    assert len(pairs) == len(train.dataset.inter_feat) and set(pairs) <= in_file
    feat = train.dataset.inter_feat
    first_user = train.dataset.id2token(train.dataset.uid_field, int(feat[train.dataset.uid_field][0]))
    first_item = train.dataset.id2token(train.dataset.iid_field, int(feat[train.dataset.iid_field][0]))
    assert pairs[0] == (first_user, first_item)


def test_something_else_than_a_dataset_is_a_type_error():
    """Mutant: the check dropped, so a list gave an AttributeError about ``inter_feat``."""
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset

    with pytest.raises(TypeError, match="expected a RecBole Dataset or dataloader, got list"):
        train_pairs_from_dataset([("1", "2")])


# --- the command line: options and settings ----------------------------------------------------------------------

def test_keys_takes_no_option_at_all(capsys):
    """One option is refused as several are (mutant: ``len(given) > 1``: ``keys --quiet`` printed the table)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "--quiet"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "keys lists the hnlm_* settings and takes no options: got --quiet" in captured.err
    assert captured.out == ""


def test_a_config_file_whose_path_holds_a_space_is_one_file(tmp_path, caplog):
    """A file that exists is one file even with a space in its path; only a string naming no file is split as the
    run script splits it (mutant: every entry split: 'my' and 'dir/a.yaml' cannot be read)."""
    root = _empty_dataset(tmp_path)
    folder = tmp_path / "my dir"
    folder.mkdir()
    (folder / "a.yaml").write_text("hnlm_max_pair: 5\n")  # misspelt: warned about, so read
    caplog.set_level(logging.WARNING)
    assert main(["negatives", "--split", "all", "--dataset", "empty", "--data_path", root,
                 "--config_files", str(folder / "a.yaml"), "--hnlm_generator=no-such-model"]) == 2
    assert "Unknown option 'hnlm_max_pair' is ignored" in caplog.text


def test_max_pairs_is_the_setting_and_may_repeat_an_equal_hnlm_max_pairs(tmp_path, capsys):
    """``--max_pairs N`` is ``hnlm_max_pairs``; a negative one is refused naming the option typed (it was refused as
    ``hnlm_max_pairs``, a key the user never wrote); the same number given both ways is no disagreement (mutant: any
    hnlm_max_pairs refused), and a negative ``--hnlm_max_pairs`` keeps its own name."""
    root = _empty_dataset(tmp_path)
    common = ["negatives", "--split", "all", "--dataset", "empty", "--data_path", root, "--hnlm_generator=x"]
    with pytest.raises(SystemExit) as stop:
        main([*common, "--max_pairs", "-1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--max_pairs must be an integer >= 0 (0 = every training pair): got -1" in err
    assert "hnlm_max_pairs" not in err
    assert main([*common, "--hnlm_max_pairs=-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: hnlm_max_pairs must be an integer >= 0, got -1"
    assert main([*common, "--max_pairs", "3", "--hnlm_max_pairs=3"]) == 2
    assert NO_PAIRS in capsys.readouterr().err  # past the settings


def test_the_teacher_stage_refuses_split_all(tmp_path, capsys):
    """The teacher trains on RecBole's training split only (mutant: the check dropped, and `teacher --split all`
    went on to the fine-tuning stage's code)."""
    root = _empty_dataset(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["teacher", "--split", "all", "--dataset", "empty", "--data_path", root])
    assert exit_info.value.code == 2
    assert "the teacher trains on RecBole's training split: drop --split all" in capsys.readouterr().err


def test_the_stages_own_variant_given_is_not_warned_about(tmp_path, caplog):
    """``negatives --hnlm_variant=semantic`` asks for what the stage computes (mutant: any variant named ignored)."""
    root = _empty_dataset(tmp_path)
    caplog.set_level(logging.WARNING)
    for stage, variant in (("negatives", "semantic"), ("embed", "finetuned")):
        caplog.clear()
        assert main([stage, "--split", "all", "--dataset", "empty", "--data_path", root,
                     f"--hnlm_variant={variant}", "--hnlm_generator=no-such-model"]) == 2
        assert "is ignored" not in caplog.text, stage


def test_a_misspelt_key_in_a_file_and_on_the_command_line_is_named_once(tmp_path, caplog):
    """The command line's value replaces the file's: one key, one warning (mutant: the file's keys taken whether or
    not the command line gives them)."""
    root = _empty_dataset(tmp_path)
    settings = tmp_path / "typo.yaml"
    settings.write_text("hnlm_max_pair: 5\n")
    caplog.set_level(logging.WARNING)
    assert main(["negatives", "--split", "all", "--dataset", "empty", "--data_path", root, "--config_files",
                 str(settings), "--hnlm_max_pair=6", "--hnlm_generator=no-such-model"]) == 2
    assert caplog.text.count("Unknown option 'hnlm_max_pair' is ignored") == 1, caplog.text


def test_id_fields_of_config_files_reach_split_all(tmp_path, capsys):
    """``USER_ID_FIELD``/``ITEM_ID_FIELD`` in --config_files name the columns the stage reads (mutant: ``*_FIELD``
    keys not among the stage's keys, so the stage looked for user_id and item_id)."""
    folder = tmp_path / "ids"
    folder.mkdir()
    (folder / "ids.inter").write_text("uid:token\tiid:token\n1\t10\n2\t10\n")
    settings = tmp_path / "fields.yaml"
    settings.write_text("USER_ID_FIELD: uid\nITEM_ID_FIELD: iid\nload_col:\n  inter: [uid, iid]\n")
    assert main(["profiles", "--split", "all", "--dataset", "ids", "--data_path", str(tmp_path), "--config_files",
                 str(settings), "--hnlm_generator=no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err, err  # read the files, then on to the model


def test_the_default_data_path_is_dataset_in_the_working_folder(tmp_path, monkeypatch, capsys):
    """Without --data_path a dataset is read from ./dataset/ (mutant: another folder)."""
    _empty_dataset(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    assert main(["profiles", "--split", "all", "--dataset", "empty", "--hnlm_generator=no-such-model"]) == 2
    assert f"{os.path.join('dataset', 'empty', 'empty.inter')} {NO_PAIRS}" in capsys.readouterr().err


def test_ml100k_without_data_path_is_read_from_recboles_folder_without_a_warning(tmp_path, monkeypatch, caplog,
                                                                                  capsys):
    """The default --data_path of ml-100k is where RecBole reads it: no "RecBole reads ... from" warning (mutant:
    ml-100k's default was dataset/ like any other's)."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING)
    assert main(["profiles", "--split", "all", "--dataset", "ml-100k", "--max_pairs", "1",
                 "--hnlm_generator=no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert "RecBole reads" not in caplog.text


def test_the_finetune_stage_checks_the_finetuned_variants_settings(tmp_path, capsys, caplog):
    """The finetune stage trains the fine-tuned variant's adapter whatever ``hnlm_variant`` says (a semantic run's
    yaml, say); its settings must pass the fine-tuned variant's checks, and a foreign variant is named as the
    negatives and embed stages name it. It went on to the data with a profile-text adapter and no item profiles."""
    root = _empty_dataset(tmp_path)
    caplog.set_level(logging.WARNING)
    assert main(["finetune", "--split", "all", "--dataset", "empty", "--data_path", root, "--hnlm_variant=semantic",
                 "--hnlm_ft_item_text=profile", "--hnlm_item_profiles=False", "--hnlm_generator=no-such-model"]) == 2
    assert "hnlm_ft_item_text=profile needs generated item profiles" in capsys.readouterr().err
    assert "--hnlm_variant=semantic is ignored: the finetune stage" in caplog.text


def test_a_store_another_process_writes_is_exit_status_1(tmp_path, tiny_llama_dir, capsys):
    """A busy store is no bad input: exit status 1, not 2 (mutant: every error 2)."""
    from lock_holder import held_by_another_process

    root = write_slice(str(tmp_path / "data"))
    store = tmp_path / "s.safetensors"
    with held_by_another_process(str(store) + ".work.lock"):
        assert main(["negatives", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet",
                     "--max_pairs", "2", f"--hnlm_generator={tiny_llama_dir}", f"--hnlm_store_path={store}"]) == 1
    assert "another process" in capsys.readouterr().err


# --- the command line: what the stages compute and print ---------------------------------------------------------

def test_the_profiles_stage_profiles_the_seeded_subset_and_prints_its_file(tmp_path, tiny_llama_dir, capsys):
    """``--max_pairs 1``: one user profile, of the pair hnlm_seed selects; stdout is the profiles file (mutants:
    every pair profiled, another seed, the data folder printed, nothing printed)."""
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.pipeline import profiles_path

    root = write_slice(str(tmp_path / "data"))
    seed = 3
    (user, _), = DatasetText(root, "mini").select_pairs(1, seed)
    assert user != DatasetText(root, "mini").select_pairs(1, 0)[0][0]  # the seed matters here
    assert main(["profiles", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet", "--max_pairs",
                 "1", f"--hnlm_seed={seed}", "--hnlm_item_profiles=False", f"--hnlm_generator={tiny_llama_dir}",
                 "--hnlm_profile_max_new_tokens=4", "--hnlm_retries=0"]) == 0
    path = profiles_path(root, "mini")
    assert capsys.readouterr().out == path + "\n"
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    assert [(record["kind"], record["key"]) for record in records] == [("user", user)]


def test_negatives_of_the_recbole_split_read_its_training_pairs_quietly(tmp_path, tiny_llama_dir, tiny_encoder_dir,
                                                                        capsys):
    """``--split recbole``: the store's split is RecBole's training split, not every interaction (mutant: the
    training pairs not passed on); the store is the semantic variant's, at its default path (mutant: the stage's
    variant not set, so the yaml's default ``finetuned`` named the file); ``--quiet`` draws no progress bar (mutant:
    progress on)."""
    from recbole_hnlm.llm.__main__ import recbole_split
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset
    from recbole_hnlm.llm.store import PairEmbeddingStore, split_sha256

    root = write_slice(str(tmp_path / "data"))
    store = os.path.join(root, "mini", "mini.hnlm-semantic.safetensors")
    assert main(["negatives", "--dataset", "mini", "--data_path", root, "--quiet", "--max_pairs", "2",
                 f"--hnlm_generator={tiny_llama_dir}", f"--hnlm_encoder={tiny_encoder_dir}",
                 "--hnlm_item_profiles=False", "--hnlm_max_new_tokens=4", "--hnlm_retries=0"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{store}\n"
    assert "it/s]" not in captured.err and "%|" not in captured.err, captured.err[-500:]
    train, _ = recbole_split("mini", root, None, None, {})
    manifest = PairEmbeddingStore.open(store).manifest
    assert manifest["variant"] == "semantic"
    assert manifest["split_hash"] == split_sha256(train_pairs_from_dataset(train))
    assert manifest["num_requested"] == 2


def test_the_teacher_stage_trains_its_backbones_options_and_prints_its_file(fast_config, tmp_path, capsys,
                                                                            monkeypatch, caplog):
    """``teacher --hnlm_teacher_model=MF --learning_rate=0.01``: the split's config is MF's, so the option is the
    teacher's (mutant: LightGCN's config, which drops another backbone's options); the training runs under the
    run's deterministic-algorithms setting (mutant: always off); stdout is the teacher file (mutant: nothing);
    progress bars show without --quiet (mutant: the split's show_progress=False kept); a teacher trained again by
    --overwrite is not announced as "checked ...; reused" (mutant: the reuse flag ignored --overwrite)."""
    import torch

    from recbole_hnlm.llm import teacher_training
    from recbole_hnlm.llm.teacher import Teacher

    seen = []
    real = teacher_training.ensure_teacher

    def observed(*args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_training, "ensure_teacher", observed)
    teacher_file = tmp_path / "t.safetensors"
    assert main(["teacher", "--dataset", fast_config["dataset"], "--data_path", fast_config["data_path"],
                 "--hnlm_teacher_model=MF", "--learning_rate=0.01", "--hnlm_teacher_epochs=1",
                 "--use_deterministic_algorithms=True", f"--hnlm_teacher_path={teacher_file}",
                 f"--load_col={fast_config['load_col']}"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{teacher_file}\n"
    assert "Train     0" in captured.err, captured.err[-800:]  # RecBole's epoch bar
    assert seen == [True]
    training = Teacher.load(str(teacher_file)).training
    assert training["hnlm_teacher_model"] == "MF" and training["learning_rate"] == 0.01
    caplog.set_level(logging.INFO, logger="recbole_hnlm.llm.__main__")
    again = ["teacher", "--dataset", fast_config["dataset"], "--data_path", fast_config["data_path"], "--quiet",
             "--hnlm_teacher_model=MF", "--learning_rate=0.01", "--hnlm_teacher_epochs=1",
             f"--hnlm_teacher_path={teacher_file}", f"--load_col={fast_config['load_col']}"]
    assert main([*again, "--overwrite"]) == 0
    assert "checked: its" not in caplog.text
    assert main(again) == 0  # reused: checked and said so
    assert f"HNLMRec teacher: {teacher_file} checked: its" in caplog.text


def test_the_finetune_stage_prints_its_adapter_and_embeds_nothing(fast_config, tiny_llama_dir, tmp_path, capsys):
    """``finetune`` ensures the adapter only (mutant: it embedded every pair too, and printed the store)."""
    teacher_file, adapter, store = tmp_path / "t.safetensors", tmp_path / "adapter", tmp_path / "s.safetensors"
    common = ["--dataset", fast_config["dataset"], "--data_path", fast_config["data_path"], "--quiet",
              "--hnlm_teacher_model=MF", f"--hnlm_teacher_path={teacher_file}", f"--hnlm_adapter_path={adapter}",
              f"--hnlm_store_path={store}", f"--load_col={fast_config['load_col']}"]
    assert main(["teacher", *common, "--hnlm_teacher_epochs=1"]) == 0
    capsys.readouterr()
    assert main(["finetune", *common, f"--hnlm_generator={tiny_llama_dir}", "--hnlm_ft_max_train_pairs=16",
                 "--hnlm_ft_batch_size=8"]) == 0
    assert capsys.readouterr().out == f"{adapter}\n"
    assert (adapter / "hybrid.json").is_file() and not store.exists()


def test_quiet_leaves_warnings_and_errors_only(tmp_path):
    """A real process (logging is configured once per process): under --quiet RecBole's INFO lines and its pandas
    FutureWarnings are not shown (mutants: INFO level kept, the third-party silencing not entered); without it
    the INFO lines are there."""
    root = write_slice(str(tmp_path / "data"))
    command = [sys.executable, "-m", "recbole_hnlm.llm", "profiles", "--dataset", "mini", "--data_path", root,
               "--max_pairs", "1", "--hnlm_generator=no-such-model"]
    loud = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    quiet = subprocess.run(command + ["--quiet"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert loud.returncode == quiet.returncode == 2
    assert " INFO " in loud.stderr and "[Training]: train_batch_size" in loud.stderr
    assert " INFO " not in quiet.stderr and "[Training]" not in quiet.stderr, quiet.stderr[-2000:]
    assert "FutureWarning" not in quiet.stderr, quiet.stderr[-2000:]
    assert quiet.stderr.splitlines()[-1].startswith("error: ") and "no-such-model" in quiet.stderr


def test_a_dataloader_of_an_empty_split_has_no_pairs(fast_config):
    """A dataloader whose Dataset holds no interaction has no training pairs (the stages then say "no training
    pairs"); it was refused as not being a RecBole dataloader."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset
    from recbole_hnlm.llm.teacher import _train_ids

    config = Config(model="LightGCN", dataset=fast_config["dataset"], command_line=False,
                    config_dict=dict(fast_config, sampler="RNS"))
    train, _, _ = data_preparation(config, create_dataset(config))
    train._dataset = train._dataset.copy(train._dataset.inter_feat[[]])
    assert train_pairs_from_dataset(train) == []
    users, items = _train_ids(train._dataset, train)  # the teacher's export reads the same way
    assert users.numel() == 0 and items.numel() == 0
