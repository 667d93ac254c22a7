//! sluice's GPU AES-GCM backend: batches of AES-128/256-GCM seals and
//! opens (NIST SP 800-38D, as SRTP uses it in RFC 7714: 12-byte IV, the
//! RTP header as AAD, 16-byte tag) run as OpenCL kernels, one work-group
//! per packet, each packet under its own key.
//!
//! # Why OpenCL, loaded at run time
//!
//! The build must need no GPU SDK, CI must run the kernels on a machine
//! without a GPU, and an operator's GPU box must run them with the driver
//! it already has. OpenCL does all three: NVIDIA, AMD and Intel drivers
//! ship an OpenCL ICD, CI runs the same kernels on pocl
//! (`pocl-opencl-icd`, the host CPU as an OpenCL device), and the
//! `opencl3` crate (0.12, with its `dynamic` feature) opens
//! `libOpenCL.so.1` with `dlopen` on first use, so nothing is linked at
//! build time and a box without it just gets [`GpuError::NoRuntime`].
//! It builds in seconds (two small crates, no build script), where wgpu
//! would bring naga, a shader translator and a Vulkan stack to every
//! build; and OpenCL C is plain C to review. CUDA (cudarc + NVRTC) would
//! run on NVIDIA only and not on CI at all.
//!
//! # Constant time
//!
//! The kernels (`hw/gpu/aes_gcm.cl`) never index memory with a secret and
//! never branch or bound a loop on one. T-table AES leaks its key through
//! GPU shared-memory bank conflicts and coalescing (Jiang, Fei, Kaeli,
//! HPCA 2016), so AES is bitsliced: two blocks at a time in eight 32-bit
//! words, SubBytes as the Boyar–Peralta logic circuit, ShiftRows and
//! MixColumns as fixed shifts and rotations; the key schedule's SubWord
//! runs through the same circuit. GHASH multiplies in GF(2^128) with
//! carry-less 32×32-bit products built from integer multiplications of
//! operands masked to every fourth bit (BearSSL's `ghash_ctmul32`
//! technique), and reduces with fixed shifts. Loop bounds and branches
//! depend only on lengths, block and work-item indices, the round count
//! and the key slot number, all public. How that is checked: every table
//! in the source is a constant-index array (`grep` finds no `__constant`
//! table and no array indexed by data), the code review of
//! `aes_gcm.cl` against that rule, and the tests, which would fail on any
//! mistake in the arithmetic that replaced the tables. Tag comparison
//! happens on the host, in constant time (the caller's job; sluice uses
//! `subtle`).
//!
//! # How to drive it
//!
//! [`probe`] lists devices; [`Engine::open`] builds the kernels on one
//! and reserves the device-side key table; [`Engine::key`] uploads a key
//! once (its round keys and H^1..H^128 are computed on the device and
//! stay there until the last [`GpuKey`] clone drops). Each packet worker
//! makes its own [`Lane`], fills a [`Batch`] ([`Batch::push`], or
//! [`Batch::push_same_data`] for a fan-out whose payload crosses the bus
//! once), [`Lane::submit`]s it without blocking, and collects finished
//! batches in submission order with [`Lane::poll`] on a later loop turn
//! ([`Lane::wait`] where blocking is fine: tests, calibration).

mod device;
mod engine;
mod error;
mod lane;
pub mod layout;

pub use device::{DeviceInfo, DeviceKind, probe};
pub use engine::{Engine, GpuKey, KERNEL_SOURCE};
pub use error::GpuError;
pub use lane::{Batch, Direction, Lane, StageTimes, Ticket};
