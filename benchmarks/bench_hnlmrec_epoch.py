"""Where an HNLMRec training epoch goes: epoch time of RNS and of HNLMRec variants, side by side on ml-100k.

    python benchmarks/bench_hnlmrec_epoch.py [--model MF] [--dim 576] [--threads 1] [--rounds 3] [--profile]

HNLMRec reads its LLM negatives from a side-car store; here it is a random one (``--dim``: 576 is SmolLM2-135M's
hidden size, the fine-tuned variant's width; 384 is MiniLM's, the semantic variant's), so no LLM stage has to run and
the training-side cost is measured alone. Variants: the default adapter (eq. 6, one hidden layer of 512), without
the InfoNCE alignment (eq. 9), a linear adapter, and the authors' code's [2048, 1024]. Epochs of all variants are
interleaved round by round and the median is reported; the adapter column counts the eq. 6 MLP's forward and
backward GEMM work per epoch (2 flops per multiply-add). ``--profile`` adds the top operators
of one default HNLMRec epoch (torch.profiler).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

VARIANTS = (
    ("RNS", "RNS", {}),
    ("HNLMRec, adapter [512] (default)", "HNLMRec", {}),
    ("HNLMRec, no InfoNCE", "HNLMRec", {"hnlm_cl_weight": 0.0}),
    ("HNLMRec, linear adapter", "HNLMRec", {"hnlm_adapter_hidden": []}),
    ("HNLMRec, adapter [2048, 1024] (code)", "HNLMRec", {"hnlm_adapter_hidden": [2048, 1024]}),
)


def write_random_store(path, dim, train_data, seed=0):
    """A store with one random ``dim``-vector per training pair of ``train_data`` (HNLMRec refuses a store holding
    pairs it does not train on)."""
    from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset
    from recbole_hnlm.llm.store import write_pair_store

    pairs = train_pairs_from_dataset(train_data)
    emb = torch.randn(len(pairs), dim, generator=torch.Generator().manual_seed(seed))
    write_pair_store(path, [u for u, _ in pairs], [i for _, i in pairs], emb,
                     {"variant": "semantic", "dataset": "ml-100k", "dataset_hash": "benchmark"}, dtype=torch.float16)


def build(model_name, sampler, store, extra, checkpoint_dir):
    """``(trainer, train_data, config)`` of one variant on ml-100k (split of seed 2020)."""
    import warnings

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.utils import get_model, get_sampler, get_trainer

    settings = {"sampler": sampler, "show_progress": False, "state": "ERROR", "seed": 2020, "epochs": 1,
                "save_resume_state": False, "use_gpu": False, "gpu_id": "", "checkpoint_dir": checkpoint_dir,
                **extra}  # a CPU benchmark, also on a machine with a GPU; nothing written outside the temp folder
    if sampler == "HNLMRec":
        settings["hnlm_file"] = store
    config = Config(model=model_name, dataset="ml-100k", config_dict=settings, command_line=False)
    init_seed(config["seed"], True)
    with warnings.catch_warnings():  # RecBole's chained fillna (pandas 2 still honours it)
        warnings.simplefilter("ignore", FutureWarning)
        train_data, _, _ = data_preparation(config, create_dataset(config))
    get_sampler(sampler).prepare(config, train_data._dataset, train_data)
    model = get_model(model_name)(config, train_data._dataset)
    return get_trainer(config["MODEL_TYPE"], model_name)(config, model), train_data, config


def adapter_gflop(config, dim, n_pairs, out_width):
    """GEMM work of the eq. 6 adapter over one epoch of ``n_pairs`` rows, in GFLOP: forward, weight gradients (as
    much again) and input gradients of every layer but the first (the stored vectors need none). ``out_width``: the
    backbone's pooled width (NGCF concatenates its layers)."""
    widths = [dim] + list(config["hnlm_adapter_hidden"]) + [out_width]
    macs = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * n_pairs * (2 * sum(macs) + sum(macs[1:])) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MF", help="backbone: MF, NGCF, LightGCN or SGL")
    parser.add_argument("--dim", type=int, default=576, help="width of the stored LLM vectors")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per variant (interleaved; median reported)")
    parser.add_argument("--profile", action="store_true", help="also print the top operators of one HNLMRec epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "ml-100k.random-store.safetensors")
        runs = [(VARIANTS[0][0], *build(args.model, VARIANTS[0][1], store, VARIANTS[0][2], tmp))]  # RNS first
        write_random_store(store, args.dim, runs[0][2])  # its split: every variant's (seed 2020)
        runs += [(name, *build(args.model, sampler, store, extra, tmp)) for name, sampler, extra in VARIANTS[1:]]
        times = {name: [] for name, *_ in runs}
        for round_ in range(args.rounds + 1):  # round 0 warms up (allocator, first-touch), not counted
            for name, trainer, train_data, _ in runs:
                start = time.perf_counter()
                trainer._train_epoch(train_data, round_)
                if round_:
                    times[name].append(time.perf_counter() - start)

        n_pairs = len(runs[0][2]._dataset)
        print(f"{args.model} on ml-100k ({n_pairs} training pairs, batch {runs[0][3]['train_batch_size']}), stored "
              f"vectors D={args.dim}, {args.threads} thread(s), median of {args.rounds} interleaved epochs")
        base = statistics.median(times["RNS"])
        print(f"| {'variant':38s} | s/epoch | x RNS | adapter GFLOP/epoch |")
        print(f"|{'-' * 40}|---------|-------|--------------------|")
        for name, trainer, _, config in runs:
            median = statistics.median(times[name])
            width = trainer.model.pooled_size(config)
            work = f"{adapter_gflop(config, args.dim, n_pairs, width):.1f}" if config["sampler"] == "HNLMRec" else "-"
            print(f"| {name:38s} | {median:7.3f} | {median / base:5.2f} | {work:>18s} |")

        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            name, trainer, train_data, _ = runs[1]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                trainer._train_epoch(train_data, args.rounds + 1)
            print(f"\ntop operators of one epoch, {name}:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
