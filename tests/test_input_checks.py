"""Bad input is one clear error naming the option or file: RecBole's core options, yaml files, misspelt keys,
atomic-file headers, datasets too small for the cut-offs or the split, and the command lines' exit codes."""
import logging
import os
import re

import pytest

from recbole_hnlm.config import Config
from recbole_hnlm.config_checks import unknown_option_messages
from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.data_checks import atomic_files_read, check_inter_header, check_records, check_side_file
from recbole_hnlm.quick_start import main, run_recbole_hnlm


def build_config(**options):
    return Config(model="LightGCN", dataset="ml-100k", config_dict=options, command_line=False)


@pytest.mark.parametrize("options, named", [
    ({"epochs": "abc"}, "'epochs' must be an integer >= 1, got 'abc'"),
    ({"epochs": 0}, "'epochs' must be an integer >= 1, got 0"),
    ({"epochs": 1.5}, "'epochs'"),
    ({"epochs": True}, "'epochs'"),
    ({"train_batch_size": -5}, "'train_batch_size' must be an integer >= 1"),
    ({"eval_batch_size": 0}, "'eval_batch_size'"),
    ({"learning_rate": "1e-3x"}, "'learning_rate' must be a finite number > 0"),
    ({"learning_rate": 0}, "'learning_rate'"),
    ({"seed": 1.5}, "'seed' must be an integer"),
    ({"split_seed": "abc"}, "'split_seed'"),
    ({"embedding_size": 0}, "'embedding_size'"),
    ({"reg_weight": -1e-4}, "'reg_weight' must be a finite number >= 0"),
    ({"n_layers": -1}, "'n_layers'"),
    ({"topk": [10, 0]}, "topk"),
    ({"topk": "abc"}, "topk"),
    ({"metrics": ["Recal"]}, "no metric named 'Recal'"),
    ({"valid_metric": "NDCG@50"}, "'valid_metric' = 'NDCG@50' is not computed"),
    ({"valid_metric": "MRR@20"}, "'valid_metric' = 'MRR@20'"),
    ({"valid_metric": "NDCG"}, "'valid_metric' = 'NDCG' is not computed"),  # a KeyError after the first epoch
    ({"valid_metric": "GAUC"}, "'valid_metric' = 'GAUC' is not computed"),  # not among the metrics
    ({"metrics": ["Recall", "GAUC"], "valid_metric": "GAUC@10"}, "'valid_metric' = 'GAUC@10'"),  # RecBole: 'gauc'
    ({"valid_metric": "NDCG@020"}, "'valid_metric' = 'NDCG@020' is not computed"),  # RecBole reports 'ndcg@20'
    ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "dynamic": True}},
     "dynamic needs an integer candidate_num >= 1"),  # RecBole: a reshape error at the first batch
    ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "dynamic": True, "candidate_num": 2.5}},
     "'train_neg_sample_args' = .*candidate_num"),
    ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "dynamic": 1}},  # yaml's 1: truthy
     "dynamic needs an integer candidate_num >= 1"),
    ({"eval_args": {"mode": "labeled"}}, "'eval_args' mode 'labeled' .valid, test. scores only"),  # a TypeError
    ({"eval_args": {"mode": {"valid": "full", "test": "labeled"}}}, "'eval_args' mode 'labeled' .test. scores"),
    ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1.0}}, "an integer sample_num >= 1"),
    ({"train_neg_sample_args": None}, "'train_neg_sample_args' = .*need an integer sample_num >= 1"),
    ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 0}}, "'train_neg_sample_args'"),
    ({"metrics": ["AUC", "Recall"]}, "Ranking metrics and value metrics can not be used at the same time"),
    ({"user_inter_num_interval": 5}, "'user_inter_num_interval' = 5 is not an interval"),  # was: no filter at all
    ({"item_inter_num_interval": "[10;5]"}, "'item_inter_num_interval'"),
    ({"val_interval": {"rating": "3"}}, "'val_interval' = .*'3' for field 'rating' is not an interval"),
    ({"rm_dup_inter": "yes"}, "'rm_dup_inter' must be first or last"),  # was: a pandas traceback
    ({"learner": "sparse_adam"}, "'learner' = 'sparse_adam' needs sparse gradients"),
    ({"save_dataset": True}, "'save_dataset' makes RecBole write a pickle"),
    ({"save_dataloaders": True}, "'save_dataloaders'"),
    ({"benchmark_filename": ["train", "test"]}, "'benchmark_filename' must name the three pre-split files"),
    ({"benchmark_filename": "train"}, "'benchmark_filename'"),
    ({"benchmark_filename": ["train", "test", "valid"]}, "'benchmark_filename' lists ['train', 'test', 'valid']: "
                                                         "RecBole trains on the first file"),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}={v[k]}" for k in v))
def test_bad_core_options_name_the_option(options, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace("[", r"\[")):
        build_config(**options)


def test_dynamic_negatives_without_candidates_are_refused_for_recboles_models_too():
    """The loader fails whatever the model: RecBole's BPR got the reshape error too (the check was the plugin's
    backbones')."""
    dynamic = {"distribution": "uniform", "sample_num": 1, "dynamic": True}
    with pytest.raises(ConfigError, match="dynamic needs an integer candidate_num >= 1"):
        Config(model="BPR", dataset="ml-100k", config_dict={"train_neg_sample_args": dynamic}, command_line=False)


def test_good_values_pass():
    config = build_config(epochs=3, train_batch_size=512, learning_rate=5e-4, seed=7, split_seed=None, topk=[5, 20],
                          reg_weight=0, n_layers=2, stopping_step=0, valid_metric="recall@5", encoding="utf-8")
    assert config["epochs"] == 3 and config["topk"] == [5, 20] and config.unknown_options == []
    assert build_config(metrics=["Recall", "NDCG", "GAUC"], valid_metric="GAUC")["valid_metric"] == "GAUC"
    assert build_config(user_inter_num_interval="[5,inf)", item_inter_num_interval="(0,1];[3,4)",
                        val_interval={"rating": "[3,inf)"}, rm_dup_inter="first")["rm_dup_inter"] == "first"
    # forms RecBole takes: token values of a field, dropping every duplicated pair, a reversed interval in a union
    # (RecBole warns and keeps it), no validation at all (valid_metric is never read)
    build_config(val_interval={"gender": ["M"]}, rm_dup_inter=False, user_inter_num_interval="[10,5];[1,inf)")
    build_config(eval_step=0, valid_metric="NDCG")
    build_config(train_neg_sample_args={"distribution": "uniform", "sample_num": 1, "dynamic": True,
                                        "candidate_num": 1}, eval_args={"mode": {"valid": "uni100", "test": "full"}})


def test_loader_negative_settings_a_candidate_sampler_never_reads_are_warned_about():
    """DNS/MixGCF/AHNS draw their own uniform candidates: a popularity or dynamic loader negative changed nothing
    (bit-identical runs) and dynamic negatives cost a model forward per batch, without a word."""
    popularity = {"distribution": "popularity", "sample_num": 1}
    assert Config(model="MF", dataset="ml-100k", config_dict={"sampler": "RNS", "train_neg_sample_args": popularity},
                  command_line=False).option_warnings == []  # RNS trains with the loader's negative
    dns = Config(model="MF", dataset="ml-100k", config_dict={"sampler": "DNS", "train_neg_sample_args": popularity},
                 command_line=False)
    assert len(dns.option_warnings) == 1
    assert "the DNS sampler scores 32 candidates drawn uniformly" in dns.option_warnings[0]
    assert "so its popularity distribution changes nothing; RecBole still draws" in dns.option_warnings[0]
    assert "does count" not in dns.option_warnings[0]
    three = Config(model="MF", dataset="ml-100k", command_line=False, config_dict={
        "sampler": "DNS", "train_neg_sample_args": dict(popularity, sample_num=3)})
    # sample_num repeats every pair per epoch (each with its own candidates): the warning said it changed nothing
    assert "sample_num = 3 does count: every training pair appears 3 times per epoch" in three.option_warnings[0]
    dynamic = {"distribution": "uniform", "sample_num": 1, "dynamic": True, "candidate_num": 8}
    mixgcf = Config(model="LightGCN", dataset="ml-100k", config_dict={"sampler": "MixGCF",
                                                                      "train_neg_sample_args": dynamic},
                    command_line=False)
    assert "dynamic negatives score every batch" in mixgcf.option_warnings[0]
    # only dynamic set: the warning said "its distribution changes nothing" of a uniform one
    assert "so its dynamic negatives change nothing; RecBole" in mixgcf.option_warnings[0]
    assert "distribution changes" not in mixgcf.option_warnings[0]
    both = Config(model="MF", dataset="ml-100k", command_line=False, config_dict={
        "sampler": "DNS", "train_neg_sample_args": dict(popularity, dynamic=True, candidate_num=8)})
    assert "so its popularity distribution and its dynamic negatives change nothing" in both.option_warnings[0]
    assert Config(model="MF", dataset="ml-100k", config_dict={"sampler": "AHNS"},
                  command_line=False).option_warnings == []
    warmed = Config(model="MF", dataset="ml-100k", config_dict={"sampler": "DNS", "train_neg_sample_args": popularity,
                                                                "negative_warmup_epochs": 2}, command_line=False)
    # the warm-up trains on the loader's negative; after it they are drawn for nothing (no word was said)
    assert ("its popularity distribution changes nothing after the 2-epoch negative warm-up, which trains on the "
            "loader's negatives; RecBole") in warmed.option_warnings[0]
    smaller = Config(model="MF", dataset="ml-100k", config_dict={"valid_metric_bigger": False}, command_line=False)
    assert smaller.option_warnings == ["Option 'valid_metric_bigger' = False is not applied: RecBole sets it from "
                                       "valid_metric (NDCG@20: True)."]  # it selected the highest NDCG silently


