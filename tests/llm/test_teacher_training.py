"""MixGCF teacher trained inside an HNLMRec fine-tuned run, and where LLM artifacts go by default."""
import glob
import logging
import os
import re
import sys

import pytest
import recbole
import torch
from recbole.data import create_dataset, data_preparation

from recbole_hnlm.config import Config
from recbole_hnlm.llm import teacher_training
from recbole_hnlm.llm.paths import artifact_dir
from recbole_hnlm.llm.pipeline import teacher_path_for
from recbole_hnlm.llm.teacher import Teacher
from recbole_hnlm.llm.teacher_training import ensure_teacher, teacher_config, train_teacher


def test_artifact_dir_next_to_atomic_files_when_writable(tmp_path):
    (tmp_path / "toys").mkdir()
    assert artifact_dir(str(tmp_path), "toys") == str(tmp_path / "toys")
    assert artifact_dir(str(tmp_path), "not-yet-created") == str(tmp_path / "not-yet-created")


def test_artifact_dir_avoids_installed_packages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundled = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
    assert artifact_dir(bundled, "ml-100k") == str(tmp_path / "saved" / "hnlm" / "ml-100k")


def test_artifact_dir_avoids_read_only_folders(tmp_path, monkeypatch):
    from llm_helpers import simulate_read_only

    data = tmp_path / "data"
    (data / "toys").mkdir(parents=True)
    simulate_read_only(monkeypatch, data / "toys")  # os.access as on a read-only mount: runs as root too (CI)
    monkeypatch.chdir(tmp_path)
    assert artifact_dir(str(data), "toys") == str(tmp_path / "saved" / "hnlm" / "toys")


@pytest.fixture
def hnlm_finetuned_config(fast_config, tmp_path):
    settings = dict(fast_config, sampler="HNLMRec", hnlm_variant="finetuned",
                    hnlm_teacher_path=str(tmp_path / "teacher.safetensors"))
    return Config(model="MF", dataset=fast_config["dataset"], config_dict=settings, command_line=False)


