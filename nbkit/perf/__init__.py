"""Compiler facts, models and benchmarks: PTX, cubin/SASS, occupancy and roofline (MODELs), benchmarks."""