def test_misspelt_options_are_listed_with_the_closest_name():
    config = build_config(epochz=3, dns_candidatez=8, my_own_setting=1, dns_candidates=8)
    assert config.unknown_options == [("epochz", "epochs"), ("dns_candidatez", "dns_candidates"),
                                      ("my_own_setting", None)]  # dns_candidates is known, even for another sampler
    # no name is close to an abbreviation: the two shortest it begins are named ("--data=" was ignored without a hint)
    assert build_config(data="x").unknown_options == [("data", "dataset' or 'data_path")]
    assert unknown_option_messages([("data", "dataset' or 'data_path")]) == [
        "Unknown option 'data' is ignored: did you mean 'dataset' or 'data_path'?"]


def test_options_of_other_backbones_and_samplers_are_named():
    """Another backbone's or sampler's option was accepted without a word (``n_layers`` for MF): it is listed with
    its owners; options the run reads, HNLMRec's teacher's included, are not."""
    from recbole_hnlm.config_checks import foreign_option_messages, run_never_reads

    config = Config(model="MF", dataset="ml-100k", config_dict={
        "sampler": "AHNS", "n_layers": 5, "message_dropout": 0.5, "dns_candidates": 8, "ahns_candidates": 8,
        "reg_weight": 1e-4, "epochs": 3}, command_line=False)
    assert config.foreign_options == [("n_layers", "the LightGCN/SGL model"), ("message_dropout", "the NGCF model"),
                                      ("dns_candidates", "the DNS sampler")]
    assert foreign_option_messages(config.foreign_options[:1], run_never_reads("MF", "AHNS")) == [
        "Option 'n_layers' is ignored: it is an option of the LightGCN/SGL model, which a MF run with the AHNS "
        "sampler never reads."]
    teacher = Config(model="MF", dataset="ml-100k", config_dict={"sampler": "HNLMRec", "n_layers": 2,
                                                                 "mixgcf_candidates": 8}, command_line=False)
    assert teacher.foreign_options == []  # the MixGCF teacher (LightGCN) reads both
    squared = Config(model="LightGCN", dataset="ml-100k", config_dict={"require_pow": False}, command_line=False)
    assert [key for key, _ in squared.foreign_options] == ["require_pow"]  # RecBole's switch: the plugin squares
    assert Config(model="NGCF", dataset="ml-100k", config_dict={"require_pow": False},
                  command_line=False).foreign_options[0][0] == "require_pow"
    assert Config(model="BPR", dataset="ml-100k", config_dict={"require_pow": False},
                  command_line=False).foreign_options == []  # RecBole's own models read it
    # options only other RecBole models define, such as the MixGCF code's name of NGCF's message dropout, were
    # ignored without a word
    ngcf = Config(model="NGCF", dataset="ml-100k", config_dict={"mess_dropout": 0.1, "message_dropout": 0.1},
                  command_line=False)
    assert ngcf.foreign_options == [("mess_dropout", "RecBole's KGAT model (did you mean 'message_dropout'?)")]
    sgl = Config(model="SGL", dataset="ml-100k", config_dict={"ssl_temp": 0.2, "ssl_tau": 0.2}, command_line=False)
    assert foreign_option_messages(sgl.foreign_options, run_never_reads("SGL", "RNS")) == [
        "Option 'ssl_temp' is ignored: it is an option of RecBole's NCL model (did you mean 'ssl_tau'?), which a SGL "
        "run with the RNS sampler never reads."]
    sgl = Config(model="SGL", dataset="ml-100k", config_dict={"ssl_reg": 0.1}, command_line=False)
    assert sgl.foreign_options == [("ssl_reg", "RecBole's NCL model (did you mean 'ssl_weight'?)")]
    # a close name is offered only when it is close: 'loss_type' was answered with 'layers_dtype'
    for model, key in (("LightGCN", "loss_type"), ("LightGCN", "mlp_hidden_size"), ("NGCF", "temperature")):
        (_, owners), = Config(model=model, dataset="ml-100k", config_dict={key: 1}, command_line=False).foreign_options
        assert owners.startswith("RecBole's") and "did you mean" not in owners, (key, owners)
    assert Config(model="LightGCN", dataset="ml-100k", config_dict={"n_layers": 2, "reg_weight": 1e-4},
                  command_line=False).foreign_options == []
    dns = Config(model="MF", dataset="ml-100k", config_dict={"sampler": "DNS", "hnlm_lambda": 0.1}, command_line=False)
    assert dns.foreign_options == [("hnlm_lambda", "the HNLMRec sampler")]  # amazon-toys.yaml sets it: still HNLMRec's


def test_yaml_files_malformed_empty_or_not_a_mapping(tmp_path):
    broken, empty, listed, good = (tmp_path / n for n in ("broken.yaml", "empty.yaml", "list.yaml", "good.yaml"))
    broken.write_text("epochs: 3\nlearning_rate: [0.1\n")
    empty.write_text("")
    listed.write_text("- epochs\n- 3\n")
    good.write_text("epochs: 4\n")
    with pytest.raises(ConfigError, match=f"Config file '{broken}' is not valid YAML"):
        Config(model="LightGCN", dataset="ml-100k", config_file_list=[str(broken)], command_line=False)
    with pytest.raises(ConfigError, match=f"Config file '{listed}' must hold 'key: value' lines"):
        Config(model="LightGCN", dataset="ml-100k", config_file_list=[str(listed)], command_line=False)
    config = Config(model="LightGCN", dataset="ml-100k", config_file_list=[str(empty), str(good)], command_line=False)
    assert config["epochs"] == 4
    # a missing file or a folder named the errno, not the option ("error: [Errno 2] No such file or directory")
    for unreadable, why in ((tmp_path / "nope.yaml", "No such file or directory"), (tmp_path, "Is a directory")):
        with pytest.raises(ConfigError, match=f"config_files: {unreadable} cannot be read \\({why}\\)"):
            Config(model="LightGCN", dataset="ml-100k", config_file_list=[str(unreadable)], command_line=False)


REVIEWS = "user_id:token\titem_id:token\treview:token_seq\n"
INTER_CASES = {
    "empty": ("", "is empty: its first line must be a header"),
    "no_types": ("user_id\titem_id\n1\t2\n", "header field 'user_id' is not 'name:type'"),
    "commas": ("user_id:token,item_id:token\n1,2\n", "separated by field_separator"),
    "bad_type": ("user_id:tokn\titem_id:token\n1\t2\n", "header field 'user_id:tokn'"),
    "no_item": ("user_id:token\trating:float\n1\t2\n", "no 'item_id' field in the header"),
    # RecBole's own Yelp files: the hint names the field and both options (it took two runs to learn load_col)
    "yelp_item": ("review_id:token\tuser_id:token\tbusiness_id:token\tstars:float\nr1\tu1\tb1\t5\n",
                  "rename the column, or name it and load it: --ITEM_ID_FIELD=business_id "
                  "\"--load_col={'inter': ['user_id', 'business_id']}\")."),  # (ml-100k's rating, timestamp: absent)
    "uid": ("uid:token\titem_id:token\tstars:float\nu\tb\t5\n",
            "(USER_ID_FIELD = 'user_id'; rename the column, or name it and load it: --USER_ID_FIELD=uid "
            "\"--load_col={'inter': ['uid', 'item_id']}\")."),
    "no_known_item": ("user_id:token\tcategory_id:token\n1\t2\n", "--ITEM_ID_FIELD=<its name> \"--load_col="),
    "two_known_items": ("user_id:token\tasin:token\tparent_asin:token\n1\t2\t3\n", "--ITEM_ID_FIELD=<its name> \""),
    "known_item_not_a_token": ("user_id:token\tbusiness_id:float\n1\t2\n", "--ITEM_ID_FIELD=<its name> \""),
    "float_ids": ("user_id:token\titem_id:float\n1\t2\n", "ids must be 'item_id:token'"),
    "header_only": ("user_id:token\titem_id:token\n\n", "has a header but no interactions"),
    # lines that pandas would read with shifted columns (the run went on, training on timestamps as items)
    "extra_field": ("user_id:token\titem_id:token\n1\t2\n1\t3\t881250949\n", ":3: 3 fields, but the header"),
    "trailing_tab": ("user_id:token\titem_id:token\n1\t2\t\n", ":2: 3 fields, but the header"),
    "spaces": ("user_id:token\titem_id:token\n1 2\n", ":2: 1 field, but the header"),
    "bom": ("\ufeffuser_id:token\titem_id:token\n1\t2\n", "starts with a byte-order mark"),
    "rating_text": ("user_id:token\titem_id:token\trating:float\n1\t2\tthree\n", ":2: field 'rating' is 'three'"),
    "twice": ("user_id:token\titem_id:token\trating:float\trating:float\n1\t2\t3\t4\n", "names field 'rating' twice"),
    # RecBole's reader (pandas) takes '"' as a CSV quote: an unclosed one merged the following lines into one
    # review without a word; a quote followed by more text failed with pandas' ParserError (no file, no line)
    "unclosed_quote": (REVIEWS + '1\t2\t"so good\n1\t3\tthe end"\n1\t4\tok\n',
                       ':2: a field opens a double quote that is closed only on line 3'),
    "quote_then_text": (REVIEWS + '1\t2\tok\n1\t3\t"Best toy ever, 12" tall\n',
                        ":3: a double quote that RecBole's reader (pandas, which takes '\"' as a CSV quote) cannot"),
    "never_closed": (REVIEWS + '1\t2\tok\n1\t3\t"the end\n', ":3: a field opens a double quote that is never closed"),
}


