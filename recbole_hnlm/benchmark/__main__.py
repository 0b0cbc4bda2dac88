"""Run a benchmark grid and write its report::

    python -m recbole_hnlm.benchmark --dataset ml-100k --models LightGCN MF \\
        --samplers RNS DNS MixGCF AHNS HNLMRec --seeds 2020 2021 2022 --out results/ml-100k
    python -m recbole_hnlm.benchmark --dataset ml-100k --models MF --samplers RNS DNS --seeds 2020 --epochs 10 \\
        --analysis popularity,fhn,sparsity --out results/ml-100k-mf --learning_rate=0.002
    python -m recbole_hnlm.benchmark --out results/ml-100k --report-only

Every other ``--key=value`` is a RecBole / sampler setting shared by all cells (values are Python literals when they
parse as one, else strings), e.g. ``--data_path=/data/atomic --stopping_step=10 --dns_candidates=64``.
Rerunning the same command skips finished cells (``out/runs/<cell>.json``).

Exit status: 0 when every cell finished; 1 when a cell failed (the summary names its ``out/runs/<cell>.error.txt``);
2 for bad input, caught before any cell runs (unknown model or sampler, invalid setting, missing dataset files, a
finished cell with other settings in ``out``, ``--report-only`` on a folder without runs); 130 when interrupted
(Ctrl-C: finished cells are kept, the rerun resumes).
"""
import argparse
import sys
import warnings

from recbole_hnlm.cli_settings import parse_settings

#: Defaults of the issue's grid.
DEFAULT_MODELS = ("LightGCN", "MF")
DEFAULT_SAMPLERS = ("RNS", "DNS", "MixGCF", "AHNS", "HNLMRec")
DEFAULT_SEEDS = (2020, 2021, 2022)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_hnlm.benchmark", allow_abbrev=False,
        description="Samplers x backbones x seeds on one dataset: per-cell JSON, runs.csv, table.md, plots/*.png.",
        epilog="Any other --key=value is a RecBole or sampler setting shared by every cell.")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="RecBole dataset name (default ml-100k)")
    parser.add_argument("--models", "-m", nargs="+", default=list(DEFAULT_MODELS), help="backbones")
    parser.add_argument("--samplers", "-s", nargs="+", default=list(DEFAULT_SAMPLERS), help="samplers")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="seeds")
    parser.add_argument("--out", "-o", default=None, help="output folder (default results/<dataset>)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs per cell (default: the yaml's)")
    parser.add_argument("--analysis", default="", help="comma-separated: popularity, fhn, sparsity")
    parser.add_argument("--ratios", default="0.2,0.4,0.6,0.8", help="training ratios of the sparsity analysis")
    parser.add_argument("--fhn-pairs", type=int, default=2048, help="training pairs sampled for the FHN rate")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files shared by every cell")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the CSV, table and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, extra = parser.parse_known_args(argv)
    config = parse_settings(extra, parser.error)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    args.config = config
    args.analyses = [a.strip() for a in args.analysis.split(",") if a.strip()]
    args.ratios = tuple(float(r) for r in args.ratios.split(",") if r.strip())
    args.out = args.out or f"results/{args.dataset}"
    return args


def main(argv=None):
    from recbole_hnlm.benchmark.grid import SettingsMismatch, run_grid
    from recbole_hnlm.benchmark.report import write_report

    def fail(error):
        print(f"error: {error}", file=sys.stderr)
        return 2

    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")  # pandas / amp deprecations
    summary = {"failed": []}
    if not args.report_only:
        try:
            summary = run_grid(args.dataset, args.models, args.samplers, args.seeds, args.out,
                               config_dict=args.config,
                               config_file_list=args.config_files.split() if args.config_files else None,
                               analyses=args.analyses, ratios=args.ratios, progress=not args.no_progress,
                               fhn_pairs=args.fhn_pairs)
        except (SettingsMismatch, ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
            return fail(error)
        except KeyboardInterrupt:
            print("interrupted: finished cells are saved; rerun the same command to resume", file=sys.stderr)
            return 130
        print(f"cells: {len(summary['ran'])} ran, {len(summary['skipped'])} skipped (finished), "
              f"{len(summary['failed'])} failed{': ' + ', '.join(summary['failed']) if summary['failed'] else ''}")
    try:
        paths = write_report(args.out, plots=not args.no_plots)
    except FileNotFoundError as error:
        return fail(error)
    for name, path in paths.items():
        print(f"{name}: {path}")
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} cell(s) failed; see {', '.join(summary['errors'].values())}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
