"""Session-44 audit (mutation pass over e50c8b9..4842c9f): the file-check memory (checks_remembered), the header's
separator hint, the own-folder hint, the search's checking bar, checkpoint checksums and the fuzz-found argument
checks (gather_rows, pid_alive, top_k, the TRADITIONAL models' message)."""
import json
import logging
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.checkpoint import load_checkpoint, read_model_weights, save_checkpoint
from recbole_hnlm.config import Config
from recbole_hnlm.data_checks import check_dataset_files, checks_remembered
from recbole_hnlm.errors import DataError
from recbole_hnlm.files import pid_alive
from recbole_hnlm.ops import gather_rows

INTER = "user_id:token\titem_id:token\trating:float\n" + "".join(f"u{u}\ti{(u * 7 + k) % 9}\t{1 + k % 5}\n"
                                                                 for u in range(6) for k in range(4))
GENRE_WARNING = "load_col['inter'] names 'genre'"


def _config(root, dataset="toy", **options):
    options.setdefault("checkpoint_dir", str(root / "saved"))
    return Config(model="MF", dataset=dataset, command_line=False, config_dict={"data_path": str(root), **options})


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.inter").write_text(INTER)
    return tmp_path


# -- checks_remembered: a memory hit only for the same settings read and the same files --------------------------------

def test_a_setting_equal_but_of_another_type_is_checked_again(toy):
    """filter_inter_by_user_or_item=1 equals True, but RecBole filters by the side files only for ``is True``: a check
    passed with 1 (nothing filtered) must not stand for True (every interaction dropped: an error)."""
    (toy / "toy" / "toy.item").write_text("item_id:token\tname:token\nx1\ta\nx2\tb\n")  # none of the .inter's items
    load_col = {"inter": ["user_id", "item_id"], "item": ["item_id", "name"]}
    with checks_remembered():
        check_dataset_files(_config(toy, filter_inter_by_user_or_item=1, load_col=load_col))
        with pytest.raises(DataError, match="which leaves none"):
            check_dataset_files(_config(toy, filter_inter_by_user_or_item=True, load_col=load_col))


def test_a_config_value_changed_in_place_is_checked_again(toy, caplog):
    """The memory keeps a copy of each setting read: a load_col list extended in place after a passed check is a
    new setting, read again (its unknown field warned about)."""
    config = _config(toy, load_col={"inter": ["user_id", "item_id"]})
    with checks_remembered():
        check_dataset_files(config)
        config["load_col"]["inter"].append("genre")
        with caplog.at_level(logging.WARNING, logger="recbole_hnlm.data_checks"):
            check_dataset_files(config)
    assert GENRE_WARNING in caplog.text


def _bad_same_size(inter):
    """The toy .inter with one id replaced by 'NA' (read as missing) in the same number of bytes."""
    text = INTER.replace("u0\ti0\t", "NA\ti0\t", 1)
    assert len(text) == len(INTER) and text != INTER
    inter.write_text(text)


def test_a_same_size_edit_with_another_mtime_is_read_again(toy):
    with checks_remembered():
        check_dataset_files(_config(toy))
        inter = toy / "toy" / "toy.inter"
        _bad_same_size(inter)
        os.utime(inter, ns=(1, 1))
        with pytest.raises(DataError, match="NA"):
            check_dataset_files(_config(toy))


def test_a_file_grown_under_the_same_mtime_is_read_again(toy):
    inter = toy / "toy" / "toy.inter"
    os.utime(inter, ns=(5, 5))
    with checks_remembered():
        check_dataset_files(_config(toy))
        inter.write_text(INTER + "u9\ti1\t1\t2\n")  # one field too many
        os.utime(inter, ns=(5, 5))
        with pytest.raises(DataError, match="toy.inter"):
            check_dataset_files(_config(toy))