@pytest.mark.parametrize("case", sorted(INTER_CASES))
def test_inter_header_errors_name_the_file_and_field(case, tmp_path):
    text, expected = INTER_CASES[case]
    path = tmp_path / f"{case}.inter"
    path.write_text(text)
    config = build_config()
    with pytest.raises(DataError) as error:
        check_inter_header(str(path), config)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_the_id_hint_without_load_col_names_the_field_only(tmp_path):
    """With every column loaded (load_col None) naming the field is the whole remedy."""
    path = tmp_path / "yelp.inter"
    path.write_text("user_id:token\tbusiness_id:token\nu1\tb1\n")
    with pytest.raises(DataError, match=r"name it and load it: --ITEM_ID_FIELD=business_id\)\.$"):
        check_inter_header(str(path), build_config(load_col=None))


def test_the_id_hint_lists_load_cols_columns_in_order_each_once(tmp_path):
    """The load_col of the hint is the user's own, in its order and without a column repeated (a set made its order
    vary from run to run)."""
    path = tmp_path / "renamed.inter"
    path.write_text("uid:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq\tvotes:float\n"
                    "u\tb\t5\t1\tgood\t2\n")
    columns = ["user_id", "item_id", "rating", "timestamp", "review", "votes", "item_id"]
    with pytest.raises(DataError) as error:
        check_inter_header(str(path), build_config(load_col={"inter": columns}))
    assert "--USER_ID_FIELD=uid \"--load_col={'inter': ['uid', 'item_id', 'rating', 'timestamp', 'review', " \
           "'votes']}\")." in str(error.value), str(error.value)


def test_a_well_formed_header_passes(tmp_path, caplog):
    path = tmp_path / "ok.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\ttags:token_seq\nu1\ti1\t4\ta b\nu2\ti1\t\tc\n\n")
    with caplog.at_level(logging.WARNING):
        check_inter_header(str(path), build_config())
    assert caplog.records == []  # no error and no warning about a good file


@pytest.mark.parametrize("separator, text", [
    ("\t", REVIEWS + '1\t2\t"a ""quoted"" word"\n1\t3\t"a\ttab inside"\n2\t3\tsay "hi"\n'),
    (",", "user_id:token,item_id:token,review:token_seq\n1,2,\"fun, but loud\"\n1,3,plain\n"),
])
def test_quoted_fields_pass_as_recbole_reads_them(separator, text, tmp_path):
    """Quoted fields that pandas reads into the right columns pass (the line-based check refused a separator inside
    quotes as a shifted line), and the check's verdict is RecBole's reader's: one row per line."""
    import pandas as pd

    path = tmp_path / "quoted.inter"
    path.write_text(text)
    check_inter_header(str(path), build_config(field_separator=separator))
    frame = pd.read_csv(path, delimiter=separator, dtype=str, engine="python")
    assert frame.shape == (text.count("\n") - 1, 3) and frame.notna().all().all()


def test_ids_with_spaces_around_them_are_warned(tmp_path, caplog):
    path = tmp_path / "spaced.inter"
    path.write_text("user_id:token\titem_id:token\nU1\tI1\nU1 \tI2\n U2\t I1\n")
    caplog.set_level("WARNING")
    check_inter_header(str(path), build_config())
    assert f"{path}:3: 'user_id' is 'U1 ', with spaces around it; RecBole keeps them, so it is another id than 'U1' " \
           "(3 such ids in the file)" in caplog.text


def test_encodings_load_col_and_pre_split_ids_are_named(tmp_path):
    path = tmp_path / "latin.inter"
    path.write_bytes("user_id:token\titem_id:token\nRen\u00e9\t2\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.inter is not utf-8 text .*--encoding=<its encoding>"):
        check_inter_header(str(path), build_config())
    check_inter_header(str(path), build_config(encoding="latin-1"))
    path = tmp_path / "ids.inter"
    path.write_text("uid:token\tiid:token\n1\t2\n")
    with pytest.raises(DataError, match=r"load_col\['inter'\] = \['item_id', 'user_id'\] does not load the "
                                        "USER_ID_FIELD field 'uid'"):
        check_inter_header(str(path), build_config(USER_ID_FIELD="uid", ITEM_ID_FIELD="iid",
                                                   load_col={"inter": ["user_id", "item_id"]}))
    check_inter_header(str(path), build_config(USER_ID_FIELD="uid", ITEM_ID_FIELD="iid",
                                               load_col={"inter": ["uid", "iid"]}))
    path = tmp_path / "test.inter"
    path.write_text("user_id:token\titem_id:token\n1\t2\n3\t\n")
    check_inter_header(str(path), build_config())  # one file: RecBole drops the row
    with pytest.raises(DataError, match="test.inter:3: empty 'item_id'"):
        check_inter_header(str(path), build_config(benchmark_filename=["train", "valid", "test"]))


def write_dataset(root, name, pairs):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\n")
        f.writelines(f"u{u}\ti{i}\n" for u, i in pairs)
    return str(root)


def test_ids_pandas_reads_as_missing_are_named(tmp_path):
    """Ids written "NA", "None", "null" ... were read by RecBole's pandas as missing values: rows were dropped with
    RecBole's warning only, and after a dropped user row RecBole dropped other rows for missing item ids (it takes
    the labels of the rows left as positions). Empty ids in both id fields trigger the same RecBole bug."""
    import pandas as pd

    from recbole_hnlm.data_checks import PANDAS_NA_STRINGS

    table = tmp_path / "na.csv"
    table.write_text("id\n" + "\n".join(sorted(PANDAS_NA_STRINGS)) + "\nNA_user\nnone\n")
    read = pd.read_csv(table, dtype=str)["id"]
    assert read.isna().sum() == len(PANDAS_NA_STRINGS) and list(read.dropna()) == ["NA_user", "none"]
    path = tmp_path / "na.inter"
    for line, message in (("NA\ti2", "na.inter:3: 'user_id' is 'NA', which RecBole's reader (pandas) reads as a "
                                     "missing value, so the row would be dropped: rename the id in the dataset's "
                                     "files (e.g. 'NA_user')"),
                          ("u2\tNone", "na.inter:3: 'item_id' is 'None', which"),
                          ("u2\tnull", "'item_id' is 'null'")):
        path.write_text(f"user_id:token\titem_id:token\nu1\ti1\n{line}\n")
        with pytest.raises(DataError, match=re.escape(message)):
            check_inter_header(str(path), build_config())
    path.write_text("user_id:token\titem_id:token\nu1\ti1\nnone\tNA_item\n")  # not read as missing
    check_inter_header(str(path), build_config())
    path.write_text("user_id:token\titem_id:token\nu1\ti1\n\ti2\nu2\t\nu3\ti3\n")
    with pytest.raises(DataError, match=re.escape("empty 'user_id' on line 3 and empty 'item_id' on line 4: RecBole")):
        check_inter_header(str(path), build_config())
    path.write_text("user_id:token\titem_id:token\nu1\ti1\nu2\t\nu3\t\nu3\ti3\n")
    check_inter_header(str(path), build_config())  # one id field only: RecBole drops exactly these rows
    path.write_text("user_id:token\titem_id:token\nu1\ti1\nu2\t\n\ti2\nu3\ti3\n")
    check_inter_header(str(path), build_config())  # the item row first: its line is still its position


