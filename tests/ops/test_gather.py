"""gather_rows: the values of ``table[index]``, and a backward that adds repeated rows in index order."""
import subprocess
import sys

import pytest
import torch

from recbole_hnlm.ops import gather_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("index_shape", [(1,), (700,), (64, 5), (0,)])
def test_values_and_shapes_match_advanced_indexing(dtype, index_shape):
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(50, 4, 8, generator=gen).to(dtype)
    index = torch.randint(0, 50, index_shape, generator=gen)
    got = gather_rows(table, index)
    assert got.shape == (*index_shape, 4, 8) and got.dtype == dtype
    assert torch.equal(got, table[index])


def serial_accumulation(num_rows, index, upstream):
    """The gradient summed one index at a time, in index order (the order the backward must use)."""
    grad = torch.zeros(num_rows, upstream.shape[-1], dtype=upstream.dtype)
    for k, row in enumerate(index.tolist()):
        grad[row] += upstream[k]
    return grad


def test_gradient_adds_repeated_rows_in_index_order():
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(40, 16, generator=gen, requires_grad=True)
    index = torch.randint(0, 40, (3000,), generator=gen)  # each row repeated ~75 times
    upstream = torch.randn(3000, 16, generator=gen)
    (gather_rows(table, index) * upstream).sum().backward()
    assert torch.equal(table.grad, serial_accumulation(40, index, upstream))  # bitwise: same order of float adds


def repeated_gradients_on_a_busy_machine(gradient, repeats=300):
    """How many of ``repeats`` calls of ``gradient()`` differ bitwise from the first, with two processes keeping the
    cores busy (thread timing then varies from call to call) and at least two torch threads (one thread adds in one
    order whatever the backward: the suite run with ``OMP_NUM_THREADS=1`` could not fail here)."""
    threads = torch.get_num_threads()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        torch.set_num_threads(max(2, threads))
        first = gradient()
        return sum(not torch.equal(gradient(), first) for _ in range(repeats))
    finally:
        torch.set_num_threads(threads)
        for process in busy:
            process.kill()
            process.wait()


def test_gradient_is_reproducible_on_a_busy_machine():
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(1683, 64, generator=gen, requires_grad=True)
    index = torch.randint(0, 1683, (2048,), generator=gen)
    upstream = torch.randn(2048, 64, generator=gen)

    def gradient():
        table.grad = None
        (gather_rows(table, index) * upstream).sum().backward()
        return table.grad.clone()

    assert repeated_gradients_on_a_busy_machine(gradient) == 0


def test_mixgcf_reference_backward_is_reproducible_on_a_busy_machine():
    """The PyTorch fallback of mixgcf_mix (used without the C++ extension) gathers the chosen rows the same way."""
    from recbole_hnlm.ops.reference import mixgcf_mix_reference

    gen = torch.Generator().manual_seed(6)
    items = torch.randn(300, 4, 64, generator=gen, requires_grad=True)
    pos = torch.randn(2048, 4, 64, generator=gen)
    candidates = torch.randint(0, 300, (2048, 8), generator=gen)
    alpha = torch.rand(2048, 4, generator=gen)
    upstream = torch.randn(2048, 4, 64, generator=gen)

    def gradient():
        items.grad = None
        z, _ = mixgcf_mix_reference(pos[:, 0], pos, items, candidates, alpha)
        (z * upstream).sum().backward()
        return items.grad.clone()

    assert repeated_gradients_on_a_busy_machine(gradient, repeats=100) == 0



def test_ids_out_of_range_are_an_index_error_not_another_row():
    """Unlike indexing, -1 is not the last row; an id past the end is not clamped."""
    table = torch.randn(4, 3)
    with pytest.raises(IndexError):
        gather_rows(table, torch.tensor([-1]))
    with pytest.raises(IndexError):
        gather_rows(table, torch.tensor([4]))
