"""The host warp emulator (csrc/cuda/emulation) on kernels written to test it: shuffles exchange the right values,
and what a GPU would crash on or compute garbage from (divergent shuffles, misaligned vector loads, device
assertions) is reported as an error naming the failure and the thread."""
import pytest
import torch

import cuda_emulation  # tests/ops is on sys.path

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(not cuda_emulation.SUPPORTED, reason=cuda_emulation.UNSUPPORTED_REASON)]


@pytest.fixture(scope="module")
def self_test():
    return getattr(torch.ops, cuda_emulation.build()).emulator_self_test


def test_butterfly_sum_gives_every_lane_its_warp_total(self_test):
    out = self_test("warp_sum").view(2, 2, 32)  # [block, warp, lane]
    thread = torch.arange(64, dtype=torch.float32).view(2, 32) + 1  # threadIdx.x + 1 per warp of a block
    expected = thread.sum(1)[None, :, None].expand(2, 2, 32)
    assert torch.equal(out, expected)


def test_shuffle_width_follows_ptx_bfly_segments(self_test):
    """xor 1 in segments of 4 stays inside them; xor 8 in segments of 8 reads the earlier segment (lanes 8-15 get
    0-7) and leaves lanes whose source lies past their segment with their own value (lanes 0-7 keep 0-7)."""
    lane = torch.arange(32)
    far = torch.where((lane // 8) % 2 == 1, lane ^ 8, lane)
    assert torch.equal(self_test("shuffle_width"), ((lane ^ 1) * 100 + far).float())


@pytest.mark.parametrize("name, message", [
    ("early_return", r"warp divergence: thread 3 returned while its warp waits in __shfl_xor_sync"),
    ("two_shuffle_sites", r"warp divergence: lanes of one warp at different __shfl_xor_sync calls"),
    ("partial_warp", r"__shfl_xor_sync mask 0xffffffff does not name exactly the live lanes 0xffff \(block 0, "
                     r"thread 32\)"),
    ("misaligned_load", r"misaligned address in a 16-byte __ldg"),
    ("assertion", r"device-side assertion `threadIdx.x != 40` failed at .*self_test.cpp:\d+ \(block 0, thread 40\)"),
    ("exception", r"thrown in a kernel \(block 0, thread 5\)"),
])
def test_failures_are_reported_with_the_thread(self_test, name, message):
    with pytest.raises(RuntimeError, match=message):
        self_test(name)
    assert torch.equal(self_test("shuffle_width")[:2], torch.tensor([100.0, 1.0]))  # the emulator is still usable


def test_warp_schedule_runs_every_warp_once_in_a_seeded_order(self_test):
    """Grid order by default; a seed gives a permutation of all warps of the grid (blocks mixed), the same one for
    the same seed and launch, another for the next launch or another seed."""
    grid_order = torch.arange(32, dtype=torch.float32)
    assert torch.equal(self_test("warp_order"), grid_order)
    orders = {}
    for seed in (1, 2):
        with cuda_emulation.warp_schedule(seed):
            orders[seed] = [self_test("warp_order") for _ in range(2)]
        with cuda_emulation.warp_schedule(seed):
            assert torch.equal(self_test("warp_order"), orders[seed][0])  # reproducible from the seed
    for first, second in orders.values():
        assert torch.equal(first.sort().values, grid_order)  # each warp ran exactly once
        assert not torch.equal(first, grid_order) and not torch.equal(first, second)
    assert not torch.equal(orders[1][0], orders[2][0])
    assert torch.equal(self_test("warp_order"), grid_order)  # grid order again after the block
    with pytest.raises(RuntimeError, match="warp schedule seed must be >= 0"):
        cuda_emulation.torch_ops().set_warp_schedule(-1)