def test_empty_ids_are_refused_exactly_when_recbole_would_drop_other_rows(fast_config, tmp_path):
    """The check's rule against RecBole itself: every order of one empty user id and one empty item id in a
    12-line file, loaded by RecBole when the check lets it through, keeps every other interaction."""
    from recbole.data import create_dataset

    from recbole_hnlm.config import Config

    for user_line in range(2, 14, 3):
        for item_line in range(2, 14, 3):
            if user_line == item_line:
                continue
            rows = [[f"u{k % 3}", f"i{k}"] for k in range(12)]
            rows[user_line - 2][0], rows[item_line - 2][1] = "", ""
            folder = tmp_path / f"e{user_line}_{item_line}"
            folder.mkdir()
            (folder / f"{folder.name}.inter").write_text(
                "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
            config = Config(model="MF", dataset=folder.name, config_dict={
                **fast_config, "dataset": folder.name, "data_path": str(tmp_path),
                "load_col": {"inter": ["user_id", "item_id"]}}, command_line=False)
            if item_line > user_line:
                with pytest.raises(DataError, match="would drop other interactions"):
                    check_inter_header(str(folder / f"{folder.name}.inter"), config)
                continue
            check_inter_header(str(folder / f"{folder.name}.inter"), config)
            dataset = create_dataset(config)
            kept = {dataset.id2token("item_id", i) for i in dataset.inter_feat["item_id"].tolist()}
            assert kept == {i for u, i in rows if u and i}, (user_line, item_line, kept)


def test_load_col_fields_a_file_lacks_are_warned_about(fast_config, tmp_path, caplog):
    """A misspelt field in load_col (``timestmp``) was loaded as nothing without a word; RecBole's own default
    load_col (ml-100k's names a timestamp) is not warned about."""
    from recbole_hnlm.data_checks import check_side_file

    path = tmp_path / "f.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t3\n")
    with caplog.at_level(logging.WARNING):
        check_inter_header(str(path), build_config(load_col={"inter": ["user_id", "item_id", "timestmp"]}))
    assert [r.getMessage() for r in caplog.records] == [
        f"load_col['inter'] names 'timestmp', which {path} does not have (its fields: user_id, item_id, timestamp): "
        "RecBole loads the other fields without it."]
    caplog.clear()
    path.write_text("user_id:token\titem_id:token\nu1\ti1\n")
    with caplog.at_level(logging.WARNING):
        check_inter_header(str(path), build_config())  # ml-100k's default load_col: [user_id, item_id, rating, ...]
    assert caplog.records == []
    item = tmp_path / "f.item"
    item.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\n")
    with caplog.at_level(logging.WARNING):
        check_side_file(str(item), "ITEM_ID_FIELD", build_config(load_col={"inter": ["user_id", "item_id"],
                                                                           "item": ["item_id", "titel"]}))
    assert [r.getMessage() for r in caplog.records] == [
        f"load_col['item'] names 'titel', which {item} does not have (its fields: item_id, title): RecBole loads the "
        "other fields without it."]
    caplog.clear()
    from recbole_hnlm.data_checks import check_dataset_files

    folder = tmp_path / "parts"
    folder.mkdir()
    for part in ("train", "valid", "test"):
        (folder / f"parts.{part}.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    with caplog.at_level(logging.WARNING):
        check_dataset_files(Config(model="MF", dataset="parts", command_line=False, config_dict=dict(
            data_path=str(tmp_path), benchmark_filename=["train", "valid", "test"],
            load_col={"inter": ["user_id", "item_id", "timestamp"]})))
    said = [r.getMessage() for r in caplog.records if "names 'timestamp'" in r.getMessage()]
    assert len(said) == 1 and "parts.train.inter" in said[0], said  # once, not per pre-split part


def _side_file_dataset(tmp_path, name, users, items, rows):
    """A dataset folder with ``.inter`` rows and ``.user``/``.item`` files holding ``users``/``items``."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
    (folder / f"{name}.user").write_text("user_id:token\tage:float\n" + "".join(f"{u}\t3\n" for u in users))
    (folder / f"{name}.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"{i}\tT\n" for i in items))
    return folder


@pytest.mark.parametrize("seed", range(4))
def test_interactions_of_ids_missing_from_side_files_are_counted_as_recbole_drops_them(tmp_path, caplog, seed):
    """RecBole's filter_inter_by_user_or_item dropped the interactions of users/items its loaded .user/.item lack
    without a word (a spaced id, a side file of another export): the warning's counts are RecBole's own drop, on
    random datasets where some rows lack a user, some an item, some both."""
    import random

    from recbole.data import create_dataset

    from recbole_hnlm.data_checks import check_dataset_files

    rng = random.Random(seed)
    rows = [(f"u{rng.randrange(9)}", f"i{rng.randrange(12)}") for _ in range(80)]
    users, items = rng.sample([f"u{k}" for k in range(9)], 6), rng.sample([f"i{k}" for k in range(12)], 9)
    _side_file_dataset(tmp_path, "toy", users, items, rows)
    config = Config(model="MF", dataset="toy", command_line=False, config_dict=dict(
        data_path=str(tmp_path), load_col={"inter": ["user_id", "item_id"], "user": ["user_id", "age"],
                                           "item": ["item_id", "title"]}))
    with caplog.at_level(logging.WARNING):
        check_dataset_files(config)
    said = [r.getMessage() for r in caplog.records if "RecBole drops" in r.getMessage()]
    lack_user = [k for k, (u, _) in enumerate(rows) if u not in users]
    lack_item = [k for k, (_, i) in enumerate(rows) if i not in items]
    dropped = len(set(lack_user) | set(lack_item))
    assert len(said) == 1, said
    assert f"{len(lack_user)} of 80 interactions have a 'user_id' that {tmp_path / 'toy' / 'toy.user'} lacks (first: " \
           f"line {lack_user[0] + 2}, {rows[lack_user[0]][0]!r})" in said[0]
    assert f"{len(lack_item)} of 80 interactions have a 'item_id' that {tmp_path / 'toy' / 'toy.item'} lacks (first: " \
           f"line {lack_item[0] + 2}, {rows[lack_item[0]][1]!r})" in said[0]
    assert f"RecBole drops those {dropped} interactions" in said[0]
    assert len(create_dataset(config).inter_feat) == 80 - dropped  # the count is RecBole's


def test_side_file_id_checks_follow_the_filter_and_refuse_a_dataset_left_empty(tmp_path, caplog):
    """No warning when RecBole keeps the rows (filter_inter_by_user_or_item False, a side file not loaded, pre-split
    files, which RecBole never filters); an error when every interaction would be dropped (ids written differently
    in the side file), which RecBole only finds after reading every file."""
    from recbole_hnlm.data_checks import check_dataset_files

    rows = [("u1", "i1"), ("u2", "i2"), ("u3", "i1")]
    _side_file_dataset(tmp_path, "toy", ["u1", "u2"], ["i1", "i2"], rows)
    loaded = {"inter": ["user_id", "item_id"], "user": ["user_id", "age"], "item": ["item_id", "title"]}

    def said(**options):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            check_dataset_files(Config(model="MF", dataset=options.pop("dataset", "toy"), command_line=False,
                                       config_dict=dict(data_path=str(tmp_path), **options)))
        return [r.getMessage() for r in caplog.records if "RecBole drops" in r.getMessage()]

    assert len(said(load_col=loaded)) == 1
    assert said(load_col=loaded, filter_inter_by_user_or_item=False) == []
    assert said(load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "title"]}) == []  # .user not loaded
    parts = tmp_path / "parts"
    parts.mkdir()
    for part in ("train", "valid", "test"):
        (parts / f"parts.{part}.inter").write_text("user_id:token\titem_id:token\nu3\ti1\n")
    (parts / "parts.user").write_text("user_id:token\tage:float\nu1\t3\n")
    assert said(dataset="parts", load_col=loaded, benchmark_filename=["train", "valid", "test"]) == []
    (tmp_path / "toy" / "toy.user").write_text("user_id:token\tage:float\n1\t3\n2\t3\n3\t3\n")  # 'u' dropped
    with pytest.raises(DataError, match=r"toy.inter: 3 of 3 interactions have a 'user_id' that .*toy.user lacks "
                                        r"\(first: line 2, 'u1'\)\. RecBole drops those 3 interactions "
                                        r"\(filter_inter_by_user_or_item: True\), which leaves none"):
        said(load_col=loaded)


def test_pre_split_parts_must_load_the_same_fields(tmp_path):
    """RecBole stacks pre-split parts by field name: a loaded field one part lacks was filled in without a word (and
    the LLM stage refused the parts only once an HNLMRec run had begun); fields it does not load may differ, and the
    order of the fields does not matter."""
    from recbole_hnlm.data_checks import check_dataset_files

    folder = tmp_path / "parts"
    folder.mkdir()
    headers = {"train": "user_id:token\titem_id:token\trating:float",
               "valid": "item_id:token\tuser_id:token\trating:float", "test": "user_id:token\titem_id:token"}
    for part, header in headers.items():
        row = {"user_id": "u1", "item_id": "i1", "rating": "3"}
        (folder / f"parts.{part}.inter").write_text(
            header + "\n" + "\t".join(row[field.split(":")[0]] for field in header.split("\t")) + "\n")

    def check(load_col):
        check_dataset_files(Config(model="MF", dataset="parts", command_line=False, config_dict=dict(
            data_path=str(tmp_path), benchmark_filename=["train", "valid", "test"], load_col=load_col)))

    with pytest.raises(DataError, match=r"parts.test.inter: loads the fields user_id:token, item_id:token, but "
                                        r".*parts.train.inter loads user_id:token, item_id:token, rating:float"):
        check({"inter": ["user_id", "item_id", "rating"]})
    check({"inter": ["user_id", "item_id"]})  # rating not loaded; valid's other field order is fine
    (folder / "parts.test.inter").write_text("user_id:token\titem_id:token\trating:token\nu1\ti1\t3\n")
    with pytest.raises(DataError, match="parts.test.inter: loads the fields .*rating:token, but .*rating:float"):
        check({"inter": ["user_id", "item_id", "rating"]})


def test_pre_split_parts_compare_every_field_when_all_are_loaded_and_a_folder_part_is_named(tmp_path):
    """load_col None loads every field: a field one part lacks is refused then too, unless unload_col leaves it out
    (RecBole then reads the parts as they are); a folder in place of a pre-split part is named a folder."""
    from recbole.data import create_dataset

    from recbole_hnlm.data_checks import check_dataset_files

    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "parts.train.inter").write_text("user_id:token\titem_id:token\trating:float\n"
                                              + "".join(f"u{k % 4}\ti{k % 5}\t3\n" for k in range(20)))
    for part in ("valid", "test"):
        (folder / f"parts.{part}.inter").write_text("user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n")

    def config(**options):
        return Config(model="MF", dataset="parts", command_line=False, config_dict=dict(
            data_path=str(tmp_path), benchmark_filename=["train", "valid", "test"], load_col=None, **options))

    with pytest.raises(DataError, match=r"parts.valid.inter: loads the fields user_id:token, item_id:token, but "
                                        r".*parts.train.inter loads user_id:token, item_id:token, rating:float"):
        check_dataset_files(config())
    unloaded = config(unload_col={"inter": ["rating"]})
    check_dataset_files(unloaded)
    assert list(create_dataset(unloaded).inter_feat.columns) == ["user_id", "item_id"]
    (folder / "parts.valid.inter").unlink()
    (folder / "parts.valid.inter").mkdir()
    with pytest.raises(DataError, match=r"parts.valid.inter is a folder, not an atomic file"):
        check_dataset_files(config())


def test_a_folder_named_as_the_inter_file_is_named_a_folder(tmp_path):
    """It was reported as a missing dataset ("Dataset 'q' not found: missing .../q.inter"), with the folder there."""
    from recbole_hnlm.data_checks import check_dataset_files

    (tmp_path / "q" / "q.inter").mkdir(parents=True)
    with pytest.raises(DataError, match=r"q.inter is a folder, not an atomic file"):
        check_dataset_files(Config(model="MF", dataset="q", command_line=False, config_dict=dict(
            data_path=str(tmp_path))))


def test_labeled_evaluation_needs_a_label_field(fast_config):
    """Value metrics in mode 'labeled' without a label field (no threshold, no label column) trained an epoch, then
    failed with KeyError 'label' (RecBole's collector); with a threshold the field exists and the check passes."""
    from recbole_hnlm.data_checks import check_label_field
    from recbole_hnlm.quick_start import read_dataset

    labeled = {**fast_config, "eval_args": {"mode": "labeled"}, "metrics": ["AUC"], "valid_metric": "AUC"}
    with pytest.raises(DataError, match="mode 'labeled' .valid, test. evaluates the label field 'label', which "
                                        "dataset 'ml-slice' does not have"):
        run_recbole_hnlm(model="MF", config_dict=labeled)
    config = Config(model="MF", dataset="ml-slice", command_line=False,
                    config_dict={**labeled, "threshold": {"rating": 4}})
    check_label_field(config, read_dataset(config))


def test_labeled_evaluation_reads_the_label_field_the_config_names(fast_config, tmp_path):
    """A dataset with its own label column (``LABEL_FIELD: click``) passes the check; a config naming a column the
    dataset lacks does not."""
    from recbole_hnlm.data_checks import check_label_field
    from recbole_hnlm.quick_start import read_dataset

    folder = tmp_path / "clicks"
    folder.mkdir()
    rows = [f"{u}\t{(u + k) % 40}\t{(u + k) % 2}.0" for u in range(30) for k in range(8)]
    (folder / "clicks.inter").write_text("user_id:token\titem_id:token\tclick:float\n" + "\n".join(rows) + "\n")
    labeled = {**fast_config, "dataset": "clicks", "data_path": str(tmp_path), "eval_args": {"mode": "labeled"},
               "metrics": ["AUC"], "valid_metric": "AUC", "LABEL_FIELD": "click",
               "load_col": {"inter": ["user_id", "item_id", "click"]}}
    config = Config(model="MF", dataset="clicks", command_line=False, config_dict=labeled)
    check_label_field(config, read_dataset(config))
    config = Config(model="MF", dataset="clicks", command_line=False, config_dict={**labeled, "LABEL_FIELD": "like"})
    with pytest.raises(DataError, match="evaluates the label field 'like', which dataset 'clicks' does not have"):
        check_label_field(config, read_dataset(config))


def test_grid_cells_check_the_read_dataset_before_training(fast_config, tmp_path):
    """Grid cells run the read dataset's checks too: labeled mode without a label field trained an epoch and then
    failed with KeyError 'label'; a cut-off above the number of items failed after training likewise."""
    from recbole_hnlm.benchmark.runner import Cell, run_cell

    options = {key: fast_config[key] for key in ("data_path", "epochs", "train_batch_size", "show_progress", "state",
                                                 "use_gpu")}
    labeled = {**options, "eval_args": {"mode": "labeled"}, "metrics": ["AUC"], "valid_metric": "AUC"}
    with pytest.raises(DataError, match="evaluates the label field 'label', which dataset 'ml-slice' does not have"):
        run_cell(Cell("MF", "RNS", 1), "ml-slice", str(tmp_path / "grid"), config_dict=labeled)
    data_path = write_dataset(tmp_path, "twelve", [(u, (u + k) % 12) for u in range(30) for k in range(8)])
    with pytest.raises(DataError, match="has 12 items, fewer than the largest cut-off topk = 20"):
        run_cell(Cell("MF", "RNS", 1), "twelve", str(tmp_path / "grid"),
                 config_dict={**options, "data_path": data_path})


def test_fewer_items_than_the_largest_cutoff(fast_config, tmp_path):
    data_path = write_dataset(tmp_path, "twelve", [(u, (u + k) % 12) for u in range(30) for k in range(8)])
    config = {**fast_config, "dataset": "twelve", "data_path": data_path}
    with pytest.raises(DataError, match="has 12 items, fewer than the largest cut-off topk = 20"):
        run_recbole_hnlm(model="LightGCN", config_dict=config)
    result = run_recbole_hnlm(model="LightGCN", config_dict={**config, "topk": [5], "valid_metric": "NDCG@5",
                                                              "epochs": 1})
    assert set(result["test_result"]) == {"recall@5", "ndcg@5"}


ITEM_CASES = {
    "latin1": ("item_id:token\tmovie_title:token_seq\ni1\tCaf\u00e9\n".encode("latin-1"), "is not utf-8 text"),
    "bom": ("\ufeffitem_id:token\tmovie_title:token_seq\ni1\tHeat\n".encode("utf-8"), "starts with a byte-order mark"),
    "no_types": (b"item_id\tmovie_title\ni1\tHeat\n", "header field 'item_id' is not 'name:type'"),
    "no_id": (b"iid:token\tmovie_title:token_seq\ni1\tHeat\n", "no 'item_id' field in the header"),
    "quote": (b'item_id:token\tmovie_title:token_seq\ni1\t"Weird Al" Yankovic\n', ":2: a double quote that RecBole's"),
    # RecBole stopped with "max() arg is an empty sequence"
    "header_only": (b"item_id:token\tmovie_title:token_seq\n", "has a header but no rows"),
    # RecBole dropped the row as a missing id (the item lost its features)
    "na_id": (b"item_id:token\tmovie_title:token_seq\ni1\tHeat\nNA\tFargo\n", ":3: 'item_id' is 'NA', which"),
}


@pytest.mark.parametrize("case", sorted(ITEM_CASES))
def test_a_loaded_item_file_is_checked_before_recbole_reads_it(fast_config, tmp_path, case):
    """RecBole stopped on these with a raw UnicodeDecodeError or "iid_field must be loaded if item_feat is loaded";
    a .item file that load_col leaves out is not read, so it is not checked either."""
    data_path = write_dataset(tmp_path, "side", [(u, (u + k) % 40) for u in range(30) for k in range(10)])
    content, expected = ITEM_CASES[case]
    item_path = os.path.join(data_path, "side", "side.item")
    with open(item_path, "wb") as f:
        f.write(content)
    config = {**fast_config, "dataset": "side", "data_path": data_path, "epochs": 1, "topk": [5],
              "valid_metric": "NDCG@5", "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]}}
    with pytest.raises(DataError) as error:
        run_recbole_hnlm(model="MF", config_dict=config)
    assert item_path in str(error.value) and expected in str(error.value)
    result = run_recbole_hnlm(model="MF", config_dict={**config, "load_col": {"inter": ["user_id", "item_id"]}})
    assert "ndcg@5" in result["test_result"]


def _duplicate_warnings(caplog):
    return [r.getMessage() for r in caplog.records if "(user, item) pairs occur on more than one row" in r.getMessage()]


def test_duplicate_interactions_are_a_warning_naming_file_count_and_option(fast_config, tmp_path, caplog):
    from recbole.data import create_dataset

    from recbole_hnlm.data_checks import check_duplicate_interactions

    pairs = [(u, (u + k) % 40) for u in range(30) for k in range(8)]
    data_path = write_dataset(tmp_path, "dups", pairs + pairs[:5] + pairs[:2] + pairs[-1:])  # 6 pairs, 8 extra rows
    settings = {**fast_config, "dataset": "dups", "data_path": data_path}
    config = Config(model="MF", dataset="dups", config_dict=settings, command_line=False)
    caplog.set_level("WARNING")
    check_duplicate_interactions(config, create_dataset(config))
    inter = os.path.join(data_path, "dups", "dups.inter")
    assert _duplicate_warnings(caplog) == [
        f"{inter}: 6 (user, item) pairs occur on more than one row (8 extra of 248 rows). RecBole keeps them, so they "
        "count several times in training and a pair can be both a training and a test item, which RecBole's full "
        "ranking does not mask (an easy hit). Set rm_dup_inter: first "
        "(or --rm_dup_inter=first) to keep only the first of each (the earliest when a timestamp field is loaded, "
        "load_col)."]
    caplog.clear()
    deduplicated = Config(model="MF", dataset="dups", config_dict={**settings, "rm_dup_inter": "first"},
                          command_line=False)
    check_duplicate_interactions(deduplicated, create_dataset(deduplicated))
    clean = Config(model="MF", dataset=fast_config["dataset"], config_dict=fast_config, command_line=False)
    check_duplicate_interactions(clean, create_dataset(clean))
    assert _duplicate_warnings(caplog) == []


def test_benchmark_cells_warn_about_duplicate_interactions(fast_config, tmp_path):
    from recbole_hnlm.benchmark.runner import Cell, run_cell

    pairs = [(u, (u + k) % 40) for u in range(30) for k in range(8)]
    data_path = write_dataset(tmp_path, "dups", pairs + pairs[:3])
    settings = {"data_path": data_path, "epochs": 1, "train_batch_size": 1024, "gpu_id": "", "use_gpu": False}
    out = str(tmp_path / "out")
    run_cell(Cell("MF", "RNS", 1), "dups", out, config_dict=settings, saved=False)
    with open(os.path.join(out, "logs", "MF-RNS-seed1.log")) as f:
        assert "3 (user, item) pairs occur on more than one row" in f.read()


def test_llm_stages_warn_about_duplicate_interactions(tmp_path, caplog):
    from recbole_hnlm.llm.__main__ import recbole_split

    pairs = [(u, (u + k) % 40) for u in range(30) for k in range(8)]
    data_path = write_dataset(tmp_path, "dups", pairs + pairs[:4])
    caplog.set_level("WARNING")
    train, _ = recbole_split("dups", data_path, None, "LightGCN", {"gpu_id": "", "use_gpu": False})
    assert [m.split(": ", 1)[1][:50] for m in _duplicate_warnings(caplog)] == [
        "4 (user, item) pairs occur on more than one row (4"]


def test_an_empty_validation_split_is_an_error(fast_config, tmp_path):
    data_path = write_dataset(tmp_path, "single", [(u, u % 30) for u in range(60)])  # one interaction per user
    config = {**fast_config, "dataset": "single", "data_path": data_path}
    with pytest.raises(DataError, match="validation split of dataset 'single' is empty: RecBole splits each user's"):
        run_recbole_hnlm(model="LightGCN", config_dict=config)


def test_a_time_ordered_split_without_the_time_field_is_one_error(fast_config):
    """RecBole's ValueError printed the whole interaction table (about 140 lines) and named no option."""
    settings = {**fast_config, "load_col": {"inter": ["user_id", "item_id"]},
                "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}}
    with pytest.raises(DataError, match=r"the split \(eval_args order 'TO'\) sorts by field 'timestamp' "
                                        r"\(TIME_FIELD\), which is not loaded") as raised:
        run_recbole_hnlm(model="MF", config_dict=settings)
    assert len(str(raised.value)) < 400
    with pytest.raises(DataError, match=r"sorts by field 'None' \(TIME_FIELD\)"):  # was: TypeError "Wrong type of by"
        run_recbole_hnlm(model="MF", config_dict={**settings, "TIME_FIELD": None})


@pytest.mark.parametrize("ratios", [[0.8, 0.2], [0.7, 0.1, 0.1, 0.1], "0.8,0.1,0.1", [0.8, -0.1, 0.3], [0, 0, 0],
                                    None])
def test_a_random_split_needs_three_ratios(ratios):
    """{'RS': [0.8, 0.2]} ended in RecBole's 'not enough values to unpack' traceback after the dataset loaded."""
    eval_args = {"split": {"RS": ratios}, "order": "RO", "group_by": "user", "mode": "full"}
    with pytest.raises(ConfigError, match=r"split \{'RS': .*\}: RS takes three ratios \[train, valid, test\]"):
        build_config(eval_args=eval_args)
    assert build_config(eval_args=dict(eval_args, split={"RS": [8, 1, 1]}))["eval_args"]["split"] == {"RS": [8, 1, 1]}


@pytest.mark.parametrize("options", [{"nproc": 2}, {"nproc": 2.0}, {"world_size": 2, "local_rank": 0},
                                     {"local_rank": 0, "nproc": 1}])
def test_multi_process_training_is_refused(options):
    """--nproc=2 trained in one process without a word; --world_size=2 ended in RecBole's bare AssertionError."""
    with pytest.raises(ConfigError, match="trains in one process"):
        build_config(**options)
    assert build_config(nproc=1, world_size=-1)["nproc"] == 1  # what old checkpoints store


def test_random_split_ratios_may_be_any_sequence_of_three():
    import numpy as np

    eval_args = {"split": {"RS": np.array([0.8, 0.1, 0.1])}, "order": "RO", "group_by": "user", "mode": "full"}
    assert list(build_config(eval_args=eval_args)["eval_args"]["split"]["RS"]) == [0.8, 0.1, 0.1]


def test_the_plugins_own_errors_in_config_are_not_taken_for_recboles(monkeypatch):
    """A KeyError of the plugin's own Config code came out as "RecBole's Config failed on these options"."""
    def broken(self, *args, **kwargs):
        raise KeyError("a plugin bug")

    monkeypatch.setattr(Config, "_load_plugin_yaml", broken)
    with pytest.raises(KeyError, match="a plugin bug"):
        build_config()
    with pytest.raises(ConfigError, match="Set the model with --model=NAME"):
        Config(dataset="ml-100k", config_dict={}, command_line=False)
    with pytest.raises(ConfigError, match="Set the dataset with --dataset=NAME"):  # was a bare KeyError
        Config(model="MF", config_dict={}, command_line=False)


@pytest.mark.parametrize("split, empty", [({"LS": "valid_only"}, "test"), ({"RS": [0.9, 0.0, 0.1]}, "validation")])
def test_a_split_option_that_leaves_a_split_empty_is_named(fast_config, split, empty):
    """The message advised a k-core filter, which cannot help when eval_args gives the split no share."""
    settings = {**fast_config, "eval_args": {"split": split, "order": "RO", "group_by": "user", "mode": "full"}}
    with pytest.raises(DataError, match=f"The {empty} split of dataset 'ml-slice' is empty: eval_args split .* gives "
                                        "it no interaction"):
        run_recbole_hnlm(model="MF", config_dict=settings)


@pytest.mark.parametrize("options, message", [
    ({"user_inter_num_interval": "[1000,inf)"}, "Dataset 'ml-slice': the interaction filters leave no interactions "
                                                "(user_inter_num_interval='[1000,inf)'): loosen them."),
    ({"val_interval": {"rating": "[3,inf)"}, "load_col": {"inter": ["user_id", "item_id"]}},
     "Dataset 'ml-slice': val_interval names field 'rating', which is not loaded: add it to load_col (now "
     "{'inter': ['user_id', 'item_id']}) or drop it from that option."),
    ({"threshold": {"rating": 4}, "load_col": {"inter": ["user_id", "item_id"]}}, "threshold names field 'rating'"),
])
def test_recbole_dataset_errors_name_the_options(fast_config, options, message):
    """Filters that leave nothing, and options naming a field that load_col leaves out, were RecBole tracebacks
    ("Some feat is empty", "Field [rating] not defined in dataset")."""
    with pytest.raises(DataError) as error:
        run_recbole_hnlm(model="MF", config_dict={**fast_config, **options})
    assert message in str(error.value)


def test_options_recbole_takes_but_does_not_apply_are_warned(caplog):
    from recbole_hnlm.data_checks import warn_unapplied_options

    caplog.set_level("WARNING")
    presplit = ["train", "valid", "test"]
    warn_unapplied_options(build_config(benchmark_filename=presplit))
    warn_unapplied_options(build_config(user_inter_num_interval="[10,inf)", rm_dup_inter="first"))
    assert caplog.text == ""
    warn_unapplied_options(build_config(benchmark_filename=presplit, user_inter_num_interval="[10,inf)",
                                        rm_dup_inter="first"))
    assert "benchmark_filename: RecBole reads pre-split files as they are, so user_inter_num_interval='[10,inf)', " \
           "rm_dup_inter='first' are not applied." in caplog.text
    caplog.clear()
    warn_unapplied_options(build_config(threshold={"rating": 4}))
    assert "threshold={'rating': 4} gives each interaction a 0/1 label, which the general recommenders and their " \
           "samplers never read" in caplog.text


def test_recbole_pickles_are_never_loaded(fast_config, tmp_path):
    checkpoint_dir = tmp_path / "saved"
    checkpoint_dir.mkdir()
    with pytest.raises(ConfigError, match="'dataset_save_path' makes RecBole load a pickle"):
        run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "dataset_save_path": str(tmp_path / "d.pth")})
    pickle_file = checkpoint_dir / f"{fast_config['dataset']}-Dataset.pth"
    pickle_file.write_bytes(b"not loaded")
    with pytest.raises(DataError, match="RecBole would unpickle .*-Dataset.pth"):
        run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "checkpoint_dir": str(checkpoint_dir)})


