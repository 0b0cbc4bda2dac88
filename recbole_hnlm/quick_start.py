"""Run a backbone with a negative sampler end to end: the plugin's counterpart of RecBole's ``run_recbole``.

It never imports ``recbole.quick_start`` (which pulls in ray) and builds the run from ``recbole.config``,
``recbole.data`` and ``recbole.utils``::

    python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF --dataset=ml-100k
    python run_recbole_hnlm.py --model=LightGCN --sampler=DNS --dataset=yelp2018 --data_path=/data/atomic --dns_topn=2
"""
import argparse
import glob
import logging
import os
import sys
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_hnlm.config import Config
from recbole_hnlm.config_checks import unknown_option_messages
from recbole_hnlm.determinism import deterministic_algorithms
from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.utils import get_model, get_sampler, get_trainer

#: Atomic-file suffixes RecBole can split into train/valid/test on its own.
_SPLIT_SUFFIXES = ("inter",)


def check_dataset_files(config):
    """Fail fast, naming the paths searched, when a dataset's atomic files are missing (RecBole would otherwise
    try to download it)."""
    dataset, data_path = config["dataset"], config["data_path"]
    names = [f"{dataset}.{suffix}" for suffix in _SPLIT_SUFFIXES]
    if config["benchmark_filename"]:
        names = [f"{dataset}.{part}.inter" for part in config["benchmark_filename"]]
    missing = [os.path.join(data_path, name) for name in names if not os.path.isfile(os.path.join(data_path, name))]
    if missing:
        raise FileNotFoundError(
            f"Dataset '{dataset}' not found: missing {', '.join(missing)}. Put the RecBole atomic files there, or "
            f"pass --data_path=DIR where DIR/{dataset}/{dataset}.inter exists (ml-100k needs no files: it ships "
            "with RecBole)."
        )
    for name in names:
        check_inter_header(os.path.join(data_path, name), config)
    check_no_recbole_pickles(config)


def check_no_recbole_pickles(config):
    """RecBole unpickles ``dataset_save_path``/``dataloaders_save_path``, or ``<checkpoint_dir>/<dataset>-*.pth`` when
    such files exist; recbole_hnlm never loads a pickle, so these stop the run instead."""
    for key in ("dataset_save_path", "dataloaders_save_path"):
        if config[key]:
            raise ConfigError(f"Option '{key}' makes RecBole load a pickle; recbole_hnlm loads none. Leave it unset: "
                              "the dataset is rebuilt from the atomic files.")
    pattern = os.path.join(config["checkpoint_dir"], f"{glob.escape(config['dataset'])}-*.pth")
    found = sorted(glob.glob(pattern))
    if found:
        raise DataError(f"RecBole would unpickle {found[0]} (a saved dataset or dataloader); recbole_hnlm never loads "
                        f"a pickle. Move or delete {', '.join(found)}.")


#: Field types of RecBole's atomic files (``recbole.utils.FeatureType``).
_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def check_inter_header(path, config):
    """Check an ``.inter`` file's header before RecBole parses it: ``name:type`` fields split by
    ``field_separator``, the user and item id fields present as ``token``, and at least one interaction line.

    Raises:
        DataError: naming the file, the field and what to write instead.
    """
    separator = config["field_separator"] or "\t"
    with open(path, encoding=config["encoding"] or "utf-8") as f:
        header = f.readline().rstrip("\r\n")
        has_rows = any(line.strip() for line in f)
    example = f"user_id:token{separator}item_id:token"
    if not header.strip():
        raise DataError(f"{path} is empty: its first line must be a header such as {example!r}.")
    fields = {}
    for column in header.split(separator):
        name, colon, kind = column.partition(":")
        if not colon or kind not in _ATOMIC_TYPES:
            hint = (" Fields must be separated by field_separator (a tab by default)."
                    if any(sep in header for sep in (",", ";", " ")) and separator not in header else "")
            raise DataError(f"{path}: header field {column!r} is not 'name:type' with a type in {_ATOMIC_TYPES}."
                            f"{hint} Example header: {example!r}.")
        fields[name] = kind
    for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
        name = config[key]
        if name not in fields:
            raise DataError(f"{path}: no '{name}' field in the header {header!r} ({key} = {name!r}; rename the "
                            f"column or set --{key}=<its name>).")
        if fields[name] != "token":
            raise DataError(f"{path}: field '{name}' is '{name}:{fields[name]}'; ids must be '{name}:token'.")
    if not has_rows:
        raise DataError(f"{path} has a header but no interactions.")


def check_topk_fits(config, dataset):
    """Full ranking needs more items than the largest cut-off (RecBole fails only after the first epoch)."""
    largest, items = max(config["topk"]) if isinstance(config["topk"], list) else config["topk"], dataset.item_num - 1
    if largest > items:
        small = min(10, items)
        raise DataError(f"Dataset '{config['dataset']}' has {items} items, fewer than the largest cut-off topk = "
                        f"{largest}: lower it (e.g. --topk=[{small}] --valid_metric=NDCG@{small}) or use more items.")


