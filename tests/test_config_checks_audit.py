"""Mutation audit of the start-up option checks (recbole_hnlm/config_checks.py, recbole_hnlm/config.py): each test
pins a behaviour that no other test fixed (a range bound, an option that may not be None, a warning that must or
must not be given, the layering of the property files)."""
import pytest

from recbole_hnlm.config import Config, read_config_files, split_seed
from recbole_hnlm.errors import ConfigError
from tests.test_input_checks import build_config  # LightGCN on RecBole's bundled ml-100k, no command line


def build(model="LightGCN", **options):
    return Config(model=model, dataset="ml-100k", config_dict=options, command_line=False)


@pytest.mark.parametrize("key, value, expected", [
    ("train_batch_size", 0, "an integer >= 1"),
    ("stopping_step", -1, "an integer >= 0"),
    ("negative_warmup_epochs", -1, "an integer >= 0"),
    ("weight_decay", -0.1, "a finite number >= 0"), ("learning_rate", float("inf"), "a finite number > 0"),
    ("reg_weight", float("nan"), "a finite number >= 0"),
    ("eval_step", 1.5, "an integer"),
])
def test_range_bounds_of_core_options(key, value, expected):
    with pytest.raises(ConfigError, match=f"Option '{key}' must be {expected}, got {value!r}"):
        build_config(**{key: value})


def test_lower_bounds_themselves_are_accepted():
    config = build_config(train_batch_size=1, stopping_step=0, negative_warmup_epochs=0, weight_decay=0, n_layers=0,
                          eval_step=-1, candidate_max_rounds=0)
    assert (config["train_batch_size"], config["n_layers"], config["weight_decay"]) == (1, 0, 0)


@pytest.mark.parametrize("key", ["epochs", "eval_batch_size", "stopping_step", "eval_step", "seed"])
def test_options_every_run_reads_refuse_none(key):
    with pytest.raises(ConfigError, match=f"Option '{key}' must be .*, got None"):
        build_config(**{key: None})


def test_eval_only_skips_the_valid_metric_check():
    """Evaluating a checkpoint selects no epoch: a valid_metric that is not computed is no error then."""
    assert build_config(eval_only=True, valid_metric="NDCG@50")["valid_metric"] == "NDCG@50"
    with pytest.raises(ConfigError, match="'valid_metric' = 'NDCG@50' is not computed"):
        build_config(eval_only=False, valid_metric="NDCG@50")


@pytest.mark.parametrize("key", ["resume_from", "init_from"])
def test_an_empty_path_is_refused(key):
    with pytest.raises(ConfigError, match=f"Option '{key}' must be the path of .*, got ''"):
        build_config(**{key: ""})


def test_flush_denormal_must_be_a_bool():
    with pytest.raises(ConfigError, match="Option 'flush_denormal' must be True or False, got 'yes'"):
        build_config(flush_denormal="yes")
    assert build_config(flush_denormal=False)["flush_denormal"] is False


@pytest.mark.parametrize("parts", [["train", "valid", "test", "extra"], ["train", "valid", ""], ["train", "valid", 3]])
def test_benchmark_filename_needs_three_named_parts(parts):
    with pytest.raises(ConfigError, match="'benchmark_filename' must name the three pre-split files"):
        build_config(benchmark_filename=parts)


