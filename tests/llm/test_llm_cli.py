"""``python -m recbole_hnlm.llm``: where the stages read their settings and data, and one-line errors."""
import logging
import os

from llm_helpers import simulate_read_only, write_slice
from recbole_hnlm.llm.__main__ import main
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.store import PairEmbeddingStore


def test_split_all_reads_the_stage_settings_of_config_files(tmp_path, tiny_llama_dir, tiny_encoder_dir):
    """``--split all`` builds no RecBole configuration; the hnlm_* keys of --config_files still apply (they were
    dropped: the store went to the default path with every pair requested)."""
    root = write_slice(str(tmp_path / "data"))
    store = tmp_path / "from-yaml.safetensors"
    settings = tmp_path / "stage.yaml"
    settings.write_text(f"hnlm_max_pairs: 3\nhnlm_store_path: {store}\nhnlm_item_profiles: False\n"
                        "hnlm_max_new_tokens: 4\nhnlm_profile_max_new_tokens: 4\nhnlm_retries: 0\nepochs: 7\n")
    assert main(["negatives", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet",
                 "--config_files", str(settings), f"--hnlm_generator={tiny_llama_dir}",
                 f"--hnlm_encoder={tiny_encoder_dir}"]) == 0
    manifest = PairEmbeddingStore.open(str(store)).manifest
    assert manifest["num_requested"] == 3 and manifest["max_pairs"] == 3 and manifest["settings"]["retries"] == 0


def test_no_training_pairs_is_one_line_before_any_model_loads(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "empty.inter").write_text("user_id:token\titem_id:token\n")
    assert main(["negatives", "--split", "all", "--dataset", "empty", "--data_path", str(tmp_path),
                 "--hnlm_generator=no-such-model"]) == 2
    assert "empty.inter has a header but no interactions" in capsys.readouterr().err  # the run's check
    assert sorted(os.listdir(folder)) == ["empty.inter"]


