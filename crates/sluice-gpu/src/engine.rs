//! [`Engine`]: one device's context, the built kernels, and the key table
//! that lives in device memory; [`GpuKey`]: one key's slot in it.

use std::ptr;
use std::sync::{Arc, Mutex};

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::CL_BLOCKING;

use crate::layout::KEY_WORDS;
use crate::{DeviceInfo, GpuError};

/// The kernel source, compiled by the driver at start-up.
pub const KERNEL_SOURCE: &str = include_str!("../../../hw/gpu/aes_gcm.cl");

/// Most keys one [`Engine::keys`] call sets up in one launch.
const SETUP_BATCH: usize = 256;

/// An opened device with the AES-GCM kernels built on it. Cheap to
/// clone (shared); make one per process and one [`crate::Lane`] per
/// packet worker.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) info: DeviceInfo,
    pub(crate) context: Context,
    pub(crate) program: Program,
    /// Work-group size the kernels were built for (a power of two).
    pub(crate) wg: usize,
    /// `capacity * KEY_WORDS` words: every key slot.
    pub(crate) keys: Buffer<u32>,
    pub(crate) capacity: usize,
    setup: Mutex<Setup>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("device", &self.info.name)
            .field("wg", &self.wg)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Key uploads: control-path work (once per leg), serialized.
struct Setup {
    queue: CommandQueue,
    kernel: Kernel,
    raw: Buffer<u8>,
    desc: Buffer<u32>,
    free: Vec<u32>,
    next: u32,
}

fn build(context: &Context, wg: usize) -> Result<Program, GpuError> {
    let options = format!("-DWG={wg} -cl-std=CL1.2");
    Program::create_and_build_from_source(context, KERNEL_SOURCE, &options).map_err(GpuError::Build)
}

impl Engine {
    /// Opens `device`, builds the kernels and reserves room for
    /// `key_capacity` keys (2.5 KiB of device memory each).
    pub fn open(device: &DeviceInfo, key_capacity: usize) -> Result<Self, GpuError> {
        // Context creation and program builds run one at a time: it is
        // start-up work, and not every driver is safe doing them in
        // parallel.
        static OPENING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = OPENING.lock().unwrap_or_else(|e| e.into_inner());
        let context =
            Context::from_device(&device.device).map_err(GpuError::cl("clCreateContext"))?;
        let id = device.device.id();
        // Build for 64 work-items per job, fewer where the device (or its
        // register use of this kernel) allows fewer.
        let mut wg = 64usize;
        let program = loop {
            let program = build(&context, wg)?;
            let kernel =
                Kernel::create(&program, "gcm_crypt").map_err(GpuError::cl("clCreateKernel"))?;
            let most = kernel
                .get_work_group_size(id)
                .map_err(GpuError::cl("clGetKernelWorkGroupInfo"))?;
            if most >= wg || wg == 1 {
                break program;
            }
            wg = most.max(1).next_power_of_two() / if most.is_power_of_two() { 1 } else { 2 };
        };
        let capacity = key_capacity.max(1);
        // SAFETY: a fresh device allocation with no host pointer.
        #[allow(unsafe_code)]
        let (keys, raw, desc) = unsafe {
            (
                Buffer::<u32>::create(
                    &context,
                    CL_MEM_READ_WRITE,
                    capacity * KEY_WORDS,
                    ptr::null_mut(),
                )
                .map_err(GpuError::cl("clCreateBuffer"))?,
                Buffer::<u8>::create(
                    &context,
                    CL_MEM_READ_ONLY,
                    SETUP_BATCH * 32,
                    ptr::null_mut(),
                )
                .map_err(GpuError::cl("clCreateBuffer"))?,
                Buffer::<u32>::create(&context, CL_MEM_READ_ONLY, SETUP_BATCH * 2, ptr::null_mut())
                    .map_err(GpuError::cl("clCreateBuffer"))?,
            )
        };
        #[allow(deprecated)] // clCreateCommandQueue: the OpenCL 1.2 call, which every driver has.
        let queue = CommandQueue::create_default(&context, 0)
            .map_err(GpuError::cl("clCreateCommandQueue"))?;
        let kernel =
            Kernel::create(&program, "gcm_setup").map_err(GpuError::cl("clCreateKernel"))?;
        let setup = Setup {
            queue,
            kernel,
            raw,
            desc,
            free: Vec::new(),
            next: 0,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                info: device.clone(),
                context,
                program,
                wg,
                keys,
                capacity,
                setup: Mutex::new(setup),
            }),
        })
    }

    /// The device this engine runs on.
    pub fn device(&self) -> &DeviceInfo {
        &self.shared.info
    }

    /// Work-items per job the kernels were built for.
    pub fn work_group_size(&self) -> usize {
        self.shared.wg
    }

    /// How many keys the device holds at most.
    pub fn key_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Uploads one raw 16- or 32-byte key; see [`Self::keys`].
    pub fn key(&self, raw: &[u8]) -> Result<GpuKey, GpuError> {
        let mut keys = self.keys(&[raw])?;
        keys.pop().ok_or(GpuError::KeysFull(self.shared.capacity))
    }

    /// Uploads raw 16- or 32-byte keys and expands each on the device into
    /// its slot (round keys, powers of H); blocks until done. Called once
    /// per leg, never per packet.
    pub fn keys(&self, raws: &[&[u8]]) -> Result<Vec<GpuKey>, GpuError> {
        if let Some(bad) = raws.iter().find(|r| r.len() != 16 && r.len() != 32) {
            return Err(GpuError::BadKeyLength(bad.len()));
        }
        let mut out = Vec::with_capacity(raws.len());
        // A poisoned lock only means another thread panicked mid-upload;
        // the free list is still consistent (slots are taken before use).
        let mut setup = self.shared.setup.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in raws.chunks(SETUP_BATCH) {
            let mut slots = Vec::with_capacity(chunk.len());
            for _ in chunk {
                let slot = match setup.free.pop() {
                    Some(slot) => slot,
                    None if (setup.next as usize) < self.shared.capacity => {
                        setup.next += 1;
                        setup.next - 1
                    }
                    None => {
                        setup.free.extend(slots);
                        return Err(GpuError::KeysFull(self.shared.capacity));
                    }
                };
                slots.push(slot);
            }
            let mut raw = vec![0u8; chunk.len() * 32];
            let mut desc = Vec::with_capacity(chunk.len() * 2);
            for ((bytes, into), slot) in chunk.iter().zip(raw.chunks_exact_mut(32)).zip(&slots) {
                into[..bytes.len()].copy_from_slice(bytes);
                desc.extend([*slot, bytes.len() as u32]);
            }
            let result = run_setup(&mut setup, &self.shared.keys, &raw, &desc);
            // Leave no copy of key material in host memory.
            raw.iter_mut().for_each(|b| *b = 0);
            if let Err(e) = result {
                setup.free.extend(slots);
                return Err(e);
            }
            out.extend(slots.into_iter().map(|slot| {
                GpuKey(Arc::new(KeySlot {
                    slot,
                    shared: Arc::clone(&self.shared),
                }))
            }));
        }
        Ok(out)
    }
}

