"""The network: layers, backends (kernels, CPU path), the NumPy reference, data, training, data parallelism."""
