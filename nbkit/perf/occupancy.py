"""Occupancy from the documented per-architecture limits: a MODEL, computed without a GPU.

Occupancy is the fraction of an SM's warp slots that a kernel's resident blocks fill. It follows from
four limits (warps, blocks, registers, shared memory per SM); the smallest one wins. The rules are
those of NVIDIA's CUDA Occupancy Calculator as implemented in ``cuda_occupancy.h`` (shipped with the
CUDA toolkit; functions ``cudaOccMaxBlocksPerSMRegsLimit``, ``cudaOccMaxBlocksPerSMSmemLimit``,
``cudaOccMaxBlocksPerSMWarpsLimit``):

- registers are allocated per warp, ``registers_per_thread * 32`` rounded up to 256, in each of the 4
  sub-partitions of the SM (so warps per SM = 4 * floor(16384 / registers per warp));
- shared memory per block is rounded up to the allocation granularity (256 B on cc 7.x, 128 B on cc
  >= 8.0) after adding the 1 KiB the driver reserves per block on cc >= 8.0;
- a block uses ceil(threads / 32) warp slots.

The limits are from the CUDA C++ Programming Guide, "Technical Specifications per Compute
Capability" (https://docs.nvidia.com/cuda/cuda-c-programming-guide/#features-and-technical-specifications),
with shared memory per SM at its largest carveout (the occupancy calculator's "max shared" setting).
Real occupancy can be lower (a smaller carveout chosen by the driver, tail effects of the grid).
"""

from __future__ import annotations

from dataclasses import dataclass

from nbkit.core.hw import MAX_THREADS_PER_BLOCK, WARP_SIZE, Arch, sm_name


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM limits of one compute capability (CUDA C++ Programming Guide, technical specifications)."""

    name: str  # e.g. "sm_80"
    example_gpu: str
    max_warps_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int = 65536
    max_registers_per_block: int = 65536
    max_registers_per_thread: int = 255
    register_allocation_unit: int = 256  # registers, allocated per warp
    register_sub_partitions: int = 4
    shared_per_sm: int = 0  # bytes, largest carveout
    max_shared_per_block: int = 0  # bytes, with opt-in for more than 48 KiB
    shared_allocation_unit: int = 128  # bytes
    reserved_shared_per_block: int = 0  # bytes the driver keeps per block (cc >= 8.0: 1 KiB)


KIB = 1024
LIMITS: dict[str, ArchLimits] = {a.name: a for a in (  # by nbkit.core.hw.sm_name
    ArchLimits("sm_70", "V100", 64, 32, shared_per_sm=96 * KIB, max_shared_per_block=96 * KIB, shared_allocation_unit=256),
    ArchLimits("sm_75", "T4", 32, 16, shared_per_sm=64 * KIB, max_shared_per_block=64 * KIB, shared_allocation_unit=256),
    ArchLimits("sm_80", "A100", 64, 32, shared_per_sm=164 * KIB, max_shared_per_block=163 * KIB,
               reserved_shared_per_block=KIB),
    ArchLimits("sm_86", "RTX 3090 / A10", 48, 16, shared_per_sm=100 * KIB, max_shared_per_block=99 * KIB,
               reserved_shared_per_block=KIB),
    ArchLimits("sm_89", "RTX 4090 / L4", 48, 24, shared_per_sm=100 * KIB, max_shared_per_block=99 * KIB,
               reserved_shared_per_block=KIB),
    ArchLimits("sm_90", "H100", 64, 32, shared_per_sm=228 * KIB, max_shared_per_block=227 * KIB,
               reserved_shared_per_block=KIB),
)}


def arch(cc: Arch | ArchLimits) -> ArchLimits:
    """The limits for ``cc`` given as ``"sm_80"``, ``"8.0"``, ``"80"`` or ``(8, 0)`` (see :func:`nbkit.core.hw.sm_name`)."""
    if isinstance(cc, ArchLimits):
        return cc
    key = sm_name(cc)
    if key not in LIMITS:
        raise ValueError(f"unknown architecture {key!r}; known: {', '.join(LIMITS)} (also written '8.0' or (8, 0))")
    return LIMITS[key]


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks and warps per SM for one launch configuration (a MODEL from documented limits)."""

    arch: str
    threads_per_block: int
    registers_per_thread: int
    shared_bytes_per_block: int
    active_blocks: int
    active_warps: int
    max_warps: int
    limits: dict  # blocks per SM allowed by each resource: warps, blocks, registers, shared memory (if used)
    limited_by: tuple[str, ...]  # the resources whose limit equals active_blocks

    @property
    def fraction(self) -> float:
        return self.active_warps / self.max_warps

    def __str__(self) -> str:
        return (f"MODEL occupancy on {self.arch}: {self.active_blocks} blocks x {self.threads_per_block} threads = "
                f"{self.active_warps}/{self.max_warps} warps = {self.fraction:.0%} "
                f"(limited by {', '.join(self.limited_by)}; {self.registers_per_thread} registers/thread, "
                f"{self.shared_bytes_per_block} B shared/block)")