def test_config_without_command_line_ignores_argv(fast_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_recbole_hnlm.py", "--epochs=7", "--sampler=DNS"])
    assert Config(model="MF", dataset=fast_config["dataset"], config_dict=fast_config)["epochs"] == 7
    config = Config(model="MF", dataset=fast_config["dataset"], config_dict=fast_config, command_line=False)
    assert config["epochs"] == fast_config["epochs"] and config["sampler"] == "RNS"


def test_teacher_config_keeps_dataset_settings_and_takes_mixgcf(hnlm_finetuned_config, fast_config):
    t_config = teacher_config(hnlm_finetuned_config, "LightGCN", epochs=3)
    assert t_config["model"] == "LightGCN" and t_config["sampler"] == "MixGCF" and t_config["epochs"] == 3
    assert t_config["mixgcf_candidates"] == 64  # the MixGCF yaml was layered in
    assert t_config["data_path"] == hnlm_finetuned_config["data_path"]
    assert t_config["seed"] == hnlm_finetuned_config["seed"]
    assert not any(key.startswith("hnlm_") for key in t_config.external_config_dict)


def test_train_teacher_writes_the_training_split_and_restores_rng(hnlm_finetuned_config, caplog):
    config = hnlm_finetuned_config
    caplog.set_level("INFO", logger="recbole_hnlm.llm.teacher_training")
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    path = teacher_path_for(config)
    assert path == config["hnlm_teacher_path"] and not os.path.exists(path)

    torch.manual_seed(123)
    expected_next = torch.rand(4)
    shuffle_state = train_data.generator.get_state()
    torch.manual_seed(123)
    train_teacher(config, train_data, path, epochs=2)
    assert torch.equal(torch.rand(4), expected_next)  # the HNLMRec run is unchanged by training its teacher
    # its epochs are named as the teacher's (its bars and loss lines read like the run's own)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HNLMRec teacher: epoch")]
    assert len(said) == 2 and said[0].startswith("HNLMRec teacher: epoch 1 of 2 trained in ")
    assert " left at this pace" in said[0] and said[1].startswith("HNLMRec teacher: epoch 2 of 2 trained in ")
    assert "left" not in said[1]
    assert torch.equal(train_data.generator.get_state(), shuffle_state)

    teacher = Teacher.load(path)
    feat = train_data._dataset.inter_feat
    assert teacher.pair_user.numel() == len(feat) and teacher.dim == config["embedding_size"]
    assert torch.equal(teacher.pair_user + 1, feat[dataset.uid_field].long())
    assert torch.equal(teacher.pair_item + 1, feat[dataset.iid_field].long())
    # the hard negative is a MixGCF mixture, not a copy of the positive item's embedding
    positives = teacher.item_emb[teacher.pair_item]
    assert not torch.allclose(teacher.neg_emb, positives)
    assert torch.isfinite(teacher.neg_emb).all() and teacher.neg_emb.std() > 0


def test_the_teacher_trains_with_hnlm_threads_and_gives_the_run_its_threads_back(fast_config, tmp_path,
                                                                                 monkeypatch):
    """hnlm_threads held for the profiles, fine-tuning and embedding but not for the teacher, the stage's CF training:
    on a busy 2-core machine its epochs went from 1.2 s to about a minute with torch's 2 threads."""
    import recbole_hnlm.llm.teacher_training as teacher_training

    settings = dict(fast_config, sampler="HNLMRec", hnlm_variant="finetuned", hnlm_threads=1,
                    hnlm_teacher_path=str(tmp_path / "teacher.safetensors"))
    config = Config(model="MF", dataset=fast_config["dataset"], config_dict=settings, command_line=False)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    seen = []
    say = teacher_training._say_teacher_epoch
    monkeypatch.setattr(teacher_training, "_say_teacher_epoch",
                        lambda *args, **kwargs: (seen.append(torch.get_num_threads()), say(*args, **kwargs)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_teacher(config, train_data, config["hnlm_teacher_path"], epochs=2)
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2  # the HNLMRec run trains with the threads it had
    finally:
        torch.set_num_threads(before)


def _interrupt_in_epoch_1(monkeypatch):
    """Trainers record the epochs they train in ``trained``; the next training with ``interrupt[0]`` set is
    interrupted (Ctrl-C) at the end of epoch 1, after epoch 0's resume state was written."""
    from recbole_hnlm.trainer import SafeCheckpointMixin

    trained, interrupt = [], [True]
    original = SafeCheckpointMixin._train_epoch

    def interrupted_in_epoch_1(self, train_data, epoch_idx, *args, **kwargs):
        result = original(self, train_data, epoch_idx, *args, **kwargs)  # writes epoch 0's resume state first
        trained.append(epoch_idx)
        if epoch_idx == 1 and interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(SafeCheckpointMixin, "_train_epoch", interrupted_in_epoch_1)
    return trained, interrupt


def test_an_interrupted_teacher_goes_on_from_its_last_epoch(hnlm_finetuned_config, monkeypatch):
    """The teacher (30 epochs; hours on a large dataset on a CPU) started again from scratch after Ctrl-C."""
    config = hnlm_finetuned_config
    train_data, _, _ = data_preparation(config, create_dataset(config))
    whole, resumed = config["hnlm_teacher_path"], config["hnlm_teacher_path"] + ".resumed.safetensors"
    train_teacher(config, train_data, whole, epochs=2)
    assert not os.path.exists(whole + ".work")  # removed once the teacher file is written

    trained, interrupt = _interrupt_in_epoch_1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, train_data, resumed, epochs=2)
    assert not os.path.exists(resumed) and glob.glob(resumed + ".work/*.resume.safetensors")
    train_teacher(config, train_data, resumed, epochs=2)
    assert trained == [0, 1, 1]  # only the interrupted epoch ran again
    a, b = Teacher.load(whole), Teacher.load(resumed)
    for name in ("user_emb", "item_emb", "neg_emb"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name  # bit for bit on the CPU
    assert not os.path.exists(resumed + ".work")

    # other settings: the interrupted state is not taken, the teacher trains afresh
    interrupt[0] = True
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, train_data, resumed + "2", epochs=2)
    other = Config(model="LightGCN", dataset=config["dataset"], command_line=False,  # the teacher's backbone: its
                   config_dict=dict(config.external_config_dict, learning_rate=0.01))  # options are the teacher's
    trained.clear()
    train_teacher(other, train_data, resumed + "2", epochs=2)
    assert trained == [0, 1]


def test_teacher_resume_ignores_evaluation_options_and_leaves_no_best_checkpoints(hnlm_finetuned_config, monkeypatch,
                                                                               caplog):
    """A resume state was refused (and deleted) for options a teacher never reads (topk, valid_metric); a finished
    training left behind is only exported again; every epoch wrote an unread best checkpoint."""
    import recbole_hnlm.llm.teacher_training as teacher_training

    config = hnlm_finetuned_config
    train_data, _, _ = data_preparation(config, create_dataset(config))
    path = config["hnlm_teacher_path"]
    trained, interrupt = _interrupt_in_epoch_1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, train_data, path, epochs=2)
    written = glob.glob(path + ".work/*.safetensors")
    assert written and all(name.endswith(".resume.safetensors") for name in written)  # no best checkpoints
    evaluation = Config(model="MF", dataset=config["dataset"], command_line=False, config_dict=dict(
        config.external_config_dict, topk=[5], valid_metric="NDCG@5"))
    export = teacher_training.export_teacher

    def killed_before_the_folder_goes(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_training, "export_teacher", killed_before_the_folder_goes)
    caplog.set_level(logging.INFO)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(evaluation, train_data, path, epochs=2)
    assert trained == [0, 1, 1]  # resumed despite the other evaluation options
    # 0-based, as RecBole's epoch lines and the trainer's "Resume training from epoch 1" (it said "epoch 2")
    assert "HNLMRec teacher: resuming at epoch 1 " in caplog.text
    monkeypatch.setattr(teacher_training, "export_teacher", export)
    train_teacher(config, train_data, path, epochs=2)  # the training had finished: exported, nothing trained
    assert trained == [0, 1, 1] and "its training had finished" in caplog.text and os.path.exists(path)
    assert not os.path.exists(path + ".work")


def test_an_interrupted_overwrite_resumes_but_not_the_old_teachers_own_state(hnlm_finetuned_config, monkeypatch,
                                                                           caplog):
    """``llm teacher --overwrite`` interrupted said "run the same command again to resume", and the same command
    trained from the first epoch again (hours on a large dataset; also after a full disk failed its export). It now
    goes on from its last epoch; a resume state older than the teacher file (left by the run that wrote it, stopped
    before removing it) is still not resumed: --overwrite trains from the first epoch then."""
    config = Config(model="MF", dataset=hnlm_finetuned_config["dataset"], command_line=False,
                    config_dict=dict(hnlm_finetuned_config.external_config_dict, hnlm_teacher_epochs=2))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    path = config["hnlm_teacher_path"]
    trained, interrupt = _interrupt_in_epoch_1(monkeypatch)
    interrupt[0] = False
    ensure_teacher(config, train_data, path)
    assert trained == [0, 1] and os.path.exists(path) and not os.path.exists(path + ".work")
    first = open(path, "rb").read()

    trained.clear()
    interrupt[0] = True
    with pytest.raises(KeyboardInterrupt):
        ensure_teacher(config, train_data, path, overwrite=True)
    assert glob.glob(path + ".work/*.resume.safetensors") and open(path, "rb").read() == first  # the old one kept
    ensure_teacher(config, train_data, path)  # a run without --overwrite meanwhile: the old teacher, the state kept
    assert trained == [0, 1] and glob.glob(path + ".work/*.resume.safetensors")
    caplog.set_level(logging.INFO)
    ensure_teacher(config, train_data, path, overwrite=True)  # the same command again: resumed
    assert trained == [0, 1, 1] and "resuming at epoch 1 " in caplog.text
    assert "to train from the first epoch" in caplog.text and not os.path.exists(path + ".work")

    # the state of the run that wrote the file, older than the file: removed when the file is reused
    os.makedirs(path + ".work")
    stale = path + ".work/LightGCN-x.resume.safetensors"
    open(stale, "wb").close()
    written = os.path.getmtime(path)
    os.utime(stale, (written - 60, written - 60))
    ensure_teacher(config, train_data, path)
    assert not os.path.exists(path + ".work")

    # ... and not resumed with --overwrite, which trains afresh
    trained.clear()
    interrupt[0] = True
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, train_data, path + ".other", epochs=2)
    os.rename(path + ".other.work", path + ".work")
    written = os.path.getmtime(path)
    for name in glob.glob(path + ".work/*"):
        os.utime(name, (written - 60, written - 60))
    trained.clear()
    ensure_teacher(config, train_data, path, overwrite=True)
    assert trained == [0, 1] and not os.path.exists(path + ".work")