def test_a_file_replaced_with_its_mtime_restored_is_read_again(toy):
    """``cp -p``, ``tar x`` or ``rsync -t`` give a changed file its old modification time; with the same size the
    memory took it for the file it had checked (the docstring: a file edited between two checks is read again)."""
    inter = toy / "toy" / "toy.inter"
    with checks_remembered():
        check_dataset_files(_config(toy))
        before = inter.stat()
        _bad_same_size(inter)
        os.utime(inter, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert inter.stat().st_size == before.st_size and inter.stat().st_mtime_ns == before.st_mtime_ns
        with pytest.raises(DataError, match="NA"):
            check_dataset_files(_config(toy))


def test_a_failed_check_is_not_remembered(toy):
    """Only passed checks are kept: the same failing config fails every time inside the block."""
    (toy / "toy" / "toy.inter").write_text("user_id:token\titem_id:token\n")  # a header without interactions
    with checks_remembered():
        for _ in range(2):
            with pytest.raises(DataError, match="no interactions"):
                check_dataset_files(_config(toy))


# -- the header's separator hint ------------------------------------------------------------------------------------

def _header_error(toy, header, **options):
    (toy / "toy" / "toy.inter").write_text(header + "\n" + "u1\ti1\n")
    with pytest.raises(DataError) as caught:
        check_dataset_files(_config(toy, **options))
    return str(caught.value)


@pytest.mark.parametrize("separator", ["|", ";"])
def test_the_hint_names_the_separator_the_header_holds(toy, separator):
    message = _header_error(toy, f"user_id:token{separator}item_id:token")
    assert f"field_separator ('\\t' here, a tab by default); this header holds {separator!r}." in message


@pytest.mark.parametrize("header", ["user_id:token,item_id:token\t", "user_id:token, item_id:token"])
def test_a_trailing_tab_or_a_space_is_not_taken_for_the_separator(toy, header):
    """A comma-split header with a trailing tab (an editor's leftover) or a space after each comma holds ',': the
    hint names it, not the tab or the space."""
    message = _header_error(toy, header, field_separator=";")
    assert "this header holds ','." in message and "(';' here" in message


def test_no_hint_when_the_header_holds_the_separator_or_no_other(toy):
    """A header split by field_separator with a bad field, or one field and no separator at all, gets no hint (and no
    IndexError)."""
    for header in ("user_id:token\titem id:int", "user_id:int"):
        message = _header_error(toy, header)
        assert "is not 'name:type'" in message and "this header holds" not in message


# -- the own-folder hint ----------------------------------------------------------------------------------------------

def test_a_relative_data_path_naming_the_own_folder_suggests_dot(tmp_path, monkeypatch):
    """--data_path=amz from the folder above amz/amz.inter: the data_path that finds the files is '.'."""
    (tmp_path / "amz").mkdir()
    (tmp_path / "amz" / "amz.inter").write_text(INTER)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\(--data_path=\.\)"):
        check_dataset_files(Config(model="MF", dataset="amz", command_line=False, config_dict={"data_path": "amz"}))


def test_no_own_folder_hint_when_only_some_parts_are_there(tmp_path):
    """Pre-split parts of which the own folder holds only some: the suggested data_path would not find them all."""
    folder = tmp_path / "amz"
    folder.mkdir()
    for part in ("train", "valid"):
        (folder / f"amz.{part}.inter").write_text(INTER)
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset_files(_config(folder, dataset="amz", benchmark_filename=["train", "valid", "test"]))
    assert "the dataset's own folder" not in str(caught.value)


# -- the search's checking bar ----------------------------------------------------------------------------------------

def _not_trained(*args, **kwargs):
    raise RuntimeError("not trained in this test")


@pytest.mark.parametrize("trials,progress,bar", [(-1, True, False), (0, False, False)])
def test_the_checking_bar_needs_enough_trials_and_progress(toy, tmp_path, capsys, trials, progress, bar):
    """CHECK_BAR_TRIALS - 1 trials are checked without a bar, and progress=False shows none at any size."""
    from recbole_hnlm.benchmark import tune

    values = ", ".join(f"{k}e-4" for k in range(1, tune.CHECK_BAR_TRIALS + trials + 1))
    (tmp_path / "space.hyper").write_text(f"learning_rate choice [{values}]\n")
    tune.run_search("toy", "MF", "RNS", [1], str(tmp_path / "space.hyper"), str(tmp_path / "search"),
                    config_dict={"data_path": str(toy), "epochs": 1}, cell_runner=_not_trained, progress=progress)
    assert ("checking trials" in capsys.readouterr().err) is bar


# -- checkpoint checksums ---------------------------------------------------------------------------------------------

class _WithScalar(torch.nn.Module):
    """A model with a 0-d buffer (its checksum must cover the bytes of a tensor with no dimension)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(3, 2)
        self.register_buffer("scale", torch.tensor(1.5))
        self.register_buffer("mask", torch.tensor([True, False, True]))


def _saved(tmp_path):
    model = _WithScalar()
    path = str(tmp_path / "m.safetensors")
    save_checkpoint(path, model, trainer_state={"model": "MF", "sampler": "RNS", "dataset": "toy", "epoch": 0})
    return path, model


def _rewrite(path, tensors=None, edit_meta=None):
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    tensors = load_file(path) if tensors is None else tensors
    if edit_meta:
        edit_meta(meta)
    save_file(tensors, path, metadata={"recbole_hnlm": json.dumps(meta)})


def test_a_changed_0d_tensor_is_found(tmp_path):
    path, model = _saved(tmp_path)
    tensors = load_file(path)
    tensors["model.scale"] = torch.tensor(2.5)
    _rewrite(path, tensors)
    with pytest.raises(DataError, match="tensor 'model.scale' does not match"):
        load_checkpoint(path, _WithScalar())


def test_bool_and_scalar_tensors_round_trip(tmp_path):
    path, model = _saved(tmp_path)
    other = _WithScalar()
    load_checkpoint(path, other)
    assert torch.equal(other.mask, model.mask) and float(other.scale) == 1.5


def test_a_tensor_added_after_the_write_is_found(tmp_path):
    """A tensor the checksums do not list was not written with them."""
    path, model = _saved(tmp_path)
    tensors = load_file(path)
    tensors["model.extra"] = torch.zeros(2)
    _rewrite(path, tensors)
    with pytest.raises(DataError, match="tensor 'model.extra' does not match"):
        read_model_weights(path)


def test_empty_checksums_are_no_file_without_checksums(tmp_path):
    """'sha256': {} lists none of the stored tensors: each fails, unlike a file written before checksums."""
    path, model = _saved(tmp_path)
    _rewrite(path, edit_meta=lambda meta: meta.update(sha256={}))
    with pytest.raises(DataError, match="does not match the checksum"):
        read_model_weights(path)


def test_a_relabelled_dtype_is_found(tmp_path):
    """The same bytes stored under another dtype (an edited header) load as other values: the checksum covers the
    dtype."""
    path, model = _saved(tmp_path)
    tensors = load_file(path)
    tensors["model.emb.weight"] = tensors["model.emb.weight"].view(torch.int32)
    _rewrite(path, tensors)
    with pytest.raises(DataError, match="tensor 'model.emb.weight' does not match"):
        read_model_weights(path)


# -- fuzz-found argument checks ---------------------------------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="pid_alive is always True on Windows")
def test_pid_alive_is_false_for_negative_pids():
    """kill(-1, 0) asks about every process the caller may signal: it answered True."""
    assert pid_alive(-1) is False and pid_alive(-os.getpid()) is False


def test_gather_rows_names_the_range_and_refuses_0d_and_other_devices():
    table = torch.arange(6.0).reshape(3, 2)
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        gather_rows(table, torch.tensor([3]))
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        gather_rows(table, torch.tensor([-1]))
    with pytest.raises(ValueError, match="0-D"):
        gather_rows(torch.tensor(1.0), torch.tensor([0]))
    with pytest.raises(ValueError, match="index is on meta"):
        gather_rows(table, torch.tensor([0], device="meta"))
    with pytest.raises(TypeError, match="list"):
        gather_rows(table, [0])
    assert gather_rows(table, torch.tensor([[2], [0]])).tolist() == [[[4.0, 5.0]], [[0.0, 1.0]]]



def test_only_pop_names_the_batch_count_bug():
    """The TRADITIONAL refusal names RecBole#2198 for Pop alone; ItemKNN's says why RecBole's runner is no way out."""
    from recbole.model.general_recommender import ItemKNN, Pop

    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.sampler.rns import RNS
    from recbole_hnlm.utils import check_model_sampler_pair

    messages = {}
    for model in (Pop, ItemKNN):
        with pytest.raises(ConfigError) as caught:
            check_model_sampler_pair(model, RNS)
        messages[model.__name__] = str(caught.value)
    assert "RUCAIBox/RecBole#2198" in messages["Pop"] and "RUCAIBox/RecBole#2198" not in messages["ItemKNN"]
    assert all("needs ray and torch < 2.6" in m for m in messages.values())
    assert messages["ItemKNN"].endswith("(docs/install.md).")
