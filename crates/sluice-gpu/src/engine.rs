//! [`Engine`]: one device's context, the built kernels, and the key table
//! that lives in device memory; [`GpuKey`]: one key's slot in it.

use std::ptr;
use std::sync::{Arc, Mutex};

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::event::Event;
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE, ClMem};
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, CL_NON_BLOCKING};

use crate::layout::KEY_WORDS;
use crate::{DeviceInfo, GpuError};

/// The kernel source, compiled by the driver at start-up.
pub const KERNEL_SOURCE: &str = include_str!("../../../hw/gpu/aes_gcm.cl");

/// Most keys one [`Engine::keys`] call sets up in one launch.
const SETUP_BATCH: usize = 256;

/// What a freed slot is overwritten with, so that no round key or power
/// of H outlives its leg in device memory. A `static`, because the
/// non-blocking write that uses it may complete after the drop returns.
static ZERO_SLOT: [u32; KEY_WORDS] = [0; KEY_WORDS];

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
    /// Wipes the slot on the device, then returns it to the free list.
    ///
    /// The wipe is queued, not waited for, so the thread that drops the
    /// last clone (possibly a packet worker recycling a batch) never blocks
    /// on the device. It cannot race a reuse: the slot is only handed out
    /// again by [`Engine::keys`], whose upload goes through the same
    /// in-order queue and ends with `finish`, after the wipe. It cannot
    /// race a batch either: every batch holds a clone, so the last clone
    /// goes only once no batch uses the key. If the driver refuses the
    /// write, the old words stay until the slot's next key overwrites them.
    fn drop(&mut self) {
        let mut setup = self.shared.setup.lock().unwrap_or_else(|e| e.into_inner());
        let offset = self.slot as usize * KEY_WORDS * std::mem::size_of::<u32>();
        // SAFETY: the write reads only `ZERO_SLOT`, which is 'static, into
        // one slot of the key table (`slot < capacity`, and the buffer holds
        // `capacity * KEY_WORDS` words); both handles live as long as
        // `shared`. The returned event is owned by `Event`, which releases it.
        #[allow(unsafe_code)]
        let queued = unsafe {
            opencl3::command_queue::enqueue_write_buffer(
                setup.queue.get(),
                self.shared.keys.get(),
                CL_NON_BLOCKING,
                offset,
                std::mem::size_of_val(&ZERO_SLOT),
                ZERO_SLOT.as_ptr().cast(),
                0,
                ptr::null(),
            )
            .map(Event::new)
            .is_ok()
        };
        if queued {
            // Submit it now rather than with the next upload.
            let _ = setup.queue.flush();
        }
        setup.free.push(self.slot);
    }
}

impl GpuKey {
    /// Whether this key lives on `engine`.
    pub fn is_on(&self, engine: &Engine) -> bool {
        Arc::ptr_eq(&self.0.shared, &engine.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one slot of the key table back (test only: keys never leave
    /// the device otherwise).
    fn slot_words(engine: &Engine, slot: u32) -> Vec<u32> {
        let setup = engine.shared.setup.lock().unwrap();
        let mut words = vec![1u32; KEY_WORDS];
        // SAFETY: a blocking read of one in-range slot into a live buffer
        // of exactly that size.
        #[allow(unsafe_code)]
        unsafe {
            setup
                .queue
                .enqueue_read_buffer(
                    &engine.shared.keys,
                    CL_BLOCKING,
                    slot as usize * KEY_WORDS * 4,
                    &mut words,
                    &[],
                )
                .unwrap();
        }
        words
    }

    /// A freed key's round keys and powers of H are wiped from the device.
    #[test]
    fn a_freed_slot_is_wiped_on_the_device() {
        let devices = match crate::probe() {
            Ok(d) if !d.is_empty() => d,
            other => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but there is no OpenCL device ({other:?}): install pocl-opencl-icd"
                );
                eprintln!("skipping: no OpenCL device");
                return;
            }
        };
        let engine = Engine::open(&devices[0], 4).unwrap();
        let key = engine.key(&[0x5a; 32]).unwrap();
        let slot = key.0.slot;
        assert!(
            slot_words(&engine, slot).iter().any(|&w| w != 0),
            "the expanded key is in its slot"
        );
        drop(key);
        assert!(
            slot_words(&engine, slot).iter().all(|&w| w == 0),
            "the slot is zero once the key is gone"
        );
        // The wiped slot is handed out again and works.
        let again = engine.key(&[0x11; 16]).unwrap();
        assert_eq!(again.0.slot, slot);
        assert!(slot_words(&engine, slot).iter().any(|&w| w != 0));
    }
}
