//! [`Lane`]: one packet worker's command queue. Batches are submitted
//! without blocking ([`Lane::submit`]) and come back in submission order
//! ([`Lane::poll`] never blocks; [`Lane::wait`] does), so a worker hands a
//! batch over in one loop turn and sends its packets in a later one.

use std::collections::VecDeque;
use std::ptr;

use opencl3::command_queue::{CL_QUEUE_PROFILING_ENABLE, CommandQueue};
use opencl3::event::CL_COMPLETE;
use opencl3::event::Event;
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE, CL_MEM_WRITE_ONLY};
use opencl3::types::CL_NON_BLOCKING;

use crate::layout::{NONCE_LEN, Packing, TAG_LEN};
use crate::{Engine, GpuError, GpuKey};

/// Seal (encrypt, then tag the ciphertext) or open (tag the ciphertext,
/// decrypt; the caller compares tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Encrypt.
    Seal,
    /// Decrypt.
    Open,
}

/// Identifies a submitted batch; completions come back in ticket order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Nanoseconds each stage of one batch took on the device, from the
/// driver's profiling counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Host → device copies.
    pub upload_ns: u64,
    /// The AES-GCM kernel.
    pub kernel_ns: u64,
    /// Device → host copies.
    pub download_ns: u64,
}

/// Device buffers of one batch, grown to the largest batch seen.
#[derive(Default)]
struct DeviceBuffers {
    desc: Option<(Buffer<u32>, usize)>,
    input: Option<(Buffer<u8>, usize)>,
    out: Option<(Buffer<u8>, usize)>,
    tags: Option<(Buffer<u8>, usize)>,
}

/// A batch: filled with [`Batch::push`], handed to [`Lane::submit`], and
/// returned, with results, by [`Lane::poll`] / [`Lane::wait`]. Give it
/// back with [`Lane::recycle`] to reuse its memory.
pub struct Batch {
    pack: Packing,
    keys: Vec<GpuKey>,
    out: Vec<u8>,
    tags: Vec<u8>,
    dev: DeviceBuffers,
    ticket: Ticket,
    direction: Direction,
    times: Option<StageTimes>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("jobs", &self.pack.len())
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl Batch {
    fn new() -> Self {
        Self {
            pack: Packing::default(),
            keys: Vec::new(),
            out: Vec::new(),
            tags: Vec::new(),
            dev: DeviceBuffers::default(),
            ticket: Ticket(0),
            direction: Direction::Seal,
            times: None,
        }
    }

    fn clear(&mut self) {
        self.pack.clear();
        self.keys.clear();
        self.times = None;
    }

    /// Adds a job over `data` under `key`.
    pub fn push(
        &mut self,
        key: &GpuKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &[u8],
    ) -> Result<(), GpuError> {
        self.pack.push(key.0.slot, nonce, aad, data)?;
        self.keys.push(key.clone());
        Ok(())
    }

    /// Adds a job over the same data as the previous job: a fan-out's
    /// payload crosses the bus once however many keys seal it.
    pub fn push_same_data(
        &mut self,
        key: &GpuKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
    ) -> Result<(), GpuError> {
        self.pack.push_same_data(key.0.slot, nonce, aad)?;
        self.keys.push(key.clone());
        Ok(())
    }

    /// Jobs in the batch.
    pub fn len(&self) -> usize {
        self.pack.len()
    }

    /// Whether the batch has no job.
    pub fn is_empty(&self) -> bool {
        self.pack.is_empty()
    }

    /// Its ticket (after submission).
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// After completion: job `i`'s output (ciphertext when sealing,
    /// plaintext when opening).
    pub fn output(&self, i: usize) -> &[u8] {
        self.pack
            .outputs
            .get(i)
            .and_then(|&(at, len)| self.out.get(at..at + len))
            .unwrap_or_default()
    }

    /// After completion: job `i`'s tag (the computed one; when opening,
    /// compare it with the received tag in constant time).
    pub fn tag(&self, i: usize) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        if let Some(t) = self.tags.get(i * TAG_LEN..(i + 1) * TAG_LEN) {
            tag.copy_from_slice(t);
        }
        tag
    }

    /// Device stage times, when the lane profiles.
    pub fn stage_times(&self) -> Option<StageTimes> {
        self.times
    }
}

struct InFlight {
    batch: Batch,
    events: Vec<Event>,
}

/// One worker's queue on an [`Engine`]. Not shared between threads.
pub struct Lane {
    engine: Engine,
    queue: CommandQueue,
    kernel: Kernel,
    in_flight: VecDeque<InFlight>,
    spare: Vec<Batch>,
    next_ticket: u64,
    profiling: bool,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("in_flight", &self.in_flight.len())
            .field("profiling", &self.profiling)
            .finish_non_exhaustive()
    }
}

