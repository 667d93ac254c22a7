//! What the GPU backend can refuse or fail at.

/// Why a GPU operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// No OpenCL loader (`libOpenCL.so.1`) could be loaded.
    #[error(
        "no OpenCL runtime: libOpenCL.so.1 did not load (install ocl-icd-libopencl1 and a driver's ICD)"
    )]
    NoRuntime,
    /// The loader is there but no platform offers a usable device.
    #[error("no OpenCL device{0}")]
    NoDevice(String),
    /// An OpenCL call failed.
    #[error("OpenCL {call} failed with error {code}")]
    Cl {
        /// Which call.
        call: &'static str,
        /// The OpenCL error code (negative).
        code: i32,
    },
    /// The kernels did not compile on this device.
    #[error("the AES-GCM kernels did not build: {0}")]
    Build(String),
    /// AES-GCM keys are 16 or 32 bytes.
    #[error("an AES-GCM key must be 16 or 32 bytes long, not {0}")]
    BadKeyLength(usize),
    /// Every key slot on the device is taken.
    #[error("all {0} GPU key slots are in use (raise the key capacity)")]
    KeysFull(usize),
    /// A job's AAD and data need more GHASH blocks than the kernels hold
    /// powers of H for.
    #[error("a job of {aad} AAD bytes and {data} data bytes is too long for the GPU kernels")]
    TooLong {
        /// AAD bytes.
        aad: usize,
        /// Data bytes.
        data: usize,
    },
    /// A batch mixed keys of two engines.
    #[error("a key from another GPU engine was used")]
    ForeignKey,
}

impl GpuError {
    pub(crate) fn cl(call: &'static str) -> impl FnOnce(opencl3::error_codes::ClError) -> Self {
        move |e| Self::Cl { call, code: e.0 }
    }
}