def test_finetuned_run_trains_teacher_then_embeds_every_training_pair(fast_config, tiny_llama_dir, tmp_path, capfd):
    """The run script's path for ``--hnlm_variant=finetuned`` with nothing on disk: teacher -> LoRA -> store, with
    no progress bar under ``show_progress: False`` (the LLM stage's bars ignored it)."""
    from recbole_hnlm.llm.store import PairEmbeddingStore
    from recbole_hnlm.quick_start import run_recbole_hnlm

    import shutil

    # its own copy of the atomic files: the artifacts are written beside them, not into the session's shared folder
    data_path, name = str(tmp_path / "data"), fast_config["dataset"]
    os.makedirs(os.path.join(data_path, name))
    for suffix in (".inter", ".item"):
        shutil.copyfile(os.path.join(fast_config["data_path"], name, name + suffix),
                        os.path.join(data_path, name, name + suffix))
    settings = dict(fast_config, data_path=data_path, sampler="HNLMRec", hnlm_variant="finetuned",
                    hnlm_generator=tiny_llama_dir, hnlm_teacher_epochs=1, hnlm_ft_max_train_pairs=32,
                    hnlm_ft_batch_size=8, epochs=1)
    folder = os.path.join(data_path, fast_config["dataset"])
    assert not [name for name in os.listdir(folder) if ".hnlm-" in name]  # nothing on disk
    result = run_recbole_hnlm(model="MF", dataset=fast_config["dataset"], config_dict=settings, saved=False)
    teacher = Teacher.load(os.path.join(folder, f"{fast_config['dataset']}.hnlm-teacher.safetensors"))
    store = PairEmbeddingStore.open(os.path.join(folder, f"{fast_config['dataset']}.hnlm-finetuned.safetensors"))
    assert store.manifest["variant"] == "finetuned" and store.manifest["teacher_hash"] == teacher.sha256
    assert store.num_pairs == teacher.pair_user.numel()  # every training pair has its negative
    assert 0 <= result["test_result"]["ndcg@20"] <= 1
    assert "%|" not in capfd.readouterr().err  # tqdm's bar
    # the split it was built from, as the sampler hashes the run's training dataset (same tokens, any order)
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.llm.store import dataset_split_sha256

    config = Config(model="MF", dataset=fast_config["dataset"], config_dict=settings, command_line=False)
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    assert store.manifest["split_hash"] == dataset_split_sha256(train_data._dataset)


