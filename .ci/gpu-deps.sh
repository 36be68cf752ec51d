#!/usr/bin/env bash
# Installs what build.rs needs to compile tutti's CUDA kernels on a machine without a
# CUDA toolkit or GPU (idempotent; quiet unless something fails):
#   nvidia-cuda-nvrtc-cu12    libnvrtc: build.rs compiles kernels/*.cu to PTX with it
#   nvidia-cuda-runtime-cu12  CUDA's headers (cuda_fp16.h, ...), passed to NVRTC with -I
#   nvidia-cuda-nvcc-cu12     ptxas: assembles the PTX for sm_80/sm_90 (embedded SASS,
#                             register and spill report)
# build.rs finds them in python3's site-packages (nvidia/cuda_*). Pair with
# TUTTI_REQUIRE_NVRTC=1 so that a missing compiler fails the build instead of
# silently embedding the source.
set -euo pipefail

PYTHON=${PYTHON:-python3}
PACKAGES=(nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! "$PYTHON" -m pip show --quiet "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    echo "gpu-deps: installing ${missing[*]}"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

# Report what build.rs will find.
"$PYTHON" - <<'PY'
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
def find(pattern):
    for d in dirs:
        hits = sorted(glob.glob(os.path.join(d, pattern)))
        if hits:
            return hits[0]
    return None
for what, pattern in [("libnvrtc", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"),
                      ("cuda_fp16.h", "nvidia/cuda_runtime/include/cuda_fp16.h"),
                      ("ptxas", "nvidia/cuda_nvcc/bin/ptxas")]:
    hit = find(pattern)
    print(f"gpu-deps: {what}: {hit or 'NOT FOUND'}")
    if hit is None and what == "libnvrtc":
        raise SystemExit("gpu-deps: libnvrtc is missing after installation")
PY
