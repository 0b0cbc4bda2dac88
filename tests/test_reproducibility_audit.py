"""Reproducibility audit: what a rerun of the same CPU computation gives, bit for bit (docs/usage.md,
"Reproducibility": same seed, any thread count).

The C++ kernels split their work into chunks that whole rows (graph rows, batch rows, item ranges) belong to, so no
sum is ever split between threads; these tests pin that, so a kernel change that makes any output depend on the
thread count fails here. Whole runs are checked end to end on a slice of ml-100k: the weights of a run (and of
HNLMRec's teacher) do not depend on the thread count or on the grid harness, a finished run trained on equals the
straight run, ``recommend`` lists ties alike for any batch size and thread count, the seed changes the weights and
``split_seed`` alone fixes the split. The full-size checks (ml-100k, the CLI) are in the audit's report.
"""
import pytest
import torch
from safetensors.torch import load_file

from recbole_hnlm import ops

THREADS = (1, 2, 3)  # 3: the chunks do not divide evenly among the threads


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _power_law_graph(n_users=1200, n_items=3000, nnz=120_000, seed=0):
    """A bipartite graph large enough for many row parts per thread, with hub items (the balanced splits then
    differ from equal row counts, and from one thread count to the next)."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (nnz,), generator=gen)
    items = torch.randint(0, n_items, (nnz,), generator=gen)
    items[: nnz // 4] = torch.randint(0, 25, (nnz // 4,), generator=gen)
    return ops.bipartite_normalized_graph(users, items, n_users, n_items), n_users, n_items


def _propagation_outputs(kind):
    graph, n_users, n_items = _power_law_graph()
    gen = torch.Generator().manual_seed(1)
    ego = torch.randn(n_users + n_items, 64, generator=gen, requires_grad=True)
    if kind == "spmm":
        out = ops.spmm(graph, ego)
    elif kind == "lightgcn_mean":
        out = ops.lightgcn_propagate(graph, ego, 3)
    else:
        out = ops.lightgcn_propagate(graph, ego, 3, return_layers=True)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    return [out.detach(), ego.grad]


def _mixgcf_outputs(per_layer_query):
    """Forward (Z, chosen) and the backward into the item stack (3000 items: two scatter chunks of 2048) and into
    the positives, which are gathered from the stack as the model does (``gather_rows``)."""
    gen = torch.Generator().manual_seed(2)
    n_items, batch, layers, d, m = 3000, 2048, 4, 64, 32
    item_layers = torch.randn(n_items, layers, d, generator=gen, requires_grad=True)
    # a few hundred popular candidates: many rows choose the same item, so its gradient sums many rows
    candidates = torch.randint(0, 300, (batch, m), generator=gen)
    pos = ops.gather_rows(item_layers, torch.randint(0, n_items, (batch,), generator=gen))
    query = torch.randn((batch, layers, d) if per_layer_query else (batch, d), generator=gen)
    alpha = torch.rand(batch, layers, generator=gen)
    z, chosen = ops.mixgcf_mix(query, pos, item_layers, candidates, alpha)
    (z * torch.randn(z.shape, generator=gen)).sum().backward()
    return [z.detach(), chosen, item_layers.grad]


def _scoring_outputs(kind):
    gen = torch.Generator().manual_seed(3)
    user = torch.randn(2048, 64, generator=gen)
    items = torch.randn(3000, 64, generator=gen)
    candidates = torch.randint(0, 3000, (2048, 64), generator=gen)
    if kind == "candidate_scores":
        return [ops.candidate_scores(user, items, candidates)]
    target = torch.randn(2048, generator=gen) if kind == "select_ahns" else None
    return [ops.select_candidates(user, items, candidates, target)]


CASES = {
    "spmm": lambda: _propagation_outputs("spmm"),
    "lightgcn_mean": lambda: _propagation_outputs("lightgcn_mean"),
    "lightgcn_layers": lambda: _propagation_outputs("lightgcn_layers"),
    "mixgcf_mix": lambda: _mixgcf_outputs(False),
    "mixgcf_mix_per_layer_query": lambda: _mixgcf_outputs(True),
    "candidate_scores": lambda: _scoring_outputs("candidate_scores"),
    "select_dns": lambda: _scoring_outputs("select_dns"),
    "select_ahns": lambda: _scoring_outputs("select_ahns"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_outputs_and_gradients_do_not_depend_on_the_thread_count(case, restore_threads):
    """Every C++ CPU op (propagation forward and backward, MixGCF mixing and its scatter backward, DNS/AHNS scoring)
    gives the same bits on 1, 2 and 3 torch threads (without the extension, or with ``RECBOLE_HNLM_DISABLE_EXT=1``,
    the PyTorch references do: they hold too)."""
    results = {}
    for threads in THREADS:
        torch.set_num_threads(threads)
        assert torch.get_num_threads() == threads
        results[threads] = CASES[case]()
    for threads in THREADS[1:]:
        for i, (one, other) in enumerate(zip(results[1], results[threads])):
            assert torch.equal(one, other), f"{case}: output {i} differs between 1 and {threads} threads"


#: The settings of every run here (one epoch on the slice; ``data_path`` and ``checkpoint_dir`` are added).
RUN_SETTINGS = {"epochs": 1, "train_batch_size": 1024, "show_progress": False, "state": "WARNING", "gpu_id": "",
                "use_gpu": False, "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]}}


@pytest.fixture(scope="module")
def runs(ml_slice, tmp_path_factory):
    """``runs(name, threads=None, **settings)``: one run on the ml-100k slice (one epoch, ``threads`` torch threads
    during it), computed once per module; returns ``(result, tensors of the best checkpoint, tensors of the resume
    state, trainer state of the checkpoint)``."""
    from recbole_hnlm.checkpoint import read_trainer_state
    from recbole_hnlm.quick_start import run_recbole_hnlm

    data_path, dataset = ml_slice
    root = tmp_path_factory.mktemp("runs")
    done = {}

    def run(name, threads=None, **settings):
        if name not in done:
            config = {"dataset": dataset, **RUN_SETTINGS, "data_path": data_path, "checkpoint_dir": str(root / name),
                      **settings}
            model = config.pop("model")
            before = torch.get_num_threads()
            torch.set_num_threads(threads or before)
            try:
                result = run_recbole_hnlm(model=model, config_dict=config)
            finally:
                torch.set_num_threads(before)
            done[name] = (result, load_file(result["checkpoint"]), load_file(result["resume_state"]),
                          read_trainer_state(result["checkpoint"]))
        return done[name]

    return run


def _differing(one, other):
    """Names of the tensors whose bytes differ (all of them when the key sets differ)."""
    if sorted(one) != sorted(other):
        return sorted(set(one) | set(other))
    return [key for key in one if one[key].numpy().tobytes() != other[key].numpy().tobytes()]


@pytest.mark.parametrize("model,sampler", [("LightGCN", "MixGCF"), ("SGL", "DNS")])
def test_a_run_gives_the_same_bits_on_one_and_two_threads(runs, model, sampler):
    """A whole run (training with the sampler, validation, test) on 1 and on 2 torch threads: every tensor of the best
    checkpoint and of the resume state (weights, optimizer moments, random streams) and the test result are equal.
    LightGCN + MixGCF goes through the propagation and mixing kernels, SGL + DNS through SGL's InfoNCE matrix products
    and the DNS scoring kernel."""
    one = runs(f"{model}-{sampler}-1", threads=1, model=model, sampler=sampler)
    two = runs(f"{model}-{sampler}-2", threads=2, model=model, sampler=sampler)
    assert _differing(one[1], two[1]) == []
    assert _differing(one[2], two[2]) == []
    assert one[0]["test_result"] == two[0]["test_result"]


def test_another_seed_on_the_split_seed_changes_the_weights_but_not_the_split(runs):
    """``--seed=2021 --split_seed=2020`` trains on the split of seed 2020 (the default seed's run: same training and
    evaluation digests) from other weights; ``--seed=2021`` alone also draws another split (RecBole's rule)."""
    base = runs("LightGCN-MixGCF-1", threads=1, model="LightGCN", sampler="MixGCF")
    same_split = runs("seed2021-split2020", threads=1, model="LightGCN", sampler="MixGCF", seed=2021, split_seed=2020)
    own_split = runs("seed2021", threads=1, model="LightGCN", sampler="MixGCF", seed=2021)
    assert base[3]["split_seed"] == same_split[3]["split_seed"] == 2020 and own_split[3]["split_seed"] == 2021
    assert same_split[3]["train_split"] == base[3]["train_split"]
    assert same_split[3]["eval_split"] == base[3]["eval_split"]
    assert own_split[3]["train_split"] != base[3]["train_split"]
    assert {"model.user_embedding.weight", "model.item_embedding.weight"} <= set(_differing(base[1], same_split[1]))


def _tied_scores(model, dataset):
    """Set an MF run's weights so that every user scores item ``i`` as ``-((37 i) mod 600)``: levels of two or three
    tied items, whose order by score is not their id order. Returns the score table of the items."""
    with torch.no_grad():
        users, items = model.user_embedding.weight, model.item_embedding.weight
        users.zero_()
        users[:, 0] = 1.0
        items.zero_()
        score = -((torch.arange(dataset.item_num) * 37) % 600).float()
        items[:, 0] = score
    return score


def test_recommendations_with_ties_are_the_same_file_for_any_batch_size_and_thread_count(runs, tmp_path):
    """With tied scores inside the top k and across the k-th place, ``recommend`` lists each user's unseen items by
    score, equal scores in RecBole's internal id order (docs/usage.md), and the file is the same, byte for byte, for
    users scored 1024 or 7 at a time and on 1 or 2 threads."""
    from recbole_hnlm.load import load_data_and_model
    from recbole_hnlm.recommend import SeenItems, write_recommendations

    checkpoint = runs("MF-RNS-1", threads=1, model="MF", sampler="RNS")[0]["checkpoint"]
    _, model, dataset, *_ = load_data_and_model(checkpoint)
    score = _tied_scores(model, dataset)
    seen = SeenItems(dataset)
    users = torch.arange(1, dataset.user_num)
    texts = []
    before = torch.get_num_threads()
    try:
        for batch_size, threads in ((1024, 1), (7, 1), (1024, 2), (7, 2)):
            torch.set_num_threads(threads)
            path = tmp_path / f"recs-{batch_size}-{threads}.tsv"
            write_recommendations(str(path), model, dataset, users, 20, seen, batch_size=batch_size)
            texts.append(path.read_text())
    finally:
        torch.set_num_threads(before)
    assert all(text == texts[0] for text in texts[1:])
    rows = [line.split("\t") for line in texts[0].splitlines()[1:]]
    for user in range(1, dataset.user_num):
        user_seen = set(seen.positions(torch.tensor([user]))[1].tolist())
        expected = sorted((i for i in range(1, dataset.item_num) if i not in user_seen),
                          key=lambda i: (-float(score[i]), i))[:20]
        token = dataset.id2token(dataset.uid_field, [user])[0]
        assert [r[2] for r in rows if r[0] == token] == list(dataset.id2token(dataset.iid_field, expected))


def test_a_finished_ngcf_ahns_run_with_dropout_trained_on_equals_the_straight_run(runs):
    """NGCF with node and message dropout (random streams of their own) and AHNS, which tests/test_resume.py does not
    resume: a finished one-epoch run continued with ``resume_from`` and ``epochs=2`` ends with the bits of a straight
    two-epoch run (docs/usage.md, Resuming: the same weights, bit for bit, on the CPU)."""
    settings = {"model": "NGCF", "sampler": "AHNS", "node_dropout": 0.1, "message_dropout": 0.1}
    straight = runs("NGCF-AHNS-straight", epochs=2, **settings)
    first = runs("NGCF-AHNS-first", epochs=1, **settings)
    resumed = runs("NGCF-AHNS-resumed", epochs=2, resume_from=first[0]["resume_state"], **settings)
    assert resumed[0]["resume_state"] == first[0]["resume_state"]  # it went on writing to the first run's files
    assert resumed[3]["epoch"] == straight[3]["epoch"] and resumed[2]
    assert _differing(straight[2], resumed[2]) == []
    assert _differing(straight[1], resumed[1]) == []
    assert resumed[0]["test_result"] == straight[0]["test_result"]


def test_the_hnlmrec_teacher_is_the_same_file_trained_on_one_or_two_threads(ml_slice, tmp_path):
    """HNLMRec's teacher (LightGCN + MixGCF, then the exported embeddings and MixGCF negatives of every training pair)
    trained with ``hnlm_threads`` 1 and 2: every tensor of the two teacher files is equal (docs/llm.md said that a
    teacher of another thread count rounds differently; it does not)."""
    from recbole.data import data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.llm.teacher_training import train_teacher
    from recbole_hnlm.quick_start import read_dataset

    data_path, dataset = ml_slice
    settings = {"data_path": data_path, "sampler": "HNLMRec", "hnlm_variant": "finetuned", "show_progress": False,
                "state": "WARNING", "gpu_id": "", "use_gpu": False, "train_batch_size": 1024,
                "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]}}
    files = {}
    for threads in (1, 2):
        config = Config(model="LightGCN", dataset=dataset, config_dict={**settings, "hnlm_threads": threads},
                        command_line=False)
        train_data, _, _ = data_preparation(config, read_dataset(config))  # seeded as a run splits
        files[threads] = train_teacher(config, train_data, str(tmp_path / f"teacher-{threads}.safetensors"), epochs=2)
    one, two = load_file(files[1]), load_file(files[2])
    assert len(one) >= 4 and _differing(one, two) == []


def test_grid_cells_equal_the_standalone_runs_of_their_options(runs, ml_slice, tmp_path, restore_threads):
    """Two cells of a comparison grid run one after the other in one process (RNS, then DNS, seed 2020) test the same
    numbers and keep the same best checkpoints, bit for bit, as the run script's runs of the same options."""
    import os

    from recbole_hnlm.benchmark.runner import Cell, run_cell

    data_path, dataset = ml_slice
    torch.set_num_threads(1)  # as the standalone runs: the grid harness alone differs
    for sampler in ("RNS", "DNS"):
        standalone = runs(f"LightGCN-{sampler}-1", threads=1, model="LightGCN", sampler=sampler)
        cell = run_cell(Cell("LightGCN", sampler, 2020), dataset, str(tmp_path),
                        config_dict={**RUN_SETTINGS, "data_path": data_path})
        assert cell["test_result"] == standalone[0]["test_result"]
        assert _differing(load_file(os.path.join(tmp_path, cell["checkpoint"])), standalone[1]) == []
