"""Pure jax.numpy maths of computation in superposition (no flax)."""

from mimojax.ops.attention import (bundle_mass_spread, dpfp_kernel, exp_kernel, favor_attention,
                                   favor_s_attention, favor_s_exact_attention,
                                   favor_s_exact_normalisers, favor_s_normalisers,
                                   gaussian_orthogonal_matrix, relu_kernel, softmax_attention)
from mimojax.ops.binding import (gaussian_keys, hrr_bind, hrr_unbind, key_orthonormality_penalty,
                                 map_bind, map_unbind, mbat_unbind, rademacher_keys, superpose)
from mimojax.ops.channels import assign_channels, from_grid, merge_replicas, to_grid
from mimojax.ops.isometry import conv_isometry_penalty, dense_isometry_penalty, isometry_penalty
from mimojax.ops.losses import accuracy, cross_entropy, info_nce, mixup, pm1_mse
from mimojax.ops.multiplex import (binary_vectors, gaussian_vectors, haar_orthogonal,
                                   hadamard_mux, index_prefix, low_rank_matrices, matrix_mux,
                                   retrieval_targets, revmux_demux, revmux_mux)