def test_run_script_exit_codes(tmp_path, capsys):
    assert main(["--model=LightGCN", "--dataset=ml-100k", "--epochs", "3"]) == 2
    assert "option --epochs has no value" in capsys.readouterr().err
    assert main(["--model=LightGCN", "--dataset=ml-100k", "--epochs=abc"]) == 2
    assert "'epochs' must be an integer >= 1, got 'abc'" in capsys.readouterr().err
    data_path = write_dataset(tmp_path, "noheader", [])
    with open(os.path.join(data_path, "noheader", "noheader.inter"), "w") as f:
        f.write("user_id\titem_id\n1\t2\n")
    assert main(["--model=LightGCN", "--dataset=noheader", f"--data_path={data_path}"]) == 2
    assert "noheader.inter: header field 'user_id' is not 'name:type'" in capsys.readouterr().err


def test_missing_presplit_ml100k_explains_the_bundled_example(tmp_path, capsys):
    """A split imported as ml-100k is never read: RecBole maps the name to its bundled copy. The error said to pass
    --data_path, which was given."""
    argv = ["--model=MF", "--dataset=ml-100k", f"--data_path={tmp_path}",
            "--benchmark_filename=['train','valid','test']"]
    assert main(argv) == 2
    assert "ml-100k is RecBole's bundled example" in capsys.readouterr().err