def test_split_all_checks_the_atomic_files_as_a_run_does(tmp_path, capsys):
    """``--split all`` reads the files without RecBole: a line short of a field and an id pandas reads as missing
    passed, and the stage spent its LLM work on files the run then refused at its first line."""
    folder = tmp_path / "toy"
    folder.mkdir()
    good = "user_id:token\titem_id:token\trating:float\n1\t10\t3\n2\t10\t4\n"
    for bad_line, expected in (("1\t11\n", "toy.inter:4: 2 fields, but the header"),
                               ("NA\t11\t3\n", "toy.inter:4: 'user_id' is 'NA'")):
        (folder / "toy.inter").write_text(good + bad_line)
        assert main(["profiles", "--split", "all", "--dataset", "toy", "--data_path", str(tmp_path),
                     "--hnlm_generator=no-such-model"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "no-such-model" not in err, err
    (folder / "toy.inter").write_text(good)
    assert main(["profiles", "--split", "all", "--dataset", "toy", "--data_path", str(tmp_path),
                 "--hnlm_generator=no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err  # valid files: on to the model
    assert sorted(os.listdir(folder)) == ["toy.inter"]


def test_the_stage_works_where_recbole_reads_the_dataset(tmp_path, caplog, capsys):
    """RecBole reads its bundled ml-100k whatever --data_path says: the stage takes the split from there, so it
    must read the texts and write its artifacts where the run script will look, not into --data_path."""
    caplog.set_level(logging.WARNING)
    assert main(["profiles", "--dataset", "ml-100k", "--data_path", str(tmp_path), "--max_pairs", "1",
                 "--hnlm_generator=no-such-model", "--load_col={'inter': ['user_id', 'item_id']}"]) == 2
    # it said "reads and writes there too" (inside the installed package), but the artifacts go to ./saved/hnlm
    assert "so the LLM stage reads it from there too, and keeps its artifacts where the run script looks for them (" \
        in caplog.text and os.path.join("saved", "hnlm", "ml-100k") in caplog.text
    assert "no-such-model" in capsys.readouterr().err  # it got as far as loading the generator
    assert os.listdir(tmp_path) == []
    caplog.clear()  # --split all reads the run's files too (it read --data_path's, here missing: "not found")
    assert main(["profiles", "--split", "all", "--dataset", "ml-100k", "--data_path", str(tmp_path), "--max_pairs",
                 "1", "--hnlm_generator=no-such-model"]) == 2
    assert "so the LLM stage reads it from there too" in caplog.text
    assert "no-such-model" in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_quiet_silences_plain_tqdm_bars_and_recbole_future_warnings_until_the_stage_ends():
    """transformers' GGUF loader draws its bar with plain tqdm and RecBole's dataset code warns through pandas: under
    --quiet neither prints, and both are back once the stage is over (main may run in-process, as in these tests)."""
    import io
    import warnings

    from tqdm.auto import tqdm

    from recbole_hnlm.llm.__main__ import _quiet_third_party_output

    def draw(label, out):
        list(tqdm(range(3), file=out, desc=label))

    def recbole_warning():
        warnings.warn_explicit("fillna inplace", FutureWarning, "dataset.py", 648, module="recbole.data.dataset")

    out = io.StringIO()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with _quiet_third_party_output():
            draw("inside", out)
            recbole_warning()
            list(tqdm(range(2), file=out, desc="explicit", disable=False))  # our bars pass disable= themselves
        draw("after", out)
        recbole_warning()
    text = out.getvalue()
    assert "inside" not in text and "explicit" in text and "after" in text
    assert len([w for w in seen if "fillna inplace" in str(w.message)]) == 1


def test_quiet_restores_transformers_verbosity_and_bars_when_the_stage_ends():
    """transformers' verbosity and bar switch are ERROR/off during the stage and what they were afterwards (an
    in-process ``main([... "--quiet"])`` left them changed for the rest of the process)."""
    from transformers.utils import logging as transformers_logging

    from recbole_hnlm.llm.__main__ import _quiet_third_party_output

    before = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    try:
        for verbosity, bars in ((transformers_logging.INFO, True), (transformers_logging.DEBUG, False)):
            transformers_logging.set_verbosity(verbosity)
            (transformers_logging.enable_progress_bar if bars else transformers_logging.disable_progress_bar)()
            with _quiet_third_party_output():
                assert transformers_logging.get_verbosity() == transformers_logging.ERROR
                assert not transformers_logging.is_progress_bar_enabled()
            assert transformers_logging.get_verbosity() == verbosity
            assert transformers_logging.is_progress_bar_enabled() is bars
    finally:
        transformers_logging.set_verbosity(before[0])
        (transformers_logging.enable_progress_bar if before[1] else transformers_logging.disable_progress_bar)()


def test_the_encoding_of_config_files_reaches_the_stage(tmp_path, tiny_llama_dir, tiny_encoder_dir, capsys):
    """RecBole's ``encoding`` in --config_files is how the stage reads a latin-1 .item file (it was dropped: the
    stage read UTF-8 and stopped, telling the user to pass the encoding they had passed)."""
    root = write_slice(str(tmp_path / "data"))
    item_path = os.path.join(root, "mini", "mini.item")
    with open(item_path, encoding="utf-8") as f:
        header, first, *rest = f.read().splitlines()
    token, title = first.split("\t", 2)[:2]
    first = first.replace(title, f"Caf\u00e9 {title}", 1)
    with open(item_path, "wb") as f:
        f.write("\n".join([header, first, *rest, ""]).encode("latin-1"))
    args = ["negatives", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet",
            f"--hnlm_generator={tiny_llama_dir}", f"--hnlm_encoder={tiny_encoder_dir}", "--max_pairs", "2",
            "--hnlm_item_profiles=False", "--hnlm_max_new_tokens=4", "--hnlm_retries=0",
            f"--hnlm_store_path={tmp_path / 's.safetensors'}"]
    assert main(args) == 2  # UTF-8 by default: the latin-1 byte is named
    assert "mini.item is not utf-8 text" in capsys.readouterr().err
    settings = tmp_path / "enc.yaml"
    settings.write_text("encoding: latin-1\n")
    assert main(args + ["--config_files", str(settings)]) == 0


def test_max_pairs_and_hnlm_max_pairs_must_agree(tmp_path, capsys):
    """--max_pairs silently replaced an invalid --hnlm_max_pairs=abc (or another number)."""
    import pytest

    for value in ("abc", "5"):
        with pytest.raises(SystemExit):
            main(["negatives", "--split", "all", "--dataset", "mini", "--data_path", str(tmp_path), "--max_pairs", "3",
                  f"--hnlm_max_pairs={value}"])
        assert "--max_pairs=3 and --hnlm_max_pairs=" in capsys.readouterr().err


def test_keys_into_a_closed_pipe_ends_quietly():
    """`python -m recbole_hnlm.llm keys | head -3` ended in a BrokenPipeError traceback."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "recbole_hnlm.llm", "keys"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the table is written
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_redirected_stage_logs_recboles_lines_without_colour_codes(tmp_path):
    """`python -m recbole_hnlm.llm profiles ... > log` wrote RecBole's dataset lines as "^[[1;35m[Training]: ^[[0m"."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "recbole_hnlm.llm", "profiles", "--dataset", "ml-100k",
                           "--max_pairs", "1", "--hnlm_generator=no-such-model"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "no-such-model" in done.stderr, done.stderr[-2000:]
    assert "[Training]: train_batch_size" in done.stderr and "\x1b[" not in done.stderr


def test_stage_options_are_not_abbreviated_and_a_foreign_variant_is_named(tmp_path, caplog, capsys):
    """`--overwrit` was taken as --overwrite, `--data=...` as --dataset; `negatives --hnlm_variant=finetuned` was
    overridden without a word."""
    import pytest

    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "empty.inter").write_text("user_id:token\titem_id:token\n")
    common = ["--split", "all", "--dataset", "empty", "--data_path", str(tmp_path), "--hnlm_generator=no-such-model"]
    caplog.set_level(logging.WARNING)
    assert main(["negatives", *common, "--hnlm_variant=finetuned"]) == 2  # fails later: no training pairs
    assert "--hnlm_variant=finetuned is ignored: the negatives stage computes the semantic variant" in caplog.text
    with pytest.raises(SystemExit):
        main(["teacher", *common, "--overwrit"])
    assert "--overwrit" in capsys.readouterr().err


def test_options_a_stage_does_not_read_are_named(tmp_path, caplog, capsys):
    """`keys --hnlm_bogus=1 extra` printed the table and exited 0; `teacher --max_pairs 5` and `negatives
    --overwrite` ignored the option without a word."""
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "--hnlm_bogus=1", "extra"])
    assert exit_info.value.code == 2
    assert "keys lists the hnlm_* settings and takes no options: got --hnlm_bogus=1 extra" in capsys.readouterr().err
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "empty.inter").write_text("user_id:token\titem_id:token\n")
    common = ["--split", "all", "--dataset", "empty", "--data_path", str(tmp_path), "--hnlm_generator=no-such-model"]
    caplog.set_level(logging.WARNING)
    for stage, option, expected in (
            ("finetune", ["--max_pairs", "5"], "--max_pairs is ignored: the finetune stage fine-tunes on "
                                                "hnlm_ft_max_train_pairs pairs"),
            ("finetune", ["--hnlm_max_pairs=5"], "--max_pairs is ignored: the finetune stage"),
            ("negatives", ["--overwrite"], "--overwrite is ignored: only the teacher stage reads it"),
            ("negatives", ["--max_pairs", "5"], None)):
        caplog.clear()
        assert main([stage, *common, *option]) == 2  # fails later: no training pairs
        if expected:
            assert expected in caplog.text, (stage, option)
        else:
            assert "is ignored" not in caplog.text
    # the teacher stage on RecBole's split (it refuses --split all)
    caplog.clear()
    main(["teacher", "--dataset", "empty", "--data_path", str(tmp_path), "--max_pairs", "5"])
    assert "--max_pairs is ignored: the teacher stage trains on every training pair" in caplog.text


