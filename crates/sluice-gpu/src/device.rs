//! Finding an OpenCL device at run time: the loader is opened with
//! `dlopen` on first use, so a box without one only learns that here.

use opencl3::device::{
    CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU, Device,
};
use opencl3::error_codes::{ClError, DLOPEN_RUNTIME_LOAD_FAILED};
use opencl3::platform::get_platforms;

use std::sync::OnceLock;

use crate::GpuError;

/// What kind of device a driver exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A GPU (NVIDIA, AMD, Intel).
    Gpu,
    /// An accelerator card.
    Accelerator,
    /// The host CPU behind an OpenCL driver (pocl): correct, not fast.
    Cpu,
    /// Anything else.
    Other,
}

impl DeviceKind {
    /// The name used in logs and `sluice hw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::Accelerator => "accelerator",
            Self::Cpu => "cpu",
            Self::Other => "other",
        }
    }

    /// Whether offloading to it can beat the CPU backend at all.
    pub fn is_offload(self) -> bool {
        matches!(self, Self::Gpu | Self::Accelerator)
    }
}

/// One OpenCL device, as probed.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub(crate) device: Device,
    /// The platform (driver) name.
    pub platform: String,
    /// The device name.
    pub name: String,
    /// The driver version.
    pub driver: String,
    /// GPU, CPU, ...
    pub kind: DeviceKind,
    /// Compute units.
    pub compute_units: u32,
    /// Global memory, bytes.
    pub global_mem: u64,
}

impl DeviceInfo {
    /// One line for logs: `NVIDIA CUDA / NVIDIA H200 (gpu, 132 CUs, 141 GiB)`.
    pub fn describe(&self) -> String {
        format!(
            "{} / {} ({}, {} compute units, {} MiB, driver {})",
            self.platform,
            self.name,
            self.kind.name(),
            self.compute_units,
            self.global_mem >> 20,
            self.driver
        )
    }
}

fn map_err(call: &'static str) -> impl Fn(ClError) -> GpuError {
    move |e| {
        if e.0 == DLOPEN_RUNTIME_LOAD_FAILED {
            GpuError::NoRuntime
        } else {
            GpuError::Cl { call, code: e.0 }
        }
    }
}

/// Every OpenCL device of every platform, GPUs first. Probed once per
/// process (drivers are not safe to initialize from two threads at once:
/// pocl crashed doing so); later calls return the same answer.
pub fn probe() -> Result<Vec<DeviceInfo>, GpuError> {
    static PROBED: OnceLock<Result<Vec<DeviceInfo>, GpuError>> = OnceLock::new();
    PROBED.get_or_init(probe_now).clone()
}

fn probe_now() -> Result<Vec<DeviceInfo>, GpuError> {
    let platforms = match get_platforms() {
        Ok(p) => p,
        // -1001: the ICD loader found no driver at all.
        Err(e) if e.0 == -1001 => {
            return Err(GpuError::NoDevice(
                ": no OpenCL driver (ICD) is installed".into(),
            ));
        }
        Err(e) => return Err(map_err("clGetPlatformIDs")(e)),
    };
    let mut found = Vec::new();
    for platform in platforms {
        let platform_name = platform
            .name()
            .unwrap_or_else(|_| "unknown platform".into());
        // A platform without devices answers CL_DEVICE_NOT_FOUND.
        let Ok(ids) = platform.get_devices(CL_DEVICE_TYPE_ALL) else {
            continue;
        };
        for id in ids {
            let device = Device::new(id);
            let kind = match device.dev_type().unwrap_or(0) {
                t if t & CL_DEVICE_TYPE_GPU != 0 => DeviceKind::Gpu,
                t if t & CL_DEVICE_TYPE_ACCELERATOR != 0 => DeviceKind::Accelerator,
                t if t & CL_DEVICE_TYPE_CPU != 0 => DeviceKind::Cpu,
                _ => DeviceKind::Other,
            };
            if !device.available().unwrap_or(false) || !device.compiler_available().unwrap_or(false)
            {
                continue;
            }
            found.push(DeviceInfo {
                device,
                platform: platform_name.trim().to_owned(),
                name: device.name().unwrap_or_default().trim().to_owned(),
                driver: device
                    .driver_version()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                kind,
                compute_units: device.max_compute_units().unwrap_or(0),
                global_mem: device.global_mem_size().unwrap_or(0),
            });
        }
    }
    found.sort_by_key(|d| match d.kind {
        DeviceKind::Gpu => 0,
        DeviceKind::Accelerator => 1,
        DeviceKind::Cpu => 2,
        DeviceKind::Other => 3,
    });
    Ok(found)
}
