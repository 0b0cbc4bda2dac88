"""Command line of the LLM stage.

    python -m recbole_hnlm.llm profiles  --dataset ml-100k [--max_pairs 2000]
    python -m recbole_hnlm.llm negatives --dataset ml-100k [--max_pairs 2000]       # variant semantic
    python -m recbole_hnlm.llm finetune  --dataset ml-100k --hnlm_teacher_path=...  # adapter only
    python -m recbole_hnlm.llm embed     --dataset ml-100k                          # variant finetuned
    python -m recbole_hnlm.llm keys                                                 # list hnlm_* settings

``--data_path`` defaults to RecBole's bundled folder for ml-100k, else ``dataset/``. ``--split recbole`` (default)
takes the training split from RecBole with the given ``--config_files`` (so profiles and negatives never see
validation/test interactions); ``--split all`` uses every interaction. Any ``--hnlm_<key>=<value>`` overrides a
setting. Every stage is resumable: run the same command again after an interruption.
"""
import argparse
import ast
import logging
import os
import sys

from .config import LLMConfig


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(value.lower(), value)


def _default_data_path(dataset: str) -> str:
    import importlib.util

    if dataset == "ml-100k":
        spec = importlib.util.find_spec("recbole")
        return os.path.join(os.path.dirname(spec.origin), "dataset_example")
    return "dataset"


def recbole_train_pairs(dataset: str, data_path: str, config_files, model: str):
    """Training split of RecBole's data preparation, as original-token pairs."""
    try:
        from recbole_hnlm.config import Config
    except ImportError:  # the plugin config is optional here
        from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    from .recbole_pairs import train_pairs_from_dataset

    config = Config(model=model, dataset=dataset, config_file_list=config_files or None,
                    config_dict={"data_path": data_path, "show_progress": False})
    data = create_dataset(config)
    train, _, _ = data_preparation(config, data)
    return train_pairs_from_dataset(train), config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["profiles", "negatives", "finetune", "embed", "keys"])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--max_pairs", type=int, default=None, help="= --hnlm_max_pairs")
    parser.add_argument("--split", choices=["recbole", "all"], default="recbole")
    parser.add_argument("--config_files", nargs="*", default=None)
    parser.add_argument("--model", default="LightGCN", help="model name for RecBole's config (split only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "keys":
        print(LLMConfig.help_table())
        return 0
    overrides = {}
    for item in rest:
        if not item.startswith("--hnlm_") or "=" not in item:
            parser.error(f"unrecognised argument {item!r} (settings are --hnlm_<key>=<value>)")
        key, value = item[2:].split("=", 1)
        overrides[key] = _literal(value)
    if args.max_pairs is not None:
        overrides["hnlm_max_pairs"] = args.max_pairs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_path = args.data_path or _default_data_path(args.dataset)
    train_pairs, config = None, {}
    if args.split == "recbole":
        train_pairs, rb_config = recbole_train_pairs(args.dataset, data_path, args.config_files, args.model)
        config = {k: rb_config[k] for k in rb_config.final_config_dict if k.startswith("hnlm_") or k.endswith("_FIELD")}
    config.update(overrides)
    if args.stage in ("negatives", "embed"):
        config["hnlm_variant"] = "semantic" if args.stage == "negatives" else "finetuned"
    cfg = LLMConfig.from_config(config)
    from .pipeline import load_dataset_text, run_negatives, run_profiles, store_path_for

    text = load_dataset_text(config, args.dataset, data_path, train_pairs)
    progress = not args.quiet
    if args.stage == "profiles":
        run_profiles(cfg, text, text.select_pairs(cfg.max_pairs, cfg.seed), progress=progress)
        out = os.path.join(data_path, args.dataset, f"{args.dataset}.hnlm-profiles.jsonl")
    elif args.stage == "negatives":
        out = run_negatives(cfg, text, store_path_for(cfg, data_path, args.dataset), progress)
    else:
        from .finetune_pipeline import ensure_finetuned

        out = ensure_finetuned(cfg, text, store_path_for(cfg, data_path, args.dataset), progress,
                               embed=args.stage == "embed")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
