#pragma once

// The one header every translation unit includes: ATen, the dispatcher registration API and
// at::parallel_for. Deliberately not <torch/extension.h> (pybind11 + autograd headers), which only
// module.cpp needs; keeping it out roughly halves compile time per kernel file.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#if defined(_WIN32)
#define HNLM_API __declspec(dllexport)
#else
#define HNLM_API __attribute__((visibility("default")))
#endif
