//! CUDA reduction kernels (placeholder module; see the gpu issue).