@pytest.mark.parametrize("setting, kind, error", [
    ({"hnlm_generator": "/no/such/model"}, "ModelNotFound", "hnlm_generator: model folder /no/such/model not found"),
    ({"hnlm_load_in_4bit": True}, "ConfigError", "hnlm_load_in_4bit: 4-bit loading"),
    # ~ takes the default as in the LLM stage: the variant finetuned (the teacher was skipped, then missed), the
    # packaged generator (an AttributeError traceback)
    ({"hnlm_variant": None, "hnlm_generator": "/no/such/model"}, "ModelNotFound", "model folder /no/such/model"),
    ({"hnlm_generator": None, "hnlm_load_in_4bit": True}, "ConfigError", "hnlm_load_in_4bit: 4-bit loading"),
])
def test_models_that_cannot_load_are_refused_before_the_teacher_trains(fast_config, tiny_llama_dir, tmp_path,
                                                                       monkeypatch, setting, kind, error):
    """A missing generator path, or 4-bit loading without a GPU, was said only after the 30-epoch teacher had
    trained (hours at Yelp2018's size)."""
    import shutil

    from recbole_hnlm.quick_start import run_recbole_hnlm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # 4-bit loading needs one
    data_path, name = str(tmp_path / "data"), fast_config["dataset"]
    os.makedirs(os.path.join(data_path, name))
    shutil.copyfile(os.path.join(fast_config["data_path"], name, name + ".inter"),
                    os.path.join(data_path, name, name + ".inter"))
    settings = dict(fast_config, data_path=data_path, sampler="HNLMRec", hnlm_variant="finetuned",
                    hnlm_generator=tiny_llama_dir, hnlm_teacher_epochs=1, epochs=1)
    settings.update(setting)
    trained = []
    monkeypatch.setattr("recbole_hnlm.llm.teacher_training.train_teacher", lambda *a, **k: trained.append(a))
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.llm.models import ModelNotFound

    with pytest.raises({"ModelNotFound": ModelNotFound, "ConfigError": ConfigError}[kind], match=re.escape(error)):
        run_recbole_hnlm(model="MF", dataset=name, config_dict=settings, saved=False)
    assert not trained


def test_cli_split_is_the_run_split_and_teacher_stage_writes_the_file(fast_config, tmp_path, caplog):
    from recbole.utils import init_seed

    from recbole_hnlm.llm.__main__ import main, recbole_split
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset

    data_path, name = fast_config["data_path"], fast_config["dataset"]
    train, _ = recbole_split(name, data_path, None, "LightGCN", {"load_col": fast_config["load_col"]})
    run_config = Config(model="LightGCN", dataset=name, command_line=False, config_dict=dict(
        data_path=data_path, load_col=fast_config["load_col"], sampler="HNLMRec"))
    init_seed(run_config["seed"], run_config["reproducibility"])
    torch.rand(5)  # RNG use between seeding and the split must not matter: the CLI re-seeds like the run does
    init_seed(run_config["seed"], run_config["reproducibility"])
    run_train, _, _ = data_preparation(run_config, create_dataset(run_config))
    assert train_pairs_from_dataset(train) == train_pairs_from_dataset(run_train)

    teacher_file = tmp_path / "cli-teacher.safetensors"
    args = ["teacher", "--dataset", name, "--data_path", data_path, "--quiet", "--hnlm_teacher_model=MF",
            f"--hnlm_teacher_path={teacher_file}", f"--load_col={fast_config['load_col']}"]
    assert main([*args, "--hnlm_teacher_epochs=1", "--use_deterministic_algorithms=True"]) == 0
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the stage
    first = Teacher.load(str(teacher_file))
    assert first.pair_user.numel() == len(run_train._dataset.inter_feat)
    assert first.training["hnlm_teacher_model"] == "MF" and first.training["hnlm_teacher_epochs"] == 1
    assert first.training["learning_rate"] == run_config["learning_rate"]
    # a finished teacher is reused, as the run script reuses it, and the settings it keeps are named; --overwrite
    # trains it again
    written = teacher_file.stat().st_mtime_ns
    caplog.set_level(logging.WARNING)
    assert main([*args, "--hnlm_teacher_epochs=1"]) == 0
    assert "was trained with other settings" not in caplog.text
    assert main([*args, "--hnlm_teacher_epochs=2", "--learning_rate=0.01"]) == 0
    assert teacher_file.stat().st_mtime_ns == written and Teacher.load(str(teacher_file)).sha256 == first.sha256
    warned = caplog.text.split("was trained with other settings", 1)[1]
    assert "hnlm_teacher_epochs: 1 -> 2" in warned
    assert f"learning_rate: {run_config['learning_rate']!r} -> 0.01" in warned
    assert "embedding_size" not in warned
    assert main([*args, "--hnlm_teacher_epochs=2", "--overwrite"]) == 0
    assert Teacher.load(str(teacher_file)).sha256 != first.sha256


