"""Our backbones against RecBole 1.2.1's own models of the same name (MF against BPR), trained side by side on one
split with one trainer (the plugin's: RecBole's Trainer with safetensors checkpoints), so that only the model differs.
The RecBole model gets every option its property file defines from the plugin's config (ours: NGCF's
``message_dropout`` 0, LightGCN's 3 layers ...), and ``require_pow`` (default True: our squared L2).

    .venv/bin/python benchmarks/recbole_parity.py --models MF LightGCN NGCF --seeds 2020 2021 \\
        --out results/ml-100k-recbole-parity

Writes out/runs/<side>-<model>-<seed>.json (rerunning skips them; --report-only trains nothing) and out/parity.md:
best-validation and test Recall@20/NDCG@20 per run, and per model the mean difference over the seeds with the seeds'
spread. A stored run of other settings (dataset, data path, split seed, epochs) is an error, never reused or
replaced. docs/usage.md ("Comparing with RecBole's own models") says where the models differ.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

RECBOLE_NAMES = {"MF": "BPR", "LightGCN": "LightGCN", "NGCF": "NGCF", "SGL": "SGL"}
DEFAULT_EPOCHS = {"MF": 40, "LightGCN": 20, "NGCF": 20, "SGL": 15}
METRICS = ("recall@20", "ndcg@20")
RUN_SETTINGS = ("dataset", "data_path", "split_seed", "epochs")  # a stored run is reused only when these match


def recbole_model_options(model):
    """The options RecBole's property file of ``model`` defines (their values are taken from the plugin's config)."""
    from recbole_hnlm.config_checks import recbole_properties_dir, _yaml_keys_of

    return _yaml_keys_of(os.path.join(recbole_properties_dir(), "model", f"{model}.yaml"))


def train(side, model_name, seed, settings, require_pow):
    """One run -> its record: the split of ``split_seed``, the model built under ``seed``, fit and test."""
    from recbole.config import Config as RecBoleConfig
    from recbole.utils import get_model as recbole_get_model
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.quick_start import read_dataset, split_dataset
    from recbole_hnlm.utils import get_model, get_trainer

    config = Config(model=model_name, config_dict={**settings, "seed": seed, "sampler": "RNS"}, command_line=False)
    train_data, valid_data, test_data = split_dataset(config, read_dataset(config))
    init_seed(seed, config["reproducibility"])
    if side == "ours":
        model = get_model(model_name)(config, train_data._dataset)
        trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    else:
        name = RECBOLE_NAMES[model_name]
        options = {key: config[key] for key in recbole_model_options(name) if config[key] is not None}
        recbole_config = RecBoleConfig(model=name, config_dict={**settings, **options, "seed": seed,
                                                                "require_pow": require_pow})
        model = recbole_get_model(name)(recbole_config, train_data._dataset)
        trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)  # the same trainer settings as ours
    start = time.time()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    return dict(side=side, model=model_name if side == "ours" else RECBOLE_NAMES[model_name], seed=seed,
                **{key: settings.get(key) for key in RUN_SETTINGS},
                require_pow=require_pow if side == "recbole" else None,
                best_valid={m: float(best_valid[m]) for m in METRICS}, test={m: float(test[m]) for m in METRICS},
                seconds=round(time.time() - start, 1))


def stored_run_conflict(run, settings):
    """``None`` when a stored run was trained with ``settings``, else what differs (``"epochs 2, now 20"``)."""
    differ = [f"{key} {run.get(key, '(not recorded)')!r}, now {settings.get(key)!r}" for key in RUN_SETTINGS
              if key not in run or run[key] != settings.get(key)]
    return "; ".join(differ) or None


def table(records, models, seeds, require_pow=True):
    l2 = ("squared L2 (require_pow: True), as ours" if require_pow
          else "RecBole's default unsquared L2 (require_pow: False); ours squares it")
    lines = [f"RecBole's models trained with {l2}.", "",
             "| model | side | seed | epochs | valid R@20 | valid N@20 | test R@20 | test N@20 |",
             "|---|---|---|---|---|---|---|---|"]
    for model in models:
        for side in ("ours", "recbole"):
            for seed in seeds:
                run = records.get((side, model, seed))
                if run:
                    lines.append(f"| {run['model']} | {side} | {seed} | {run['epochs']} | " + " | ".join(
                        f"{run[split][m]:.4f}" for split in ("best_valid", "test") for m in METRICS) + " |")
    lines += ["",
              "| model | test metric | ours (mean) | RecBole (mean) | difference | seeds' spread (ours / RecBole) |",
              "|---|---|---|---|---|---|"]
    for model in models:
        for metric in METRICS:
            ours = [records[("ours", model, s)]["test"][metric] for s in seeds if ("ours", model, s) in records]
            theirs = [records[("recbole", model, s)]["test"][metric] for s in seeds if ("recbole", model, s) in records]
            if ours and theirs:
                lines.append(f"| {model} vs {RECBOLE_NAMES[model]} | {metric} | {statistics.mean(ours):.4f} | "
                             f"{statistics.mean(theirs):.4f} | {statistics.mean(ours) - statistics.mean(theirs):+.4f} |"
                             f" {max(ours) - min(ours):.4f} / {max(theirs) - min(theirs):.4f} |")
    return "\n".join(lines) + "\n"


def positive_int(text):
    """An argparse ``type``: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def true_or_false(text):
    """An argparse ``type``: ``true`` or ``false``, any case."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")
    return text.lower() == "true"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/recbole_parity.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(RECBOLE_NAMES), choices=sorted(RECBOLE_NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", help="the folder of <dataset>/ (default: RecBole's)")
    parser.add_argument("--epochs", type=positive_int,
                        help="for every model (default: MF 40, LightGCN and NGCF 20, SGL 15)")
    parser.add_argument("--split_seed", type=int, default=2020)
    parser.add_argument("--require_pow", type=true_or_false, default=True,
                        help="RecBole's L2 form: True (squared, ours) or False (RecBole's default, unsquared)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--report-only", action="store_true", help="only rebuild parity.md from the stored runs")
    args = parser.parse_args(argv)
    for option, values in (("--models", args.models), ("--seeds", args.seeds)):
        repeated = sorted({value for value in values if values.count(value) > 1}, key=str)
        if repeated:  # each run would train twice, and its seed count twice in the means
            parser.error(f"argument {option}: {', '.join(map(str, repeated))} listed twice")
    sys.argv = sys.argv[:1]  # RecBole's Config reads "--key=value" from the command line

    from recbole_hnlm.files import write_json_atomic, write_text_atomic

    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    planned = []  # every stored run is checked before anything trains (a stale one stopped the command midway)
    for model in args.models:
        settings = dict(dataset=args.dataset, split_seed=args.split_seed, epochs=args.epochs or DEFAULT_EPOCHS[model],
                        stopping_step=1000, eval_step=1, show_progress=False, state="ERROR", log_wandb=False,
                        save_resume_state=False, checkpoint_dir=os.path.join(args.out, "checkpoints"))
        if args.data_path:
            settings["data_path"] = os.path.abspath(args.data_path)
        for seed in args.seeds:
            for side in ("ours", "recbole"):
                unsquared = side == "recbole" and not args.require_pow
                path = os.path.join(args.out, "runs", f"{side}-{model}-{seed}{'-unsquared' if unsquared else ''}.json")
                run = None
                if os.path.isfile(path):
                    with open(path, encoding="utf-8") as file:
                        run = json.load(file)
                    conflict = stored_run_conflict(run, settings)
                    if conflict:
                        parser.error(f"{path} was trained with other settings ({conflict}): give the same options, "
                                     "another --out folder, or delete that run")
                elif args.report_only:
                    print(f"no stored run {path}: left out of the table", file=sys.stderr)
                    continue
                planned.append((side, model, seed, settings, path, run))
    records = {}
    for side, model, seed, settings, path, run in planned:
        if run is None:
            run = train(side, model, seed, settings, args.require_pow)
            write_json_atomic(path, run)
        records[(side, model, seed)] = run
        print(f"{side} {run['model']} seed {seed}: test " + ", ".join(
            f"{m} {run['test'][m]:.4f}" for m in METRICS) + f" ({run['seconds']} s)", flush=True)
    if not records:
        parser.error(f"no stored run of these models and seeds in {os.path.join(args.out, 'runs')}: nothing to "
                     "report (parity.md is left as it was)")
    text = table(records, args.models, args.seeds, args.require_pow)
    write_text_atomic(os.path.join(args.out, "parity.md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
