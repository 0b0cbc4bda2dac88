#pragma once

#include "../extensions.h"

// CSR propagation kernels over the symmetric normalized adjacency A_hat (rowptr, col, val).
// Autograd lives in recbole_hnlm/ops/propagation.py; every backward is one of these forwards
// because A_hat is symmetric.

// A_hat @ x.  x: [N, d] -> [N, d]
at::Tensor spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val, const at::Tensor& x);

// mean_{k=0..K} A_hat^k ego without materialising the K+1 layers.  ego: [N, d] -> [N, d]
at::Tensor lightgcn_mean_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                             const at::Tensor& ego, int64_t num_layers);

// The stack [A_hat^0 ego, ..., A_hat^K ego].  ego: [N, d] -> [N, K+1, d]
at::Tensor lightgcn_layers_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                               const at::Tensor& ego, int64_t num_layers);

// Vector-Jacobian product of lightgcn_layers by Horner: g0 + A(g1 + A(g2 + ...)).
// grad_layers: [N, K+1, d] -> [N, d]
at::Tensor lightgcn_layers_backward_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                                        const at::Tensor& grad_layers);