def test_a_teacher_whose_loss_stood_still_is_announced(hnlm_finetuned_config, caplog):
    """90 steps of batch 2048 at lr 0.001 took a helper's teacher from 1.3863 to 1.3842 without a word: the
    fine-tuned LLM then learns to predict near-random embeddings and negatives."""
    from recbole_hnlm.llm import teacher_training

    config = hnlm_finetuned_config
    train_data, _, _ = data_preparation(config, create_dataset(config))
    caplog.set_level("WARNING", logger="recbole_hnlm.llm.teacher_training")
    train_teacher(config, train_data, teacher_path_for(config), epochs=2)  # 2 epochs of 2048-pair batches: ~0.05%
    warned = [r.getMessage() for r in caplog.records if "its loss moved from" in r.getMessage()]
    assert len(warned) == 1 and "over 2 epochs (less than 1%)" in warned[0], warned
    assert "hnlm_teacher_epochs" in warned[0] and "than its 2048 and 0.001" in warned[0]
    # the command it suggests names the dataset (it is no command without one)
    assert f"recbole_hnlm.llm teacher --overwrite --dataset={config['dataset']}` and the run's other" in warned[0]
    say = teacher_training._warn_if_loss_stood_still
    caplog.clear()
    say({0: 1.3863, 29: 1.3842}, {"train_batch_size": 2048, "learning_rate": 0.001, "dataset": "d"})
    assert "its loss moved from 1.3863 to 1.3842 over 2 epochs" in caplog.text
    caplog.clear()
    say({0: 1.3863, 1: 1.2}, {"train_batch_size": 2048, "learning_rate": 0.001, "dataset": "d"})  # trained
    # one epoch in this process (a resume)
    say({5: 1.3863}, {"train_batch_size": 2048, "learning_rate": 0.001, "dataset": "d"})
    assert caplog.text == ""


def test_a_teacher_of_another_split_is_refused(fast_config, tmp_path, capsys, caplog):
    """A teacher file trained on the split of another seed holds pairs that are this split's validation and test
    pairs: the fine-tuning stage refuses it (exit 2, one line naming the file and the remedy) before loading the LLM,
    and writes no adapter."""
    from recbole_hnlm.llm.__main__ import main

    data_path, name = fast_config["data_path"], fast_config["dataset"]
    teacher_file, adapter = tmp_path / "teacher.safetensors", tmp_path / "adapter"
    args = ["--dataset", name, "--data_path", data_path, "--quiet", "--hnlm_teacher_model=MF",
            f"--hnlm_teacher_path={teacher_file}", f"--hnlm_adapter_path={adapter}",
            f"--load_col={fast_config['load_col']}", "--hnlm_generator=no-such-model"]
    assert main(["teacher", *args, "--hnlm_teacher_epochs=1", "--split_seed=1"]) == 0
    caplog.set_level(logging.INFO, logger="recbole_hnlm.llm.__main__")
    assert main(["teacher", *args, "--hnlm_teacher_epochs=1", "--split_seed=1"]) == 0  # reused: the check passed
    assert f"HNLMRec teacher: {teacher_file} checked: its " in caplog.text  # "checked next" was never followed up
    capsys.readouterr()
    assert main(["finetune", *args, "--split_seed=2"]) == 2
    message = capsys.readouterr().err
    assert str(teacher_file) in message and "not training pairs of this run's split" in message
    assert "--overwrite" in message and not adapter.exists()
    # first the remedy that keeps the other split's teacher (--overwrite replaced it: switching splits retrained)
    assert message.index("set hnlm_teacher_path to another file") < message.index("--overwrite")
    # the default adapter and store follow the teacher: the message names them too (a mutation audit)
    assert "with hnlm_adapter_path and hnlm_store_path also naming this split's own" in message
    # the teacher stage itself said "reused" with exit 0 and left the refusal to the fine-tuning
    assert main(["teacher", *args, "--hnlm_teacher_epochs=1", "--split_seed=2"]) == 2
    assert "not training pairs of this run's split" in capsys.readouterr().err


