"""The launch layer: mode, hardware limits, checked launches, the kernel registry, timing."""