def test_llm_command_line_exit_codes(tmp_path, capsys):
    from recbole_hnlm.llm.__main__ import main as llm_main

    assert llm_main(["profiles", "--dataset", "nosuch", "--data_path", str(tmp_path)]) == 2
    assert "Dataset 'nosuch' not found" in capsys.readouterr().err
    # a generator that cannot load: were chunk_size 0 accepted, the stage would stop there, not load SmolLM2
    assert llm_main(["profiles", "--dataset", "ml-100k", "--split", "all", "--hnlm_chunk_size=0",
                     f"--hnlm_generator={tmp_path / 'no-such-model'}"]) == 2
    assert "hnlm_chunk_size must be a positive integer, got 0" in capsys.readouterr().err


def test_ctrl_c_ends_the_run_script_with_one_line_and_status_130(tmp_path):
    import signal
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_hnlm.py")
    process = subprocess.Popen([sys.executable, script, "--model=MF", "--dataset=ml-100k", "--epochs=500",
                                "--eval_step=500", "--show_progress=False", f"--checkpoint_dir={tmp_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                               # a test run started in the background of a shell inherits SIGINT ignored, and Python
                               # then installs no KeyboardInterrupt handler: give the run the terminal's default
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        for line in process.stdout:  # interrupt once training runs, as a user would
            seen.append(line)
            if "training [" in line:
                break
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output[-2000:]
    assert "interrupted:" in output and "Traceback" not in output
    # a redirected console shows RecBole's lines without colour codes (colorama, which RecBole's init_logger starts,
    # strips them; the LLM command line and the grid's cells strip them themselves: recbole_hnlm/log_output.py)
    output = "".join(seen) + output
    assert "[Training]: train_batch_size" in output and "INFO  epoch 0 training [" in output
    assert "\x1b[" not in output


def test_multi_character_separators_split_as_pandas_splits_them(tmp_path, caplog):
    """pandas takes a longer separator as a regular expression over the stripped line: trailing spaces are not part
    of an id (the check warned about them), and '||' does not split where it seems to (the check passed the file)."""
    path = tmp_path / "colons.inter"
    path.write_text("user_id:token::item_id:token\nu1::i1  \nu2::i2\n")
    caplog.set_level("WARNING")
    check_inter_header(str(path), build_config(field_separator="::"))
    assert "spaces around it" not in caplog.text
    path.write_text("user_id:token||item_id:token\nu1||i1\n")
    with pytest.raises(DataError, match="fields, but the header"):
        check_inter_header(str(path), build_config(field_separator="||"))


def test_the_run_script_refuses_what_recbole_would_drop_or_misread(fast_config, capsys):
    """A second config file outside --config_files' quotes was dropped without a word (only RecBole's 'will not be
    used' print), and --train-batch-size=5 was warned about and the run trained with the default; docs/usage.md says
    both are refused, as the other command lines refuse them."""
    common = ["--model=MF", f"--dataset={fast_config['dataset']}", f"--data_path={fast_config['data_path']}",
              "--epochs=1"]
    assert main(common + ["--config_files", "a.yaml", "b.yaml"]) == 2
    err = capsys.readouterr().err
    assert "error: unrecognised argument 'b.yaml': settings are written --key=value (several config files go in one " \
           "quoted --config_files: --config_files='a.yaml b.yaml')" in err
    assert main(common + ["--train-batch-size=5"]) == 2
    assert "error: unrecognised argument '--train-batch-size=5': option names have underscores: " \
           "--train_batch_size" in capsys.readouterr().err
    assert main(common + ["--keep-seen=1", "--train_batch_size={[1]: 2}"]) == 2  # the first refusal is named
    assert "'--keep-seen=1'" in capsys.readouterr().err
    assert main(common + ["LightGCN"]) == 2  # a stray word that is no file: no config-file hint
    err = capsys.readouterr().err
    assert "unrecognised argument 'LightGCN'" in err and "config_files" not in err
    assert main(common + ["--checkpoint_dir=/runs/seed=1"]) == 2  # RecBole splits on every '=' and drops it
    assert "error: option --checkpoint_dir: its value holds '='" in capsys.readouterr().err


def _config(tmp_path, **options):
    return Config(model="MF", dataset="toy", command_line=False, config_dict=dict(options, data_path=str(tmp_path)))


def test_the_side_files_a_run_loads_are_recorded_with_its_inter_file(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    for suffix in ("inter", "user", "item", "train.inter", "valid.inter", "test.inter"):
        (folder / f"toy.{suffix}").write_text("x:token\n1\n")
    path = lambda suffix: os.path.join(str(folder), f"toy.{suffix}")  # noqa: E731
    # load_col None: RecBole loads every atomic file it finds
    assert atomic_files_read(_config(tmp_path, load_col=None)) == [path("inter"), path("user"), path("item")]
    # load_col naming the item file: the item attributes change the run (an .item edit must stop a resume)
    assert atomic_files_read(_config(tmp_path, load_col={"inter": ["user_id", "item_id"], "item": ["item_id"]})) == [
        path("inter"), path("item")]
    assert atomic_files_read(_config(tmp_path, load_col={"inter": ["user_id", "item_id"]})) == [path("inter")]
    # HNLMRec's LLM stage reads the .item file for its prompts whether RecBole loads it or not
    assert atomic_files_read(_config(tmp_path, sampler="HNLMRec", load_col={"inter": ["user_id", "item_id"]})) == [
        path("inter"), path("item")]
    assert atomic_files_read(_config(tmp_path, sampler="HNLMRec", load_col=None)) == [
        path("inter"), path("user"), path("item")]
    # a pre-split dataset: every part is read
    assert atomic_files_read(_config(tmp_path, load_col={"inter": ["user_id", "item_id"]},
                                     benchmark_filename=["train", "valid", "test"])) == [
        path("train.inter"), path("valid.inter"), path("test.inter")]


def test_pandas_na_strings_are_all_of_pandas_defaults():
    """The check's list is pandas' own default na_values (less the empty field): a value dropped from it is an id
    RecBole drops again without a word (mutant: '-1.#IND' removed; the existing test writes the list's own values,
    so it passed)."""
    from pandas._libs.parsers import STR_NA_VALUES

    from recbole_hnlm.data_checks import PANDAS_NA_STRINGS

    assert PANDAS_NA_STRINGS == set(STR_NA_VALUES) - {""}


def test_several_empty_ids_are_judged_by_the_first_empty_user_and_the_last_empty_item(tmp_path):
    """RecBole 1.2.1 shifts every item-drop after the first dropped user row: with empty users on lines 3 and 6 and
    an empty item on line 5 it keeps line 5 and drops line 7; with empty items on lines 2 and 6 and an empty user on
    line 4 it drops line 7 for line 6 (checked against RecBole). Mutants: the last empty user / the first empty
    item."""
    path = tmp_path / "gaps.inter"
    rows = [[f"u{k % 3}", f"i{k}"] for k in range(12)]
    two_users = [list(row) for row in rows]
    two_users[1][0] = two_users[4][0] = two_users[3][1] = ""
    path.write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in two_users))
    with pytest.raises(DataError, match=re.escape("empty 'user_id' on line 3 and empty 'item_id' on line 5")):
        check_inter_header(str(path), build_config())
    two_items = [list(row) for row in rows]
    two_items[0][1] = two_items[4][1] = two_items[2][0] = ""
    path.write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in two_items))
    with pytest.raises(DataError, match=re.escape("empty 'user_id' on line 4 and empty 'item_id' on line 6")):
        check_inter_header(str(path), build_config())