def check_splits_not_empty(config, valid_data, test_data):
    """An empty validation or test split would end the run with ``test result: None``."""
    for name, data in (("validation", valid_data), ("test", test_data)):
        if data is not None and len(data.dataset) == 0:
            raise DataError(f"The {name} split of dataset '{config['dataset']}' is empty: RecBole splits each user's "
                            f"interactions by eval_args split {config['eval_args']['split']}, and users with too few "
                            "interactions leave that split empty. Use a dataset with more interactions per "
                            "user (e.g. a k-core filter: --user_inter_num_interval=\"[5,inf)\").")


def split_seed(config) -> int:
    """Seed of the train/valid/test split: ``split_seed`` when set, else the run's ``seed`` (RecBole's behaviour)."""
    return int(config["seed"] if config["split_seed"] is None else config["split_seed"])


def run_recbole_hnlm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    """Train and test ``model`` on ``dataset`` with the configured ``sampler``.

    Args:
        model (str, optional): backbone name; read from the config when ``None``.
        dataset (str, optional): dataset name; read from the config when ``None``.
        config_file_list (list of str, optional): yaml files.
        config_dict (dict, optional): parameters (lower priority than the command line).
        saved (bool): save the best model's checkpoint (safetensors) and test it.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``, ``checkpoint``.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    with deterministic_algorithms(config["use_deterministic_algorithms"]):
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        logger = getLogger()
        logger.info(sys.argv)
        logger.info(config)
        for message in unknown_option_messages(config.unknown_options):
            logger.warning(message)
        if config["dataset"] == "ml-100k" and "data_path" in config.external_config_dict:
            logger.warning(f"ml-100k is RecBole's bundled example: RecBole reads {config['data_path']} and ignores "
                           f"data_path={config.external_config_dict['data_path']!r}. Give your copy another name "
                           "(e.g. ml-100k-local) to use it.")
        check_dataset_files(config)

        init_seed(split_seed(config), config["reproducibility"])
        dataset = create_dataset(config)
        logger.info(dataset)
        check_topk_fits(config, dataset)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        check_splits_not_empty(config, valid_data, test_data)
        sampler_class = get_sampler(config["sampler"])
        sampler_class.prepare(config, dataset, train_data)

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        logger.info(model)

        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

        logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
        logger.info(set_color("test result", "yellow") + f": {test_result}")
        return {
            "best_valid_score": best_valid_score,
            "valid_score_bigger": config["valid_metric_bigger"],
            "best_valid_result": best_valid_result,
            "test_result": test_result,
            "checkpoint": trainer.saved_model_file if saved else None,
        }


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """RecBole-style objective for hyper-parameter tuning: same run, same return value."""
    return run_recbole_hnlm(config_dict=config_dict, config_file_list=config_file_list, saved=saved)


def _log_to_files(message):
    """Write ``message`` to the run's log file (RecBole's file handler) without echoing it on the console."""
    record = logging.makeLogRecord({"name": "recbole_hnlm", "levelno": logging.ERROR, "levelname": "ERROR",
                                    "msg": message})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main(argv=None):
    """Command line entry point; mirrors ``run_recbole.py``: ``--model``, ``--dataset``, ``--sampler``,
    ``--config_files``, and every other ``--key=value`` is read by ``Config`` (values go through ``eval``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default="LightGCN", help="backbone (MF, NGCF, LightGCN, SGL)")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--sampler", "-s", type=str, default=None, help="RNS, DNS, MixGCF, AHNS or HNLMRec")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    args, rest = parser.parse_known_args(argv)
    valueless = [arg for arg in rest if arg.startswith("-") and "=" not in arg]
    if valueless:
        print(f"error: option {valueless[0]} has no value: RecBole options are written --key=value "
              f"(e.g. --epochs=50); only --model, --dataset, --sampler and --config_files also take a space.",
              file=sys.stderr)
        return 2
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    config_dict = {"sampler": args.sampler} if args.sampler else None
    program_argv = sys.argv
    sys.argv = [program_argv[0] if program_argv else "recbole-hnlm"] + argv  # RecBole's Config reads sys.argv
    try:
        run_recbole_hnlm(model=args.model, dataset=args.dataset, config_file_list=config_file_list,
                         config_dict=config_dict)
    except (ConfigError, DataError, FileNotFoundError) as error:
        _log_to_files(f"error: {error}")
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written is left; rerun the command to start the run again (finished LLM "
              "artifacts are reused)", file=sys.stderr)
        return 130
    finally:
        sys.argv = program_argv
    return 0