fn grow<T>(
    engine: &Engine,
    slot: &mut Option<(Buffer<T>, usize)>,
    need: usize,
    flags: u64,
) -> Result<(), GpuError> {
    let need = need.max(16);
    if slot.as_ref().is_some_and(|(_, have)| *have >= need) {
        return Ok(());
    }
    let size = need.next_power_of_two();
    // SAFETY: a fresh device allocation with no host pointer.
    #[allow(unsafe_code)]
    let buffer =
        unsafe { Buffer::<T>::create(&engine.shared.context, flags, size, ptr::null_mut()) }
            .map_err(GpuError::cl("clCreateBuffer"))?;
    *slot = Some((buffer, size));
    Ok(())
}

impl Lane {
    /// A new queue on `engine`; `profiling` records [`StageTimes`] per batch.
    pub fn new(engine: &Engine, profiling: bool) -> Result<Self, GpuError> {
        let properties = if profiling {
            CL_QUEUE_PROFILING_ENABLE
        } else {
            0
        };
        #[allow(deprecated)] // clCreateCommandQueue: the OpenCL 1.2 call, which every driver has.
        let queue = CommandQueue::create_default(&engine.shared.context, properties)
            .map_err(GpuError::cl("clCreateCommandQueue"))?;
        let kernel = Kernel::create(&engine.shared.program, "gcm_crypt")
            .map_err(GpuError::cl("clCreateKernel"))?;
        Ok(Self {
            engine: engine.clone(),
            queue,
            kernel,
            in_flight: VecDeque::new(),
            spare: Vec::new(),
            next_ticket: 0,
            profiling,
        })
    }

    /// An empty batch (reusing a recycled one's memory).
    pub fn batch(&mut self) -> Batch {
        let mut batch = self.spare.pop().unwrap_or_else(Batch::new);
        batch.clear();
        batch
    }