def test_a_misspelt_key_in_config_files_is_named_as_on_the_command_line(tmp_path, caplog):
    """The run script warns about a yaml key no property file defines; the LLM stages read the same files and said
    nothing, so `hnlm_max_pair: 5` in a yaml ran every pair."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "empty.inter").write_text("user_id:token\titem_id:token\n")
    yaml_file = tmp_path / "typo.yaml"
    yaml_file.write_text("hnlm_max_pair: 5\nhnlm_retries: 1\n")
    caplog.set_level(logging.WARNING)
    assert main(["negatives", "--split", "all", "--dataset", "empty", "--data_path", str(tmp_path),
                 "--config_files", str(yaml_file), "--hnlm_generator=no-such-model"]) == 2  # no training pairs
    assert "Unknown option 'hnlm_max_pair' is ignored: did you mean 'hnlm_max_pairs'?" in caplog.text
    assert "hnlm_retries" not in caplog.text


def test_load_col_of_config_files_reads_the_item_file_as_the_run_does(tmp_path, tiny_llama_dir, tiny_encoder_dir):
    """A ``load_col`` naming the ``.item`` file makes RecBole (and the run's LLM stage) read its quotes as CSV quotes;
    given in --config_files the CLI dropped it and read them as text: other titles in the prompts and another dataset
    hash, so the run computed every CLI-built artifact again."""
    from recbole_hnlm.llm.dataset_text import DatasetText

    root = write_slice(str(tmp_path / "data"))
    item_path = os.path.join(root, "mini", "mini.item")
    with open(item_path, encoding="utf-8") as f:
        header, first, *rest = f.read().splitlines()
    title = first.split("\t")[1]
    with open(item_path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, first.replace(title, f'"{title}"', 1), *rest, ""]))
    fields = [name.split(":")[0] for name in header.split("\t")]
    settings = tmp_path / "load.yaml"
    settings.write_text(f"load_col:\n  inter: [user_id, item_id, rating, timestamp]\n  item: [{', '.join(fields)}]\n")
    run_hash = DatasetText(root, "mini", item_quoted=True).dataset_hash()
    assert run_hash != DatasetText(root, "mini").dataset_hash()
    for split in ("all", "recbole"):
        store = tmp_path / f"{split}.safetensors"
        assert main(["negatives", "--split", split, "--dataset", "mini", "--data_path", root, "--quiet",
                     "--config_files", str(settings), f"--hnlm_generator={tiny_llama_dir}",
                     f"--hnlm_encoder={tiny_encoder_dir}", "--max_pairs", "2", "--hnlm_item_profiles=False",
                     "--hnlm_max_new_tokens=4", "--hnlm_retries=0", f"--hnlm_store_path={store}"]) == 0, split
        assert PairEmbeddingStore.open(str(store)).manifest["dataset_hash"] == run_hash, split


def test_config_files_in_the_run_scripts_one_string_form(tmp_path, caplog):
    """The help says the files are the run script's, whose form is one quoted string of space-separated files; the
    stage took that string for one file name ('a.yaml b.yaml cannot be read')."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "empty.inter").write_text("user_id:token\titem_id:token\n")
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("hnlm_retries: 1\n")
    second.write_text("hnlm_max_pair: 5\n")  # misspelt: warned about, so read
    caplog.set_level(logging.WARNING)
    assert main(["negatives", "--split", "all", "--dataset", "empty", "--data_path", str(tmp_path),
                 "--config_files", f"{first} {second}", "--hnlm_generator=no-such-model"]) == 2  # no training pairs
    assert "Unknown option 'hnlm_max_pair' is ignored" in caplog.text and "cannot be read" not in caplog.text


def test_a_profiles_stage_with_every_profile_cached_never_loads_the_model(tmp_path, tiny_llama_dir, monkeypatch):
    """The profiles stage loaded the generator (minutes for a 7B model) before finding every answer cached."""
    from recbole_hnlm.llm import models
    from recbole_hnlm.llm.pipeline import profiles_path

    loads = []
    load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs))
    root = write_slice(str(tmp_path / "data"))
    stage = ["profiles", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet", "--max_pairs", "2",
             f"--hnlm_generator={tiny_llama_dir}", "--hnlm_profile_max_new_tokens=4", "--hnlm_retries=0"]
    assert main(stage) == 0
    assert len(loads) == 1
    with open(profiles_path(root, "mini"), encoding="utf-8") as handle:
        records = handle.read()
    assert main(stage) == 0
    assert len(loads) == 1  # every profile cached: the model stayed on disk
    with open(profiles_path(root, "mini"), encoding="utf-8") as handle:
        assert handle.read() == records
    assert main(stage[:-1] + ["--hnlm_retries=1"]) == 0  # another setting: the profiles are made again
    assert len(loads) == 2