def test_artifact_paths_naming_other_things_are_refused_before_any_work(fast_config, tmp_path, capsys):
    """An adapter path naming a folder of other files had them deleted without a word (fine-tuning replaces the
    folder), one naming a file failed after the fine-tuning with a traceback; a teacher path naming a folder gave "No
    such device" and, with --overwrite, a traceback after the training; --overwrite replaced a data file named as the
    teacher, and a store path naming one was replaced after an "unreadable store" warning."""
    from recbole_hnlm.llm.__main__ import main

    data_path, name = fast_config["data_path"], fast_config["dataset"]
    teacher_file = tmp_path / "teacher.safetensors"
    args = ["--dataset", name, "--data_path", data_path, "--quiet", "--hnlm_teacher_model=MF",
            f"--load_col={fast_config['load_col']}", "--hnlm_generator=no-such-model"]
    assert main(["teacher", *args, "--hnlm_teacher_epochs=1", f"--hnlm_teacher_path={teacher_file}"]) == 0
    capsys.readouterr()
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("x")
    afile, inter = tmp_path / "afile", tmp_path / "victim.inter"
    afile.write_text("hi")
    inter.write_text("user_id:token\titem_id:token\n1\t2\n")
    cases = [
        (["finetune", f"--hnlm_teacher_path={teacher_file}", f"--hnlm_adapter_path={precious}"],
         "holds files but no hybrid.json, so it is not an adapter folder"),
        (["embed", f"--hnlm_teacher_path={teacher_file}", f"--hnlm_adapter_path={afile}"],
         "is a file: hnlm_adapter_path names the adapter's folder"),
        (["teacher", f"--hnlm_teacher_path={precious}"], "is a folder: hnlm_teacher_path names"),
        (["finetune", f"--hnlm_teacher_path={precious}", f"--hnlm_adapter_path={tmp_path / 'new'}"],
         "is a folder: hnlm_teacher_path names"),
        (["teacher", "--overwrite", f"--hnlm_teacher_path={inter}"], "is not a safetensors file, so not a teacher"),
        (["finetune", f"--hnlm_teacher_path={inter}", f"--hnlm_adapter_path={tmp_path / 'new'}"],
         "not a safetensors file, so not a teacher file"),
        (["embed", f"--hnlm_teacher_path={teacher_file}", f"--hnlm_store_path={inter}"],
         "is not a safetensors file, so not a store this plugin wrote: it is not replaced"),
    ]
    for stage_args, expected in cases:
        assert main([stage_args[0], *args, *stage_args[1:]]) == 2, stage_args
        error = capsys.readouterr().err
        assert expected in error and "Traceback" not in error, (stage_args, error)
    assert (precious / "thesis.txt").read_text() == "x" and (precious / "sub").is_dir()
    assert inter.read_text().startswith("user_id:token") and afile.read_text() == "hi"
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == sorted(
        ["afile", "precious", "teacher.safetensors", "teacher.safetensors.work.lock", "victim.inter"])
    # a store given as the teacher is a safetensors file of another format: --overwrite does not replace it either
    from recbole_hnlm.llm.store import write_pair_store

    store = str(tmp_path / "store.safetensors")
    write_pair_store(store, ["1"], ["2"], torch.zeros(1, 4), {"variant": "semantic"}, torch.float32)
    assert main(["teacher", *args, "--overwrite", f"--hnlm_teacher_path={store}"]) == 2
    assert "is a safetensors file of format 'recbole_hnlm/pair-neg-emb/v1', not a teacher" in capsys.readouterr().err


def test_teacher_config_leaves_the_runs_weight_files_out(fast_config, tmp_path):
    settings = dict(fast_config, sampler="HNLMRec", hnlm_variant="finetuned",
                    init_from=str(tmp_path / "MF-x.safetensors"))
    run = Config(model="MF", dataset=fast_config["dataset"], config_dict=settings, command_line=False)
    assert run["init_from"]  # the HNLMRec run starts from it; the teacher (another model, maybe) must not
    t_config = teacher_config(run, "LightGCN", epochs=3)
    assert t_config["init_from"] is None and t_config["resume_from"] is None


def test_another_backbones_options_do_not_reach_the_teacher(fast_config):
    """An NGCF run's `--reg_weight=1e-5` (NGCF's own default) trained its LightGCN teacher with it, so typing a default
    gave another teacher (and adapter, and store); a LightGCN run's options are its LightGCN teacher's."""
    options = dict(reg_weight=1e-5, embedding_size=32, learning_rate=5e-4, n_layers=2, train_batch_size=512)
    plain = teacher_config(Config(model="NGCF", dataset=fast_config["dataset"], command_line=False,
                                  config_dict=dict(fast_config, sampler="HNLMRec")), "LightGCN", epochs=3)
    typed = teacher_config(Config(model="NGCF", dataset=fast_config["dataset"], command_line=False,
                                  config_dict=dict(fast_config, sampler="HNLMRec", **options)), "LightGCN", epochs=3)
    assert all(typed[key] == plain[key] for key in options), {key: (typed[key], plain[key]) for key in options}
    assert typed["dataset"] == plain["dataset"] and typed["seed"] == plain["seed"]
    same = teacher_config(Config(model="LightGCN", dataset=fast_config["dataset"], command_line=False,
                                 config_dict=dict(fast_config, sampler="HNLMRec", **options)), "LightGCN", epochs=3)
    assert {key: same[key] for key in options} == options
    # a teacher named in lower case is the run's backbone too (RecBole finds models by any case)
    from recbole_hnlm.llm.teacher_training import _teacher_choice

    lower = Config(model="LightGCN", dataset=fast_config["dataset"], command_line=False,
                   config_dict=dict(fast_config, sampler="HNLMRec", hnlm_teacher_model="lightgcn", **options))
    model, epochs = _teacher_choice(lower)
    assert model == "LightGCN" and {key: teacher_config(lower, model, epochs)[key] for key in options} == options


