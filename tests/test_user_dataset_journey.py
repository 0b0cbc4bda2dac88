"""A user's own dataset (RecBole atomic files under <data_path>/<name>/): the findings of a new user's walk through
README/docs with an Amazon-style dataset, each pinned on a tiny dataset built in tmp_path."""
import os
import re

import pytest

from recbole_hnlm.config import Config
from recbole_hnlm.data_checks import check_dataset_files

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
    f"A{u:03d}\tB{(u * 7 + k) % 13:04d}\t{1 + k % 5}.0\t{1.3e9 + 1000 * k}\n" for u in range(6) for k in range(5))


def _dataset(root, name, parts=("inter",)):
    folder = root / name
    folder.mkdir(parents=True)
    for part in parts:
        (folder / f"{name}.{part}").write_text(INTER, encoding="utf-8")
    return folder


def _config(dataset, data_path, **options):
    return Config(model="MF", dataset=dataset, command_line=False, config_dict=dict(data_path=str(data_path),
                                                                                   **options))


@pytest.mark.parametrize("trailing", ["", os.sep])
def test_data_path_naming_the_dataset_folder_names_its_parent(tmp_path, trailing):
    """--data_path=<root>/amz for <root>/amz/amz.inter searched <root>/amz/amz/amz.inter; the error now says that
    the files are in the dataset's own folder and gives the data_path that finds them (<root>)."""
    folder = _dataset(tmp_path, "amz")
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset_files(_config("amz", str(folder) + trailing))
    message = str(caught.value)
    assert f"--data_path={tmp_path}" in message, message
    assert f"The files are in {folder}" in message
    check_dataset_files(_config("amz", tmp_path))  # the suggested data_path passes the same check


def test_pre_split_files_in_the_named_folder_name_its_parent(tmp_path):
    """The same hint for split_import's pre-split files (benchmark_filename)."""
    folder = _dataset(tmp_path, "amz", parts=("train.inter", "valid.inter", "test.inter"))
    parts = ["train", "valid", "test"]
    with pytest.raises(FileNotFoundError, match=re.escape(f"(--data_path={tmp_path})")):
        check_dataset_files(_config("amz", folder, benchmark_filename=parts))
    check_dataset_files(_config("amz", tmp_path, benchmark_filename=parts))


def test_a_misspelt_dataset_name_gets_no_folder_hint(tmp_path):
    """Only files that are really one level up are pointed at: a name with no files anywhere keeps the plain
    message (no made-up data_path)."""
    _dataset(tmp_path, "amz")
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset_files(_config("amzz", tmp_path))
    assert "own folder" not in str(caught.value)
    assert "Dataset 'amzz' not found" in str(caught.value)


def test_pop_refusal_says_why_recbole_is_no_way_out_and_the_count_bug_it_names_is_real(tmp_path):
    """Pop was refused with "run it with RecBole itself", which this install cannot do (recbole.quick_start imports
    ray; RecBole's Trainer reloads a pickled checkpoint) and which would give a wrong baseline: RecBole 1.2.1's
    Pop.calculate_loss counts an item repeated in a batch once. The refusal now says so; the count bug is checked
    on RecBole's own Pop (when RecBole fixes it, the message must change)."""
    import torch
    from recbole.config import Config as RecBoleConfig
    from recbole.data import create_dataset
    from recbole.data.interaction import Interaction
    from recbole.model.general_recommender.pop import Pop

    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.sampler import SAMPLERS
    from recbole_hnlm.utils import check_model_sampler_pair

    with pytest.raises(ConfigError) as caught:
        check_model_sampler_pair(Pop, SAMPLERS["RNS"])
    assert "run it with RecBole itself" not in str(caught.value)
    assert "RUCAIBox/RecBole#2198" in str(caught.value) and "docs/install.md" in str(caught.value)

    _dataset(tmp_path, "amz")
    config = RecBoleConfig(model="Pop", dataset="amz", config_dict={"data_path": str(tmp_path)})
    pop = Pop(config, create_dataset(config))
    item = torch.tensor([1, 1, 1, 2])
    pop.calculate_loss(Interaction({config["ITEM_ID_FIELD"]: item}))
    assert pop.item_cnt[1].item() == 1 and pop.item_cnt[2].item() == 1  # three clicks of item 1 counted as one


@pytest.mark.parametrize("given,meant", [("amzz", "amz"), ("Amz", "amz"), ("ml100k", "ml-100k"),
                                         ("amz-splt", "amz-split")])
def test_a_misspelt_dataset_name_gets_the_close_name_of_a_dataset_beside_it(tmp_path, given, meant):
    """A name with no files names a close dataset folder beside it (one holding that name's .inter or pre-split
    parts), or RecBole's bundled ml-100k; a folder without the files, and a name close to nothing, get no guess."""
    _dataset(tmp_path, "amz")
    _dataset(tmp_path, "amz-split", parts=("train.inter", "valid.inter", "test.inter"))
    (tmp_path / "amzzz").mkdir()  # closer to amzz, but holds no dataset
    with pytest.raises(FileNotFoundError, match=re.escape(f"Did you mean --dataset={meant}?")):
        check_dataset_files(_config(given, tmp_path))
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset_files(_config("qwerty", tmp_path))
    assert "Did you mean" not in str(caught.value)


# --- the close-name hint (audit of the session-44 text and hint fixes) ---

def _missing(dataset, data_path, **options):
    from recbole_hnlm.config import Config
    from recbole_hnlm.data_checks import check_dataset_files

    config = Config(model="MF", dataset=dataset, command_line=False,
                    config_dict=dict(data_path=str(data_path), **options))
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset_files(config)
    return str(caught.value)


def test_the_close_name_keeps_its_case_and_is_given_with_benchmark_filename(tmp_path):
    """A folder 'AMZ' is suggested as written for 'amzz'; also in the pre-split (benchmark_filename) message."""
    _dataset(tmp_path, "AMZ")
    assert "Did you mean --dataset=AMZ?" in _missing("amzz", tmp_path)
    assert "Did you mean --dataset=AMZ?" in _missing("amzz", tmp_path, benchmark_filename=["train", "valid", "test"])


def test_the_close_name_is_never_the_name_given(tmp_path):
    """A folder of the given name holding only pre-split parts (no benchmark_filename) is not suggested to itself."""
    _dataset(tmp_path, "amz", parts=("train.inter", "valid.inter", "test.inter"))
    message = _missing("amz", tmp_path)
    assert "benchmark_filename" in message and "Did you mean" not in message


def test_the_close_name_cutoff(tmp_path):
    """Names as close as 3 of 4 letters ('abcd' for 'abce', ratio 0.75) are suggested; 'amxy' for 'amz' (0.57) not."""
    import difflib

    _dataset(tmp_path, "abcd")
    _dataset(tmp_path, "amz")
    assert difflib.SequenceMatcher(None, "abce", "abcd").ratio() == 0.75
    assert "Did you mean --dataset=abcd?" in _missing("abce", tmp_path)
    assert "Did you mean" not in _missing("amxy", tmp_path)


def test_the_own_folder_hint_replaces_the_close_name(tmp_path):
    """data_path naming the dataset's own folder gets that hint only, not also a guess at another name."""
    folder = _dataset(tmp_path, "amz")
    _dataset(folder, "amzz")  # a close dataset beside the searched amz/amz/ folder
    message = _missing("amz", folder)
    assert "the dataset's own folder" in message and "Did you mean" not in message