def test_a_line_with_both_ids_empty_or_a_blank_id_drops_no_other_row(tmp_path, caplog):
    """RecBole drops a line with both ids empty with the user rows (it is gone before the item rows are looked up),
    and reads an id of one space as that id (not missing): both load the right rows (checked against RecBole).
    Mutants: '>=' between the lines; an id of spaces counted as empty."""
    path = tmp_path / "blank.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\nu1\ti1\t1\nu2\ti2\t2\n\t\t3\nu3\ti3\t4\n")
    check_inter_header(str(path), build_config(load_col={"inter": ["user_id", "item_id", "rating"]}))
    path.write_text("user_id:token\titem_id:token\nu1\ti1\n \ti2\nu2\ti3\nu3\t\nu3\ti4\n")
    with caplog.at_level(logging.WARNING):
        check_inter_header(str(path), build_config())
    assert "with spaces around it" in caplog.text


def test_load_col_star_loads_every_field_and_is_not_warned_about(tmp_path, caplog):
    """RecBole reads load_col {'inter': '*'} as every column; the warning took the string as a list of field names
    ("load_col['inter'] names '*'") in a mutant without the list check."""
    path = tmp_path / "star.inter"
    path.write_text("user_id:token\titem_id:token\nu1\ti1\n")
    item = tmp_path / "star.item"
    item.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\n")
    with caplog.at_level(logging.WARNING):
        check_inter_header(str(path), build_config(load_col={"inter": "*"}))
        check_side_file(str(item), "ITEM_ID_FIELD", build_config(load_col={"inter": ["user_id", "item_id"],
                                                                            "item": "*"}))
    assert not [r for r in caplog.records if "load_col[" in r.getMessage()]