def test_a_teacher_of_another_backbone_keeps_the_runs_seed_and_data_settings(fast_config):
    """Only the backbone's hyper-parameters are dropped for a teacher of another backbone: the seed (which the teacher
    file records) and the dataset's settings stay the run's."""
    run = Config(model="NGCF", dataset=fast_config["dataset"], command_line=False,
                 config_dict=dict(fast_config, sampler="HNLMRec", seed=7, split_seed=3))
    t_config = teacher_config(run, "LightGCN", epochs=3)
    assert t_config["model"] == "LightGCN" and t_config["seed"] == 7 and t_config["split_seed"] == 3
    assert t_config["load_col"] == fast_config["load_col"]


def test_the_cli_split_config_is_the_teachers_backbone_unless_a_model_is_named(fast_config):
    """``--model`` left out: the teacher stage builds the config of ``hnlm_teacher_model`` (its options are the
    teacher's), the other stages LightGCN's; a named --model is kept for every stage."""
    from recbole_hnlm.llm.__main__ import recbole_split

    data_path, name = fast_config["data_path"], fast_config["dataset"]
    settings = {"load_col": fast_config["load_col"], "gpu_id": "", "use_gpu": False}
    for teacher, for_teacher, model, expected in (
            (None, True, None, "LightGCN"), ("MF", True, None, "MF"), ("mf", True, None, "MF"),
            ("MF", False, None, "LightGCN"), ("MF", True, "NGCF", "NGCF")):
        options = dict(settings, **({"hnlm_teacher_model": teacher} if teacher else {}))
        _, config = recbole_split(name, data_path, None, model, options, for_teacher=for_teacher)
        assert config["model"] == expected, (teacher, for_teacher, model, config["model"])


def test_an_unset_teacher_model_is_lightgcn(fast_config):
    """``hnlm_teacher_model: null`` (a yaml file's ``~``) is the documented default, LightGCN."""
    from recbole_hnlm.llm.teacher_training import _teacher_choice

    run = Config(model="NGCF", dataset=fast_config["dataset"], command_line=False,
                 config_dict=dict(fast_config, sampler="HNLMRec", hnlm_teacher_model=None))
    assert _teacher_choice(run) == ("LightGCN", 30)


def test_finetuned_run_on_an_imported_published_split(fast_config, tiny_llama_dir, tmp_path, caplog):
    """A pre-split dataset (``split_import``, no item text): the teacher and the store cover exactly the imported
    training pairs, not the validation hold-out or the test pairs; test pairs that are also training pairs are
    reported with the remedy that works for pre-split files."""
    from recbole_hnlm.llm.store import PairEmbeddingStore
    from recbole_hnlm.quick_start import run_recbole_hnlm
    from recbole_hnlm.split_import import PARTS, import_split

    train_txt, test_txt = tmp_path / "train.txt", tmp_path / "test.txt"
    train_txt.write_text("".join(f"{u} " + " ".join(str((u * 7 + k * 3) % 90) for k in range(12)) + "\n"
                                 for u in range(40)))
    test_txt.write_text("".join(f"{u} {(u * 7 + 50) % 90} {(u * 5 + 61) % 90}\n" for u in range(40)))
    out = str(tmp_path / "atomic")
    manifest = import_split("pub", str(train_txt), str(test_txt), out, valid_ratio=0.2, seed=3)
    settings = dict(fast_config, dataset="pub", data_path=out, benchmark_filename=list(PARTS),
                    load_col={"inter": ["user_id", "item_id"]}, sampler="HNLMRec", hnlm_variant="finetuned",
                    hnlm_generator=tiny_llama_dir, hnlm_teacher_epochs=1, hnlm_ft_max_train_pairs=32,
                    hnlm_ft_batch_size=8, epochs=1)
    result = run_recbole_hnlm(model="MF", dataset="pub", config_dict=settings, saved=False)
    folder = os.path.join(out, "pub")
    teacher = Teacher.load(os.path.join(folder, "pub.hnlm-teacher.safetensors"))
    store = PairEmbeddingStore.open(os.path.join(folder, "pub.hnlm-finetuned.safetensors"))
    assert teacher.pair_user.numel() == store.num_pairs == manifest["counts"]["train_pairs"]
    assert 0 <= result["test_result"]["ndcg@20"] <= 1
    assert manifest["counts"]["test_pairs_also_in_train"] > 0
    assert "RecBole reads pre-split files (benchmark_filename) as they are" in caplog.text


