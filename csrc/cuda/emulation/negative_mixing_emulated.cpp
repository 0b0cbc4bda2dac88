// csrc/cuda/negative_mixing_cuda.cu, unchanged, compiled as C++ for the warp emulator (HNLM_CUDA_EMULATION).
#include "../negative_mixing_cuda.cu"
