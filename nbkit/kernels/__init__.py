"""Every CUDA kernel of the course, once, with the wrapper that checks its inputs and launches it."""