def test_a_field_named_twice_with_two_types_is_an_error(tmp_path):
    """'title:token_seq' and 'title:token' are one field 'title' to the LLM stage (mutant: full 'name:type' strings
    compared, which passed it)."""
    path = tmp_path / "types.item"
    path.write_text("item_id:token\ttitle:token_seq\ttitle:token\ni1\tHeat\tHeat\n")
    with pytest.raises(DataError, match="names field 'title' twice"):
        check_records(str(path), quoted=False)


def test_only_the_id_field_is_read_as_an_id(tmp_path):
    """Without id_field no value is an id ('None' is an Amazon category); a short line (pandas fills its last fields)
    without the id column is no IndexError. Mutants: column 0 taken as the id; the length check dropped."""
    path = tmp_path / "plain.item"
    path.write_text("categories:token_seq\titem_id:token\nNone\ti1\n")
    assert check_records(str(path), quoted=False)
    user = tmp_path / "short.user"
    user.write_text("age:float\tuser_id:token\n30\tu1\n40\n")
    check_side_file(str(user), "USER_ID_FIELD", build_config(load_col={"inter": ["user_id", "item_id"],
                                                                        "user": ["user_id", "age"]}))


def test_na_strings_with_spaces_around_them_are_ids(tmp_path):
    """pandas (RecBole's python engine) reads ' NA' as the text ' NA', not as missing (checked): the side file is not
    refused (mutant: the value stripped before the lookup)."""
    item = tmp_path / "spaced.item"
    item.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\n NA\tFargo\n")
    check_side_file(str(item), "ITEM_ID_FIELD", build_config(load_col={"inter": ["user_id", "item_id"],
                                                                        "item": ["item_id", "title"]}))


def test_the_quote_hint_is_given_only_for_lines_with_quotes(tmp_path):
    """A stray tab in an unloaded file is one field too many, and the error's hint about double quotes is about
    quotes only (mutant: the hint on every line of too many fields)."""
    path = tmp_path / "tab.item"
    path.write_text("item_id:token\ttitle:token_seq\ni1\tHeat\tagain\n")
    with pytest.raises(DataError) as error:
        check_records(str(path), quoted=False)
    assert "3 fields" in str(error.value) and "Double quotes" not in str(error.value)


def test_a_header_only_side_file_names_the_load_col_without_it(tmp_path):
    """The remedy is a load_col without the side file: both id fields of the interactions (mutant: the user id
    dropped from the example)."""
    item = tmp_path / "empty.item"
    item.write_text("item_id:token\ttitle:token_seq\n")
    with pytest.raises(DataError) as error:
        check_side_file(str(item), "ITEM_ID_FIELD", build_config(load_col={"inter": ["user_id", "item_id"],
                                                                            "item": ["item_id"]}))
    assert "give load_col a dict without 'item' (e.g. \"--load_col={'inter': ['user_id', 'item_id']}\")" in \
        str(error.value)
    columns = ["user_id", "item_id", "rating", "timestamp"]  # the example keeps the user's own inter columns
    with pytest.raises(DataError) as error:
        check_side_file(str(item), "ITEM_ID_FIELD", build_config(load_col={"inter": columns, "item": ["item_id"]}))
    assert f"--load_col={{'inter': {columns!r}}}" in str(error.value), str(error.value)


def test_a_line_of_separators_only_is_a_row_of_missing_ids(tmp_path):
    """pandas skips an empty line, but reads a line holding only the separator ('\\t') as a row whose ids are
    missing: RecBole 1.2.1 then drops other rows for a later empty item id (checked: line 7 dropped, line 6 kept
    with a [PAD] item), and keeps a ([PAD], [PAD]) interaction in a pre-split file. The check passed both."""
    path = tmp_path / "tabs.inter"
    path.write_text("user_id:token\titem_id:token\nu1\ti1\n\t\nu2\ti2\nu3\t\nu4\ti4\n")
    with pytest.raises(DataError, match=re.escape("empty 'user_id' on line 3 and empty 'item_id' on line 5")):
        check_inter_header(str(path), build_config())


LOADED_SIDE_FILES = {"inter": ["user_id", "item_id"], "user": ["user_id", "age"], "item": ["item_id", "vec"]}


@pytest.mark.parametrize("suffix, text, named", [
    ("user", "user_id:token\tage:float\nu1\t19\nu2\ttwenty\n", "side.user:3: field 'age' is 'twenty'"),
    ("item", "item_id:token\tvec:float_seq\ni1\t0.1 0.2\ni2\t0.1 x\n", "side.item:3: field 'vec' is 'x'"),
])
def test_a_non_number_in_a_loaded_float_field_of_a_side_file_is_named(tmp_path, suffix, text, named):
    """Only the .inter file's float fields were checked: RecBole then failed with "Unable to convert column
    age:float to type float64" (a traceback naming no line). A field load_col leaves out is not read."""
    path = tmp_path / f"side.{suffix}"
    path.write_text(text)
    key, id_field = ("USER_ID_FIELD", "user_id") if suffix == "user" else ("ITEM_ID_FIELD", "item_id")
    with pytest.raises(DataError, match=re.escape(named)):
        check_side_file(str(path), key, build_config(load_col=LOADED_SIDE_FILES))
    check_side_file(str(path), key, build_config(load_col=dict(LOADED_SIDE_FILES, **{suffix: [id_field]})))


def test_a_carriage_return_inside_a_line_is_named(tmp_path):
    """pandas ends a row at a lone '\\r': a title holding one split its item in two (a phantom item RecBole ranks,
    and a cut title in the prompts) without a word, and in .inter the error named the line after it. Files whose
    lines all end in '\\r\\n' or all in '\\r' read as RecBole reads them."""
    item = tmp_path / "cr.item"
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tMovie\rWith CR\ni3\tFargo\n")
    with pytest.raises(DataError, match=r"cr.item:3: a carriage return"):
        check_records(str(item))
    with pytest.raises(DataError, match=r"cr.item:3: a carriage return"):
        check_records(str(item), quoted=False)
    for ending in (b"\r\n", b"\r"):
        item.write_bytes(ending.join([b"item_id:token\ttitle:token_seq", b"i1\tHeat", b"i2\tFargo", b""]))
        assert check_records(str(item))


def test_a_folder_in_place_of_an_atomic_file_is_named(tmp_path):
    """The LLM stage's reader raised IsADirectoryError (HNLMRec's runs and `llm ... --split all`)."""
    from recbole_hnlm.llm.dataset_text import _read_atomic

    (tmp_path / "fz.item").mkdir()
    with pytest.raises(DataError, match="fz.item is a folder, not an atomic file"):
        _read_atomic(str(tmp_path / "fz.item"))