fn run_setup(
    setup: &mut Setup,
    keys: &Buffer<u32>,
    raw: &[u8],
    desc: &[u32],
) -> Result<(), GpuError> {
    let count = (desc.len() / 2) as u32;
    let Setup {
        queue,
        kernel,
        raw: raw_buf,
        desc: desc_buf,
        ..
    } = setup;
    // SAFETY: blocking writes from live slices into buffers at least that
    // large (SETUP_BATCH bounds both); the kernel's arguments match its
    // signature in aes_gcm.cl (raw, setup, keys, count) and it touches only
    // the slots named in `desc`, which are below the key capacity; `finish`
    // returns only after the kernel ran, so nothing outlives its inputs.
    #[allow(unsafe_code)]
    unsafe {
        queue
            .enqueue_write_buffer(raw_buf, CL_BLOCKING, 0, raw, &[])
            .map_err(GpuError::cl("clEnqueueWriteBuffer"))?;
        queue
            .enqueue_write_buffer(desc_buf, CL_BLOCKING, 0, desc, &[])
            .map_err(GpuError::cl("clEnqueueWriteBuffer"))?;
        ExecuteKernel::new(kernel)
            .set_arg(raw_buf)
            .set_arg(desc_buf)
            .set_arg(keys)
            .set_arg(&count)
            .set_global_work_size(count as usize)
            .enqueue_nd_range(queue)
            .map_err(GpuError::cl("clEnqueueNDRangeKernel"))?;
    }
    queue.finish().map_err(GpuError::cl("clFinish"))
}

/// A key in the device's key table. The slot is freed when the last
/// clone goes (the leg's session, and any batch still in flight with it).
#[derive(Debug, Clone)]
pub struct GpuKey(pub(crate) Arc<KeySlot>);

pub(crate) struct KeySlot {
    pub(crate) slot: u32,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The slot number is not secret; the key never leaves the device.
        write!(f, "GpuKey(slot {})", self.slot)
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut setup = self.shared.setup.lock().unwrap_or_else(|e| e.into_inner());
        setup.free.push(self.slot);
    }
}

impl GpuKey {
    /// Whether this key lives on `engine`.
    pub fn is_on(&self, engine: &Engine) -> bool {
        Arc::ptr_eq(&self.0.shared, &engine.shared)
    }
}
