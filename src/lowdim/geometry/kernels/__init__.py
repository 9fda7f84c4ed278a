"""Fused Bhattacharyya kernels: per-sample coefficients formed in registers, never stored.

Both kernels share one contract. Given square roots of probabilities for rows i and j and a
running state per pair (``prod``, ``expo``), they walk the samples in order and, per pair,

    prod *= clip(sum_c sqrt(p_i[n, c] p_j[n, c]), bc_floor, 1)

and every ``group`` samples (counted globally, so splitting the samples into chunks changes
nothing) move the binary exponent of ``prod`` into the integer ``expo`` and reset ``prod`` to its
mantissa in [1, 2). Rescaling by a power of two is exact, so after the last sample
``sum_n log clip(BC_n) = expo * ln 2 + log(prod)``: one log per pair instead of one per sample,
and no underflow as long as ``bc_floor ** group`` stays a normal number (``rescale_group``).

- ``numba_bc``: CPU, float32 coefficients, float64 product (see its docstring).
- ``triton_bc``: CUDA, float32 coefficients and product (its docstring bounds the error).

``numba_euclid`` is the same tiling for the Euclidean comparison (``geometry.euclidean``): a
float64 running sum of per-sample distances per pair.
"""
