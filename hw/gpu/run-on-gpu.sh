#!/usr/bin/env bash
# One short run of the GPU AES-GCM backend on a machine with a real GPU
# (issue #14): device info, every correctness check through the kernels on
# that device, then the seal-time sweep N in {16, 64, 256, 1024, 4096} with
# upload, kernel and download times separated, and the criterion run of
# ring vs the GPU in one process. Writes everything under $OUT (default
# ./gpu-run) and prints a summary. Budget: ~8 minutes on a warm build.
#
#   bash hw/gpu/run-on-gpu.sh            # from the repository root
#
# Needs: the GPU's OpenCL ICD (NVIDIA: libnvidia-compute / the driver's
# /etc/OpenCL/vendors/nvidia.icd; AMD: ROCm OpenCL; Intel: intel-opencl-icd)
# and ocl-icd-libopencl1. Nothing GPU-specific is needed to build.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-run}"
mkdir -p "$OUT"
export CARGO_TERM_COLOR=never
# The checks must not skip: a missing device is a failure here.
export CI=1

echo "== device" | tee "$OUT/summary.txt"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv 2>/dev/null || true
    clinfo -l 2>/dev/null || echo "clinfo not installed"
    ls /etc/OpenCL/vendors/ 2>/dev/null || echo "no /etc/OpenCL/vendors"
} | tee "$OUT/device.txt" | tee -a "$OUT/summary.txt"

echo "== build (release, bench profile)" | tee -a "$OUT/summary.txt"
cargo build --release --bin sluice 2>&1 | tail -2
cargo bench --bench gpu --no-run 2>&1 | tail -1

# GPU first: sluice picks the first GPU OpenCL device. Without one every
# figure below would be a CPU driver's; refuse unless told otherwise.
if ./target/release/sluice hw | grep -q 'none under gpu = "auto"'; then
    echo "NO GPU OpenCL DEVICE: figures would be a CPU driver's (set ALLOW_CPU=1 to run anyway)" | tee -a "$OUT/summary.txt"
    [ "${ALLOW_CPU:-0}" = 1 ] || exit 1
fi

echo "== correctness on this device" | tee -a "$OUT/summary.txt"
# The kernels' own suite (GCM vectors, thousands of random packets against
# ring, shared-payload fan-outs, in-order completions), then the GPU
# backend through AnyGcm (RFC 7714 vectors, differential and tamper tests,
# the deferred fan-out), libsrtp interop and the relay end to end.
timeout 300 cargo test --release -p sluice-gpu 2>&1 | tee "$OUT/test-kernels.txt" | grep -E "test result|FAILED|panicked" | tee -a "$OUT/summary.txt"
timeout 300 cargo test --release --lib -- crypto:: srtp::tests relay::tests::gpu 2>&1 | tee "$OUT/test-backend.txt" | grep -E "test result|FAILED|panicked" | tee -a "$OUT/summary.txt"
timeout 300 cargo test --release --test libsrtp_interop --test relay 2>&1 | tee "$OUT/test-interop.txt" | grep -E "test result|FAILED|panicked" | tee -a "$OUT/summary.txt"

echo "== sweep: seal time per batch, ring (one core) vs GPU, stages separated" | tee -a "$OUT/summary.txt"
./target/release/sluice hw --calibrate 2>&1 | tee "$OUT/hw.txt" | tee -a "$OUT/summary.txt"

echo "== criterion: benches/gpu.rs (ring and gpu rows, same run)" | tee -a "$OUT/summary.txt"
timeout 300 cargo bench --bench gpu 2>&1 | tee "$OUT/criterion.txt" | grep -E "^seal_fanout|time:|thrpt:" | tee -a "$OUT/summary.txt"

echo "== done: $OUT/summary.txt" | tee -a "$OUT/summary.txt"