def test_benchmark_filename_may_be_a_tuple_and_then_ignores_the_ratio_split():
    """Pre-split files are read as they are: eval_args' RS ratios are never used, so they are not checked."""
    config = build_config(benchmark_filename=("train", "valid", "test"),
                          eval_args={"split": {"RS": [0.8, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"})
    assert tuple(config["benchmark_filename"]) == ("train", "valid", "test")


def test_world_size_alone_is_refused_by_the_plugins_check():
    with pytest.raises(ConfigError, match="Option 'world_size' = 2: recbole_hnlm trains in one process"):
        build_config(world_size=2)
    with pytest.raises(ConfigError, match="Option 'world_size' = 2: recbole_hnlm trains in one process"):
        build_config(world_size=2, nproc=1)


def test_the_dataloaders_pickle_is_never_loaded():
    with pytest.raises(ConfigError, match="Option 'dataloaders_save_path' makes RecBole load a pickle"):
        build_config(dataloaders_save_path="/tmp/ml-100k-for-MF-dataloader.pth")


@pytest.mark.parametrize("interval", ["[1,2,3]", "[a,b]", "[5,inf);(x,1]"])
def test_intervals_recbole_cannot_parse_are_refused(interval):
    with pytest.raises(ConfigError, match="'user_inter_num_interval' = .* is not an interval"):
        build_config(user_inter_num_interval=interval)


def test_a_valid_metric_over_recommended_items_is_computed_per_cutoff():
    """ItemCoverage needs the recommended items (rec.items, not rec.topk) and is reported as itemcoverage@<k>."""
    config = build_config(metrics=["Recall", "ItemCoverage"], valid_metric="ItemCoverage@10")
    assert config["valid_metric"] == "ItemCoverage@10"
    with pytest.raises(ConfigError, match="'valid_metric' = 'ItemCoverage' is not computed"):
        build_config(metrics=["Recall", "ItemCoverage"], valid_metric="ItemCoverage")


def test_options_recbole_reads_without_a_property_file_are_known():
    from recbole_hnlm.config import PROPERTIES_DIR
    from recbole_hnlm.config_checks import unknown_options

    keys = ["model", "dataset", "config_files", "local_rank", "encoding", "nproc", "world_size", "offset", "ip", "port"]
    assert unknown_options(keys, PROPERTIES_DIR) == []
    assert unknown_options(["config_file"], PROPERTIES_DIR) == [("config_file", "config_files")]


def test_a_recbole_models_own_options_are_read_by_its_run():
    """BPR's yaml (RecBole's) sets embedding_size, which the plugin's backbones also define: a BPR run reads it."""
    assert build(model="BPR", embedding_size=32, require_pow=True).foreign_options == []
    (key, owners), = build(model="MF", embedding_size=32, require_pow=True).foreign_options
    assert key == "require_pow" and owners.startswith("RecBole's ")


def test_an_option_of_the_overall_files_is_never_foreign():
    """RecBole's overall.yaml defines 'transform', and so do some of RecBole's model files: every run reads it."""
    assert build(model="MF", transform=None).foreign_options == []


def test_the_plugins_name_is_suggested_only_when_the_run_reads_it():
    """'ssl_temp' is NCL's name of SGL's ssl_tau: a LightGCN run reads no ssl_tau, so it is not suggested."""
    (key, owners), = build(model="LightGCN", ssl_temp=0.2).foreign_options
    assert key == "ssl_temp" and owners.startswith("RecBole's NCL model") and "did you mean" not in owners


def test_the_recbole_models_of_a_foreign_option_are_listed_up_to_four():
    from recbole_hnlm.config_checks import recbole_model_options

    four = sorted(name for name, keys in recbole_model_options().items() if "anneal_cap" in keys)
    assert len(four) == 4
    (_, owners), = build(model="LightGCN", anneal_cap=0.2).foreign_options
    assert owners == f"RecBole's {'/'.join(four)} models"
    (_, owners), = build(model="LightGCN", dropout_prob=0.2).foreign_options
    assert owners.startswith("RecBole's ") and owners.endswith("/... models") and owners.count("/") == 4


def test_later_config_files_override_earlier_ones_key_by_key(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("epochs: 3\nlearning_rate: 0.5\n")
    second.write_text("epochs: 4\nseed: 7\n")
    assert read_config_files([first, second]) == {"epochs": 4, "learning_rate": 0.5, "seed": 7}
    config = Config(model="MF", dataset="ml-100k", config_file_list=[str(first), str(second)], command_line=False)
    assert (config["epochs"], config["learning_rate"], config["seed"]) == (4, 0.5, 7)


def test_a_path_value_of_the_config_dict_becomes_its_string(tmp_path):
    config = build(model="MF", checkpoint_dir=tmp_path / "saved", resume_from=None)
    assert config["checkpoint_dir"] == str(tmp_path / "saved") and isinstance(config["checkpoint_dir"], str)


def test_the_teacher_model_counts_only_for_hnlmrec():
    """A DNS run trains no teacher: hnlm_teacher_model and the teacher's n_layers are both never read."""
    config = build(model="MF", sampler="DNS", hnlm_teacher_model="LightGCN", n_layers=2)
    assert config.foreign_options == [("hnlm_teacher_model", "the HNLMRec sampler"),
                                      ("n_layers", "the LightGCN/SGL model")]


def test_valid_metric_bigger_is_warned_about_only_when_it_differs():
    assert build(model="MF", valid_metric_bigger=True).option_warnings == []


@pytest.mark.parametrize("key, value, expected", [
    ("model", 5, "Option 'model' must be a model name such as LightGCN, got 5 (int)"),
    ("dataset", 2018, "Option 'dataset' must be a dataset name (its folder's name), got 2018 (int)"),
])
def test_a_model_or_dataset_that_is_no_name_is_named(key, value, expected):
    """A config file's 'model: 5' or 'dataset: 2018' (yaml reads a number)."""
    names = {"model": "MF", "dataset": "ml-100k", key: value}
    with pytest.raises(ConfigError) as error:
        Config(config_dict=names, command_line=False)
    assert str(error.value).startswith(expected)


def test_a_plugin_dataset_files_keys_are_listed_as_dataset_parameters():
    """RecBole lists its dataset yaml's keys under 'Dataset Hyper Parameters'; the plugin's dataset yaml does too."""
    config = Config(model="LightGCN", dataset="amazon-toys", config_dict={"sampler": "HNLMRec"}, command_line=False)
    assert config["hnlm_lambda"] == 1e-2 and "hnlm_lambda" in config.parameters["Dataset"]
    assert config.parameters["Dataset"].count("load_col") == 1
    # a key RecBole lists elsewhere stays there: ml-100k.yaml's epochs was printed under Training and Dataset
    listed = Config(model="MF", dataset="ml-100k", config_dict={"sampler": "RNS"}, command_line=False).parameters
    assert "epochs" in listed["Training"] and "epochs" not in listed["Dataset"]
    assert "normalize_all" in listed["Dataset"]


def test_split_seed_falls_back_to_the_seed():
    assert split_seed(build(model="MF", seed=7)) == 7
    assert split_seed(build(model="MF", seed=7, split_seed=2020)) == 2020
    assert split_seed(build(model="MF", seed=7, split_seed=0)) == 0  # 0 is a seed, not "unset"


@pytest.mark.parametrize("options, named", [({"valid_metric": None}, "valid_metric = None"),
                                             ({"metrics": [5]}, r"metrics = \[5\]: give metric names"),
                                             ({"metrics": 5}, "metrics = 5: give metric names")])
def test_a_valid_metric_or_metric_that_is_no_name_is_a_config_error(options, named):
    """--valid_metric=~ (the plugin's own None) and a metric that is no name ended in RecBole's raw AttributeError."""
    with pytest.raises(ConfigError, match=named):
        build_config(**options)


@pytest.mark.parametrize("teacher", ["lightgcn", None])
def test_the_hnlmrec_teachers_options_are_read_whatever_its_spelling(teacher):
    """The teacher trains get_model(hnlm_teacher_model or 'LightGCN') (teacher_training._teacher_choice): LightGCN."""
    config = build(model="MF", sampler="HNLMRec", hnlm_teacher_model=teacher, n_layers=2)
    assert config.foreign_options == []


def test_known_option_names_are_cached_per_properties_folder(tmp_path):
    """One process-wide cache answered every folder with the first folder's keys."""
    from recbole_hnlm.config import PROPERTIES_DIR
    from recbole_hnlm.config_checks import known_option_names

    (tmp_path / "sampler").mkdir()
    (tmp_path / "sampler" / "Mine.yaml").write_text("mine_candidates: 4\n")
    assert "mine_candidates" not in known_option_names(PROPERTIES_DIR)
    assert "mine_candidates" in known_option_names(str(tmp_path))
    assert "learning_rate" in known_option_names(str(tmp_path))
