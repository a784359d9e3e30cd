// The LibTorch headers our torch translation units use, precompiled once (they cost ~15 s a file).
#pragma once
#include <torch/torch.h>
#include <ATen/record_function.h>
