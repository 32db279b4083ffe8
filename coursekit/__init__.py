"""Course tooling outside the runtime package: the set-up plan (run before numba is installed) and learner copies."""
