"""The occupancy MODEL against figures published by NVIDIA.

Sources:
- [BPG] CUDA C++ Best Practices Guide, "Calculating Occupancy"
  (https://docs.nvidia.com/cuda/cuda-c-best-practices-guide/#calculating-occupancy): on compute capability 7.0,
  at most 32 registers per thread for 100% occupancy; 37 registers with 128-thread blocks gives 75% with 12
  active blocks, with 320-thread blocks 63% (four blocks).
- [PG] CUDA C++ Programming Guide, "Technical Specifications per Compute Capability" and "Compute Capability
  8.x" (1 KB of shared memory reserved per block; 164 KB per SM on 8.0, 100 KB on 8.6/8.9, 228 KB on 9.0).
- [OCC] cuda_occupancy.h (CUDA toolkit), cudaOccMaxBlocksPerSMRegsLimit: registers per warp rounded up to 256.
"""

import pytest

from nbkit.core import hw
from nbkit.perf.occupancy import LIMITS, arch, occupancy, occupancy_by_block_size


def test_best_practices_guide_37_registers():  # [BPG]
    small = occupancy("7.0", 128, 37)
    assert (small.active_blocks, small.fraction) == (12, 0.75) and small.limited_by == ("registers",)
    big = occupancy("7.0", 320, 37)
    assert big.active_blocks == 4 and big.fraction == 0.625  # the guide prints 62.5% as "63%"


@pytest.mark.parametrize("cc", ["7.0", "sm_80", "sm_90"])
def test_32_registers_is_the_most_for_full_occupancy(cc):  # [BPG], same 64-warp SM on 8.0 and 9.0
    assert occupancy(cc, 256, 32).fraction == 1.0
    assert occupancy(cc, 256, 33).fraction < 1.0


def test_registers_are_allocated_per_warp_in_units_of_256():  # [OCC]
    # 33 and 40 registers both round up to 1280 per warp: same occupancy; 41 rounds to 1536.
    assert occupancy("sm_80", 128, 33).active_warps == occupancy("sm_80", 128, 40).active_warps == 48
    assert occupancy("sm_80", 128, 41).active_warps == 40


def test_reserved_shared_memory_per_block_on_ampere():  # [PG]
    # 48 KiB + 1 KiB reserved = 49 KiB per block: 3 blocks fit in 164 KiB; on Turing (no reserve) 1 in 64 KiB.
    assert occupancy("sm_80", 256, 16, 48 * 1024).active_blocks == 3
    assert occupancy("sm_75", 256, 16, 48 * 1024).active_blocks == 1
    # 32 KiB exactly: 2 per Turing SM; on sm_80 (32 KiB + 1 KiB) 4 blocks in 164 KiB
    assert occupancy("sm_75", 64, 16, 32 * 1024).active_blocks == 2
    assert occupancy("sm_80", 64, 16, 32 * 1024).active_blocks == 4
    assert occupancy("sm_80", 64, 16, 32 * 1024).limited_by == ("shared memory",)


@pytest.mark.parametrize("cc,blocks,warps", [("sm_75", 16, 32), ("sm_80", 32, 64), ("sm_86", 16, 48),
                                             ("sm_89", 24, 48), ("sm_90", 32, 64)])
def test_max_blocks_per_sm_limits_small_blocks(cc, blocks, warps):  # [PG] max resident blocks and warps per SM
    r = occupancy(cc, 32, 16)
    assert r.active_blocks == blocks and r.max_warps == warps and "blocks" in r.limited_by
    assert occupancy(cc, 1024, 16).limited_by[0] == "warps"


def test_configurations_that_cannot_launch_have_zero_blocks():
    assert occupancy("sm_80", 1025, 16).active_blocks == 0  # more than 1024 threads
    assert occupancy("sm_80", 1024, 72).active_blocks == 0  # 72 x 1024 > 65536 registers per block
    assert occupancy("sm_80", 32, 256).active_blocks == 0  # more than 255 registers per thread
    assert occupancy("sm_86", 32, 16, 100 * 1024).active_blocks == 0  # above 99 KiB per block


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'sm_61'; known: sm_70, sm_75, sm_80"):
        occupancy("sm_61", 128, 32)
    assert arch((8, 6)) is arch("8.6") is arch("86") is arch("sm_86") is LIMITS["sm_86"]
    with pytest.raises(ValueError, match="not an architecture: 'sm80'"):
        arch("sm80")


def test_every_architecture_the_course_checks_has_limits():
    assert set(hw.ARCHS) <= set(LIMITS)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="threads_per_block must be a positive integer"):
        occupancy("sm_80", 0, 32)
    with pytest.raises(ValueError, match="registers_per_thread"):
        occupancy("sm_80", 128, -1)


def test_occupancy_by_block_size_for_a_plot():
    rows = occupancy_by_block_size("sm_75", 47)
    assert [r.threads_per_block for r in rows] == list(range(32, 1025, 32))
    assert all(0 <= r.fraction <= 1 for r in rows)
    assert "MODEL occupancy on sm_75" in str(rows[0])


def test_a_kernel_without_shared_memory_is_never_limited_by_shared_memory():
    # cuda_occupancy.h: zero shared memory per block sets no shared-memory limit (also with the 1 KiB reserve)
    for cc in ("sm_75", "sm_80", "sm_90"):
        for threads in (32, 64, 256):
            o = occupancy(cc, threads, 32, 0)
            assert "shared memory" not in o.limited_by, (cc, threads, o.limited_by)
    assert occupancy("sm_75", 32, 32, 0).limited_by == ("blocks",)
