"""The forward loop of Triton's fused-attention tutorial, compiled (never run) as the reference of the
gates (kernel ``tutorial_fwd``)."""

from __future__ import annotations

import triton
import triton.language as tl


# Restated from the forward kernel of Triton's fused-attention tutorial (triton-lang/triton,
# python/tutorials/06-fused-attention.py, `_attn_fwd` with `_attn_fwd_inner`, non-causal; MIT license,
# Copyright 2018-2020 Philippe Tillet, 2020-2025 OpenAI): block-pointer loads without boundary checks
# (N a multiple of the tiles), online softmax in log2 units, P cast to V's dtype (the tutorial casts to
# fp16, which bf16 V does not take). Compiled only, never run: the reference loop of the gates.
@triton.jit
def _tutorial_attn_fwd(Q, K, V, sm_scale, M, Out,
                       stride_qz, stride_qh, stride_qm, stride_qk, stride_kz, stride_kh, stride_kn, stride_kk,
                       stride_vz, stride_vh, stride_vk, stride_vn, stride_oz, stride_oh, stride_om, stride_on,
                       Z, H, N_CTX,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    q_off = (off_hz // H).to(tl.int64) * stride_qz + (off_hz % H).to(tl.int64) * stride_qh
    kv_off = (off_hz // H).to(tl.int64) * stride_kz + (off_hz % H).to(tl.int64) * stride_kh
    v_off = (off_hz // H).to(tl.int64) * stride_vz + (off_hz % H).to(tl.int64) * stride_vh
    o_off = (off_hz // H).to(tl.int64) * stride_oz + (off_hz % H).to(tl.int64) * stride_oh
    Q_ptr = tl.make_block_ptr(Q + q_off, (N_CTX, HEAD_DIM), (stride_qm, stride_qk), (start_m * BLOCK_M, 0),
                              (BLOCK_M, HEAD_DIM), (1, 0))  # fmt: skip
    K_ptr = tl.make_block_ptr(K + kv_off, (HEAD_DIM, N_CTX), (stride_kk, stride_kn), (0, 0),
                              (HEAD_DIM, BLOCK_N), (0, 1))  # fmt: skip
    V_ptr = tl.make_block_ptr(V + v_off, (N_CTX, HEAD_DIM), (stride_vk, stride_vn), (0, 0),
                              (BLOCK_N, HEAD_DIM), (1, 0))  # fmt: skip
    O_ptr = tl.make_block_ptr(Out + o_off, (N_CTX, HEAD_DIM), (stride_om, stride_on), (start_m * BLOCK_M, 0),
                              (BLOCK_M, HEAD_DIM), (1, 0))  # fmt: skip
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504
    q = tl.load(Q_ptr)
    for start_n in range(0, N_CTX, BLOCK_N):  # the tutorial's _attn_fwd_inner, CAUSAL = False
        start_n = tl.multiple_of(start_n, BLOCK_N)
        qk = tl.dot(q, tl.load(K_ptr))
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        l_ij = tl.sum(p, 1)
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + l_ij
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(V.dtype.element_ty), tl.load(V_ptr), acc)
        m_i = m_ij
        V_ptr = tl.advance(V_ptr, (BLOCK_N, 0))
        K_ptr = tl.advance(K_ptr, (0, BLOCK_N))
    m_i += tl.math.log2(l_i)
    tl.store(M + off_hz * N_CTX + start_m * BLOCK_M + tl.arange(0, BLOCK_M), m_i)
    tl.store(O_ptr, (acc / l_i[:, None]).to(Out.type.element_ty))