def test_llm_stages_read_benchmark_filename_from_a_config_file(fast_config, tiny_llama_dir, tmp_path):
    """``python -m recbole_hnlm.llm teacher|finetune|embed`` on a pre-split dataset whose ``benchmark_filename`` is
    set in a yaml file (as a dataset's properties file would), not on the command line."""
    from recbole_hnlm.llm.__main__ import main
    from recbole_hnlm.llm.store import PairEmbeddingStore
    from recbole_hnlm.split_import import import_split

    train_txt, test_txt = tmp_path / "train.txt", tmp_path / "test.txt"
    train_txt.write_text("".join(f"{u} " + " ".join(str((u * 5 + k * 7) % 80) for k in range(10)) + "\n"
                                 for u in range(30)))
    test_txt.write_text("".join(f"{u} {(u * 5 + 3) % 80} {(u * 3 + 1) % 80}\n" for u in range(30)))
    out = str(tmp_path / "atomic")
    manifest = import_split("cli", str(train_txt), str(test_txt), out, drop_test_pairs_in_train=True)
    yaml_file = tmp_path / "presplit.yaml"
    yaml_file.write_text("benchmark_filename: [train, valid, test]\nload_col:\n  inter: [user_id, item_id]\n")
    common = ["--dataset", "cli", "--data_path", out, "--config_files", str(yaml_file), "--quiet",
              "--hnlm_teacher_model=MF", f"--hnlm_generator={tiny_llama_dir}", "--hnlm_ft_max_train_pairs=16",
              "--hnlm_ft_batch_size=8"]
    assert main(["teacher", *common, "--hnlm_teacher_epochs=1"]) == 0
    assert main(["finetune", *common]) == 0
    assert main(["embed", *common]) == 0
    store = PairEmbeddingStore.open(os.path.join(out, "cli", "cli.hnlm-finetuned.safetensors"))
    assert store.num_pairs == manifest["counts"]["train_pairs"]


CONFIG = {"train_batch_size": 2048, "learning_rate": 0.001, "dataset": "ml-100k"}


def test_a_teacher_loss_that_rose_is_announced_with_its_own_remedy(caplog):
    """A loss that went up (a learning rate too large) trained the teacher no better than one that stood still; it
    was told it moved "less than 1%" and to raise its learning rate."""
    caplog.set_level(logging.WARNING, logger=teacher_training.__name__)
    teacher_training._warn_if_loss_stood_still({0: 1.2, 1: 1.3, 2: 1.5}, CONFIG)
    assert "its loss rose from 1.2000 to 1.5000 over 3 epochs" in caplog.text
    assert "a smaller learning_rate than its 0.001 (or a larger train_batch_size than its 2048)" in caplog.text
    assert "less than 1%" not in caplog.text and "larger learning_rate" not in caplog.text
    assert "teacher --overwrite --dataset=ml-100k" in caplog.text
    caplog.clear()
    teacher_training._warn_if_loss_stood_still({0: 27.7403, 29: 27.7404}, CONFIG)  # noise within the share
    assert "its loss moved from 27.7403 to 27.7404" in caplog.text and "rose" not in caplog.text


def test_a_fall_of_exactly_the_share_is_enough_and_a_zero_loss_is_no_error(caplog):
    """"less than" STILL_LOSS_SHARE: a fall of exactly 1% is not announced; a first loss of 0 (nothing to learn) is
    no ZeroDivisionError at the end of a teacher's training."""
    caplog.set_level(logging.WARNING, logger=teacher_training.__name__)
    assert teacher_training.STILL_LOSS_SHARE == 0.01
    teacher_training._warn_if_loss_stood_still({0: 100.0, 1: 99.0}, CONFIG)
    teacher_training._warn_if_loss_stood_still({0: 0.0, 1: 0.0}, CONFIG)
    assert caplog.text == ""


def test_an_epochs_loss_of_several_terms_counts_their_sum(caplog):
    """RecBole returns a tuple when the model's loss has several terms (SGL's contrastive term, a sampler's auxiliary
    loss): the epoch's total is their sum, as the docstring says."""
    caplog.set_level(logging.INFO, logger=teacher_training.__name__)
    losses = {}
    teacher_training._say_teacher_epoch(0, 2.0, (1.0, 0.5), epochs=2, losses=losses)
    teacher_training._say_teacher_epoch(1, 2.0, 1.25, epochs=2, losses=losses)
    assert losses == {0: 1.5, 1: 1.25}
    said = [record.getMessage() for record in caplog.records]
    assert said == ["HNLMRec teacher: epoch 1 of 2 trained in 2.0 s; less than a minute left at this pace",
                    "HNLMRec teacher: epoch 2 of 2 trained in 2.0 s"], said  # the last one announces no time left


def test_a_rise_of_exactly_the_share_stood_still_and_the_share_is_of_the_first_loss(caplog):
    """"Within 1% either way: stood still": a rise of exactly 1% gets the stood-still warning, not the rise's (mutant:
    '>=' on the rise); the share is of the first loss, so 100 -> 101.005 rose (mutant: divided by the last loss)."""
    caplog.set_level(logging.WARNING, logger=teacher_training.__name__)
    teacher_training._warn_if_loss_stood_still({0: 100.0, 1: 101.0}, CONFIG)
    assert "its loss moved from 100.0000 to 101.0000" in caplog.text and "rose" not in caplog.text
    caplog.clear()
    teacher_training._warn_if_loss_stood_still({0: 100.0, 1: 101.005}, CONFIG)
    assert "its loss rose from 100.0000 to 101.0050" in caplog.text and "moved" not in caplog.text