def test_a_store_path_that_cannot_be_written_is_one_line_before_the_llm_works(tmp_path, tiny_llama_dir,
                                                                             tiny_encoder_dir, monkeypatch, capsys,
                                                                             caplog):
    """The LLM loaded and the profiles ran before the read-only store folder failed in a traceback; and a read-only
    dataset folder's own artifacts were passed over without a word (hours of LLM work done again elsewhere)."""
    root = write_slice(str(tmp_path / "data"))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    simulate_read_only(monkeypatch, read_only)
    stage = ["negatives", "--split", "all", "--dataset", "mini", "--data_path", root, "--quiet", "--max_pairs", "2",
             f"--hnlm_generator={tiny_llama_dir}", f"--hnlm_encoder={tiny_encoder_dir}"]
    assert main(stage + [f"--hnlm_store_path={read_only / 's.safetensors'}"]) == 2
    assert "hnlm_store_path: " in capsys.readouterr().err
    assert not os.path.exists(os.path.join(root, "mini", "mini.hnlm-profiles.jsonl"))  # no profile was generated
    (tmp_path / "data" / "mini").rename(read_only / "mini")  # the dataset folder is now the read-only one
    (read_only / "mini" / "mini.hnlm-semantic.safetensors").write_bytes(b"an earlier run's")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        from recbole_hnlm.llm.paths import artifact_dir

        assert artifact_dir(str(read_only), "mini") == os.path.join(str(tmp_path), "saved", "hnlm", "mini")
    assert f"{read_only / 'mini'} is read-only, so the LLM artifacts go to" in caplog.text
    assert "the 1 there (mini.hnlm-semantic.safetensors) are not read: copy them over" in caplog.text


def test_the_keys_listing_pasted_into_a_config_file_gives_the_defaults(tmp_path):
    """The listing printed Python reprs: ``hnlm_store_path: None`` pasted into a config file is the string 'None'
    (a store file named None in the working folder), ``'smollm2'`` kept its quotes in some readers."""
    import contextlib
    import dataclasses
    import io

    from recbole_hnlm.config import read_config_files

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["keys"]) == 0
    listing = tmp_path / "keys.yaml"
    listing.write_text(out.getvalue())
    read = read_config_files([str(listing)])
    defaults = {f"hnlm_{f.name}": f.default for f in dataclasses.fields(LLMConfig)}
    assert read == defaults
    assert read["hnlm_store_path"] is None and LLMConfig.from_config(read) == LLMConfig()