def occupancy(cc: Arch | ArchLimits, threads_per_block: int, registers_per_thread: int,
              shared_bytes_per_block: int = 0) -> Occupancy:
    """Active blocks, warps and occupancy per SM, and what limits them, by the occupancy calculator's rules.

    ``shared_bytes_per_block`` is static plus dynamic shared memory of one block. A configuration that
    cannot launch at all (too many threads, registers or shared memory) has 0 active blocks.
    """
    a = arch(cc)
    for label, value in (("threads_per_block", threads_per_block), ("registers_per_thread", registers_per_thread),
                         ("shared_bytes_per_block", shared_bytes_per_block)):
        if int(value) != value or value < (1 if label == "threads_per_block" else 0):
            raise ValueError(f"{label} must be a {'positive' if label == 'threads_per_block' else 'non-negative'} "
                             f"integer, got {value!r}")
    warps_per_block = -(-threads_per_block // WARP_SIZE)
    # warps
    by_warps = a.max_warps_per_sm // warps_per_block if threads_per_block <= MAX_THREADS_PER_BLOCK else 0
    # registers: per warp, rounded to the allocation unit, fitted into each sub-partition
    regs_per_warp = _round_up(registers_per_thread * WARP_SIZE, a.register_allocation_unit)
    regs_assumed_per_block = regs_per_warp * _round_up(warps_per_block, a.register_sub_partitions)
    if registers_per_thread > a.max_registers_per_thread or regs_assumed_per_block > a.max_registers_per_block:
        by_regs = 0
    elif regs_per_warp == 0:
        by_regs = a.max_blocks_per_sm
    else:
        warps_per_partition = (a.registers_per_sm // a.register_sub_partitions) // regs_per_warp
        by_regs = warps_per_partition * a.register_sub_partitions // warps_per_block
    # shared memory
    shared_alloc = _round_up(shared_bytes_per_block + a.reserved_shared_per_block, a.shared_allocation_unit)
    limits = {"warps": by_warps, "blocks": a.max_blocks_per_sm, "registers": by_regs}
    if shared_bytes_per_block > a.max_shared_per_block:
        limits["shared memory"] = 0
    elif shared_bytes_per_block > 0:  # cuda_occupancy.h: a block without shared memory sets no shared-memory limit
        limits["shared memory"] = a.shared_per_sm // shared_alloc
    blocks = min(limits.values())
    limited_by = tuple(k for k, v in limits.items() if v == blocks)
    return Occupancy(a.name, threads_per_block, registers_per_thread, shared_bytes_per_block, blocks,
                     blocks * warps_per_block, a.max_warps_per_sm, limits, limited_by)


def occupancy_by_block_size(cc: Arch | ArchLimits, registers_per_thread: int, shared_bytes_per_block: int = 0,
                            block_sizes=tuple(range(32, 1025, 32))) -> list[Occupancy]:
    """Occupancy for each block size at a fixed register count and shared memory (for a plot vs block size)."""
    return [occupancy(cc, n, registers_per_thread, shared_bytes_per_block) for n in block_sizes]