    /// Gives a finished batch's memory back for the next [`Self::batch`].
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        if self.spare.len() < 4 {
            self.spare.push(batch);
        }
    }

    /// Batches submitted and not yet returned.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Jobs submitted and not yet returned.
    pub fn jobs_in_flight(&self) -> usize {
        self.in_flight.iter().map(|f| f.batch.len()).sum()
    }

    /// Queues `batch` on the device and returns at once.
    pub fn submit(&mut self, mut batch: Batch, direction: Direction) -> Result<Ticket, GpuError> {
        if batch.keys.iter().any(|k| !k.is_on(&self.engine)) {
            return Err(GpuError::ForeignKey);
        }
        let n = batch.len();
        let ticket = Ticket(self.next_ticket);
        batch.ticket = ticket;
        batch.direction = direction;
        batch.out.resize(batch.pack.out_len, 0);
        batch.tags.resize(n * TAG_LEN, 0);
        if n == 0 {
            self.next_ticket += 1;
            self.in_flight.push_back(InFlight {
                batch,
                events: Vec::new(),
            });
            return Ok(ticket);
        }
        let engine = &self.engine;
        let dev = &mut batch.dev;
        grow(
            engine,
            &mut dev.desc,
            batch.pack.desc.len(),
            CL_MEM_READ_ONLY,
        )?;
        grow(
            engine,
            &mut dev.input,
            batch.pack.input.len(),
            CL_MEM_READ_ONLY,
        )?;
        grow(engine, &mut dev.out, batch.out.len(), CL_MEM_READ_WRITE)?;
        grow(engine, &mut dev.tags, batch.tags.len(), CL_MEM_WRITE_ONLY)?;
        let (Some((d_desc, _)), Some((d_in, _)), Some((d_out, _)), Some((d_tags, _))) =
            (&mut dev.desc, &mut dev.input, &mut dev.out, &mut dev.tags)
        else {
            // `grow` just filled all four.
            return Err(GpuError::Cl {
                call: "clCreateBuffer",
                code: -4,
            });
        };
        let decrypt: u32 = match direction {
            Direction::Seal => 0,
            Direction::Open => 1,
        };
        let mut events = Vec::with_capacity(5);
        let enqueued = (|| -> Result<(), GpuError> {
            // SAFETY: every host slice handed to a non-blocking copy lives in
            // `batch`, whose heap memory neither moves nor is freed until the
            // batch leaves `in_flight`, which only happens once its last event
            // (the final read, after which the in-order queue has finished the
            // rest) is complete, or in `Drop` after `finish`. Device buffers
            // are at least as large as the copies (`grow`). The kernel's
            // arguments match `gcm_crypt` in aes_gcm.cl; its global size is
            // `n` work-groups of the size it was built for, and each
            // descriptor's offsets lie inside the buffers `Packing` sized.
            #[allow(unsafe_code)]
            unsafe {
                events.push(
                    self.queue
                        .enqueue_write_buffer(d_desc, CL_NON_BLOCKING, 0, &batch.pack.desc, &[])
                        .map_err(GpuError::cl("clEnqueueWriteBuffer"))?,
                );
                if !batch.pack.input.is_empty() {
                    events.push(
                        self.queue
                            .enqueue_write_buffer(d_in, CL_NON_BLOCKING, 0, &batch.pack.input, &[])
                            .map_err(GpuError::cl("clEnqueueWriteBuffer"))?,
                    );
                }
                events.push(
                    ExecuteKernel::new(&self.kernel)
                        .set_arg(&engine.shared.keys)
                        .set_arg(d_desc)
                        .set_arg(d_in)
                        .set_arg(d_out)
                        .set_arg(d_tags)
                        .set_arg(&decrypt)
                        .set_global_work_size(n * engine.shared.wg)
                        .set_local_work_size(engine.shared.wg)
                        .enqueue_nd_range(&self.queue)
                        .map_err(GpuError::cl("clEnqueueNDRangeKernel"))?,
                );
                if !batch.out.is_empty() {
                    events.push(
                        self.queue
                            .enqueue_read_buffer(d_out, CL_NON_BLOCKING, 0, &mut batch.out, &[])
                            .map_err(GpuError::cl("clEnqueueReadBuffer"))?,
                    );
                }
                events.push(
                    self.queue
                        .enqueue_read_buffer(d_tags, CL_NON_BLOCKING, 0, &mut batch.tags, &[])
                        .map_err(GpuError::cl("clEnqueueReadBuffer"))?,
                );
            }
            Ok(())
        })();
        if let Err(e) = enqueued {
            // Commands already queued may still read or write `batch`:
            // let them finish before it is freed.
            let _ = self.queue.finish();
            return Err(e);
        }
        if let Err(e) = self.queue.flush() {
            let _ = self.queue.finish();
            return Err(GpuError::cl("clFlush")(e));
        }
        self.next_ticket += 1;
        self.in_flight.push_back(InFlight { batch, events });
        Ok(ticket)
    }

    /// The oldest batch if the device finished it; never blocks.
    pub fn poll(&mut self) -> Option<Result<Batch, GpuError>> {
        let front = self.in_flight.front()?;
        match front.events.last().map(|e| e.command_execution_status()) {
            None => {}
            Some(Ok(status)) if status.0 == CL_COMPLETE => {}
            Some(Ok(status)) if status.0 < 0 => {
                return self.pop(Err(GpuError::Cl {
                    call: "batch",
                    code: status.0,
                }));
            }
            Some(Ok(_)) => return None,
            Some(Err(e)) => return self.pop(Err(GpuError::cl("clGetEventInfo")(e))),
        }
        self.pop(Ok(()))
    }

    /// The oldest batch, waiting for the device if need be; `None` when
    /// nothing is in flight.
    pub fn wait(&mut self) -> Option<Result<Batch, GpuError>> {
        let front = self.in_flight.front()?;
        let waited = match front.events.last() {
            Some(event) => event.wait().map_err(GpuError::cl("clWaitForEvents")),
            None => Ok(()),
        };
        self.pop(waited)
    }

    fn pop(&mut self, status: Result<(), GpuError>) -> Option<Result<Batch, GpuError>> {
        let InFlight { mut batch, events } = self.in_flight.pop_front()?;
        if let Err(e) = status {
            // The queue may still run later commands on this batch's
            // memory: let it drain before the memory can be reused.
            let _ = self.queue.finish();
            return Some(Err(e));
        }
        if self.profiling {
            batch.times = Some(stage_times(&events));
        }
        Some(Ok(batch))
    }
}

fn span(events: &[&Event]) -> u64 {
    let start = events
        .iter()
        .filter_map(|e| e.profiling_command_start().ok())
        .min();
    let end = events
        .iter()
        .filter_map(|e| e.profiling_command_end().ok())
        .max();
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_sub(s),
        _ => 0,
    }
}

fn stage_times(events: &[Event]) -> StageTimes {
    use opencl3::event::{
        CL_COMMAND_NDRANGE_KERNEL, CL_COMMAND_READ_BUFFER, CL_COMMAND_WRITE_BUFFER,
    };
    let of = |kind| -> Vec<&Event> {
        events
            .iter()
            .filter(|e| e.command_type().map(|t| t.0 == kind).unwrap_or(false))
            .collect()
    };
    StageTimes {
        upload_ns: span(&of(CL_COMMAND_WRITE_BUFFER)),
        kernel_ns: span(&of(CL_COMMAND_NDRANGE_KERNEL)),
        download_ns: span(&of(CL_COMMAND_READ_BUFFER)),
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // In-flight batches own memory the device may still be copying
        // to: wait for the queue before it is freed.
        let _ = self.queue.finish();
    }
}
