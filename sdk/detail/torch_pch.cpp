// Compiles the precompiled LibTorch header once for every target that reuses it.
