//! Submission: the compute and transfer queues with their command pools, the timeline
//! semaphore that orders every submission, waits, and concurrent copies on the side
//! timeline with their [`Fence`]s.
//!
//! Each submission waits for the previous timeline value (unless it runs on the same queue
//! as the previous one: submission order and the leading full barrier order it then) and
//! signals the next; each command buffer opens with a full memory barrier and ends with a
//! barrier to `HOST` reads and writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ash::vk;
use vuma_core::{Error, Fence, Result};

use crate::error::{hung_err, vk_err, WAIT_TIMEOUT_NS};
use crate::shared::Shared;

/// Most command buffers kept for concurrent copies (more in flight wait for the oldest).
const MAX_SIDE_CMDS: usize = 8;

/// The payload of a Vulkan [`Fence`]: a value of the device's side timeline (the
/// timeline of [`Device::copy_concurrent`](vuma_core::Device::copy_concurrent)
/// submissions).
struct VkSideFence {
    shared: Arc<Shared>,
    value: u64,
}

/// The side-timeline value of `fence` when it is a fence of `shared`'s device.
pub(crate) fn side_value_of(fence: &Fence, shared: &Arc<Shared>) -> Option<u64> {
    fence
        .payload::<VkSideFence>()
        .filter(|f| Arc::ptr_eq(&f.shared, shared))
        .map(|f| f.value)
}

/// One queue with its command pool, a reusable command buffer, and its family.
pub(crate) struct QueueCtx {
    pub family: u32,
    pub queue: vk::Queue,
    pub pool: vk::CommandPool,
    pub cmd: vk::CommandBuffer,
}

impl QueueCtx {
    /// Queue 0 of `family` with a resettable command pool and one command buffer.
    fn new(dev: &ash::Device, family: u32) -> Result<Self> {
        // SAFETY: queue 0 of `family` was requested at device creation.
        let queue = unsafe { dev.get_device_queue(family, 0) };
        let pci = vk::CommandPoolCreateInfo::default()
            .queue_family_index(family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: valid device and create info.
        let pool = unsafe { dev.create_command_pool(&pci, None) }
            .map_err(|e| vk_err("vkCreateCommandPool", e))?;
        let cai = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: `pool` was just created from `dev`.
        let cmd = match unsafe { dev.allocate_command_buffers(&cai) } {
            Ok(v) => v[0],
            Err(e) => {
                // SAFETY: `pool` is unused.
                unsafe { dev.destroy_command_pool(pool, None) };
                return Err(vk_err("vkAllocateCommandBuffers", e));
            }
        };
        Ok(QueueCtx {
            family,
            queue,
            pool,
            cmd,
        })
    }
}

/// Everything that submits work; guarded by the device's lock.
pub(crate) struct Submit {
    pub compute: QueueCtx,
    pub transfer: Option<QueueCtx>,
    timeline: vk::Semaphore,
    /// Last value signalled (or to be signalled) on `timeline`.
    value: u64,
    /// The queue of the last submission: a submission on the same queue needs no timeline
    /// wait (submission order plus the leading full barrier order it).
    last_queue: vk::Queue,
    /// Command buffers of concurrent copies (from the transfer queue's pool) and the side
    /// timeline value whose completion frees each.
    side_cmds: Vec<(vk::CommandBuffer, u64)>,
    /// Side timeline value the next submission must wait for (`wait_for`; 0: none).
    pending_side: u64,
    /// Why a wait failed (timeout or device loss): from then on nothing is submitted,
    /// recorded or reused (the failed submission may still run), every call fails.
    hung: Option<String>,
}

impl Submit {
    /// The queues of `compute_family` and of the dedicated `transfer_family`, and the
    /// timeline. On failure what was made is destroyed.
    pub fn new(
        dev: &ash::Device,
        compute_family: u32,
        transfer_family: Option<u32>,
    ) -> Result<Self> {
        let compute = QueueCtx::new(dev, compute_family)?;
        let transfer = match transfer_family {
            Some(t) => match QueueCtx::new(dev, t) {
                Ok(q) => Some(q),
                Err(e) => {
                    // SAFETY: the pool is unused.
                    unsafe { dev.destroy_command_pool(compute.pool, None) };
                    return Err(e);
                }
            },
            None => None,
        };
        let mut tci =
            vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let sci = vk::SemaphoreCreateInfo::default().push_next(&mut tci);
        // SAFETY: valid device; timelineSemaphore was enabled.
        let timeline = match unsafe { dev.create_semaphore(&sci, None) } {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: the pools are unused.
                unsafe {
                    dev.destroy_command_pool(compute.pool, None);
                    if let Some(t) = &transfer {
                        dev.destroy_command_pool(t.pool, None);
                    }
                }
                return Err(vk_err("vkCreateSemaphore", e));
            }
        };
        Ok(Submit {
            compute,
            transfer,
            timeline,
            value: 0,
            last_queue: vk::Queue::null(),
            side_cmds: Vec::new(),
            pending_side: 0,
            hung: None,
        })
    }

    /// The queue copies run on: the dedicated transfer queue, else the compute queue.
    pub fn transfer_queue(&self) -> &QueueCtx {
        self.transfer.as_ref().unwrap_or(&self.compute)
    }

    /// The last timeline value signalled (or to be signalled).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// Makes the next submission wait for side-timeline value `value` too.
    pub fn wait_side_value(&mut self, value: u64) {
        self.pending_side = self.pending_side.max(value);
    }

    /// Waits until the timeline reaches `value`.
    pub fn wait(&mut self, dev: &ash::Device, value: u64) -> Result<()> {
        if let Some(why) = &self.hung {
            return Err(hung_err("vulkan device", why));
        }
        if value == 0 {
            return Ok(());
        }
        let sems = [self.timeline];
        let vals = [value];
        let wi = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&vals);
        // SAFETY: the semaphore belongs to `dev`.
        let r = unsafe { dev.wait_semaphores(&wi, WAIT_TIMEOUT_NS) };
        r.map_err(|e| {
            let err = vk_err("vkWaitSemaphores", e);
            self.hung = Some(err.to_string());
            err
        })
    }

    /// Ends `cmd` with a barrier making device writes visible to the host, and submits it
    /// on `queue`, chained on the timeline (waits `value`, signals `value + 1`) and on
    /// side value a `wait_for` asked for (of timeline `side`). Returns the value whose
    /// completion means `cmd` finished.
    pub fn submit(
        &mut self,
        dev: &ash::Device,
        side: vk::Semaphore,
        queue: vk::Queue,
        cmd: vk::CommandBuffer,
    ) -> Result<u64> {
        end_with_host_barrier(dev, cmd)?;
        let signal_v = [self.value + 1];
        let sems = [self.timeline];
        let cmds = [cmd];
        // On the queue of the previous submission, submission order and the leading full
        // barrier already order this one after it; a timeline wait would only add latency.
        // Concurrent copies waited for (`wait_for`) add a wait on the side timeline.
        let mut wait_s = Vec::with_capacity(2);
        let mut wait_v = Vec::with_capacity(2);
        if self.value > 0 && self.last_queue != queue {
            wait_s.push(self.timeline);
            wait_v.push(self.value);
        }
        if self.pending_side > 0 && side != vk::Semaphore::null() {
            wait_s.push(side);
            wait_v.push(self.pending_side);
        }
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; wait_s.len()];
        let mut ts = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_v)
            .signal_semaphore_values(&signal_v);
        let mut si = vk::SubmitInfo::default()
            .command_buffers(&cmds)
            .signal_semaphores(&sems);
        if !wait_s.is_empty() {
            si = si.wait_semaphores(&wait_s).wait_dst_stage_mask(&stages);
        }
        let si = si.push_next(&mut ts);
        // SAFETY: `cmd` is executable, `queue` belongs to the family of its pool, and the
        // semaphore values are strictly increasing.
        unsafe { dev.queue_submit(queue, &[si], vk::Fence::null()) }
            .map_err(|e| vk_err("vkQueueSubmit", e))?;
        self.value += 1;
        self.last_queue = queue;
        self.pending_side = 0;
        Ok(self.value)
    }

    /// Records `f` into the transfer (or compute) queue's command buffer, submits, waits.
    pub fn run_once(
        &mut self,
        shared: &Shared,
        on_compute: bool,
        f: impl FnOnce(&ash::Device, vk::CommandBuffer) -> Result<()>,
    ) -> Result<()> {
        let dev = &shared.device;
        if let Some(why) = &self.hung {
            // A submission may still be running: recording its command buffer again, or
            // reusing what it uses, would race it.
            return Err(hung_err(&shared.name, why));
        }
        let (queue, cmd) = {
            let q = if on_compute {
                &self.compute
            } else {
                self.transfer_queue()
            };
            (q.queue, q.cmd)
        };
        begin(dev, cmd)?;
        if let Err(e) = f(dev, cmd) {
            // SAFETY: `cmd` is recording; ending it returns it to a resettable state.
            let _ = unsafe { dev.end_command_buffer(cmd) };
            return Err(e);
        }
        let v = self.submit(dev, shared.side, queue, cmd)?;
        self.wait(dev, v)
    }

    /// A side command buffer free for recording: one whose last submission completed, a
    /// new one, or the oldest once it completed. Returns its index in `side_cmds`.
    fn side_cmd(&mut self, dev: &ash::Device, side: vk::Semaphore) -> Result<usize> {
        // SAFETY: the semaphore belongs to `dev`.
        let done = unsafe { dev.get_semaphore_counter_value(side) }
            .map_err(|e| vk_err("vkGetSemaphoreCounterValue", e))?;
        if let Some(i) = self.side_cmds.iter().position(|&(_, v)| v <= done) {
            return Ok(i);
        }
        if self.side_cmds.len() < MAX_SIDE_CMDS {
            let cai = vk::CommandBufferAllocateInfo::default()
                .command_pool(self.transfer_queue().pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            // SAFETY: the pool belongs to `dev`; we hold the device lock (pools are
            // externally synchronised). Freed with the pool when the device drops.
            let cmd = unsafe { dev.allocate_command_buffers(&cai) }
                .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
            self.side_cmds.push((cmd, 0));
            return Ok(self.side_cmds.len() - 1);
        }
        let (i, &(_, oldest)) = self
            .side_cmds
            .iter()
            .enumerate()
            .min_by_key(|(_, &(_, v))| v)
            .ok_or_else(|| Error::invalid("no side command buffer"))?;
        let sems = [side];
        let vals = [oldest];
        let wi = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&vals);
        // SAFETY: the semaphore belongs to `dev`.
        unsafe { dev.wait_semaphores(&wi, WAIT_TIMEOUT_NS) }
            .map_err(|e| vk_err("vkWaitSemaphores", e))?;
        Ok(i)
    }

    /// Submits a copy of `region` from `src` to `dst` on the transfer queue, ordered after
    /// every operation issued so far (the main timeline's last value) and signalling the
    /// next side value, which a [`Fence`] carries; returns at once.
    pub fn copy_concurrent(
        &mut self,
        shared: &Arc<Shared>,
        src: vk::Buffer,
        dst: vk::Buffer,
        region: vk::BufferCopy,
    ) -> Result<Fence> {
        let dev = &shared.device;
        let side = shared.side;
        let idx = self.side_cmd(dev, side)?;
        let cmd = self.side_cmds[idx].0;
        let queue = self.transfer_queue().queue;
        begin(dev, cmd)?;
        // SAFETY: `cmd` is recording; both buffers are valid, the regions in bounds and not
        // overlapping (checked by the caller).
        unsafe { dev.cmd_copy_buffer(cmd, src, dst, &[region]) };
        end_with_host_barrier(dev, cmd)?;
        // Ordered after every operation issued so far (the main timeline's last value);
        // signals the next side value, which `wait_for` makes later submissions wait for.
        let value = shared.side_value.load(Ordering::Acquire) + 1;
        let signal_s = [side];
        let signal_v = [value];
        let wait_s = [self.timeline];
        let wait_v = [self.value];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let cmds = [cmd];
        let mut ts = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&signal_v);
        if self.value > 0 {
            ts = ts.wait_semaphore_values(&wait_v);
        }
        let mut si = vk::SubmitInfo::default()
            .command_buffers(&cmds)
            .signal_semaphores(&signal_s);
        if self.value > 0 {
            si = si.wait_semaphores(&wait_s).wait_dst_stage_mask(&stages);
        }
        let si = si.push_next(&mut ts);
        // SAFETY: `cmd` is executable and belongs to the pool of `queue`'s family; the side
        // values are strictly increasing (taken under the device lock).
        unsafe { dev.queue_submit(queue, &[si], vk::Fence::null()) }
            .map_err(|e| vk_err("vkQueueSubmit", e))?;
        shared.side_value.store(value, Ordering::Release);
        self.side_cmds[idx].1 = value;
        Ok(Fence::new(VkSideFence {
            shared: shared.clone(),
            value,
        }))
    }

    /// Destroys the timeline and the command pools (with every command buffer).
    ///
    /// # Safety
    /// The device must be idle and the objects must have been created from `dev`.
    pub unsafe fn destroy(&mut self, dev: &ash::Device) {
        // SAFETY: the caller guarantees the device is idle; each object is destroyed once.
        unsafe {
            dev.destroy_semaphore(self.timeline, None);
            dev.destroy_command_pool(self.compute.pool, None);
            if let Some(t) = &self.transfer {
                dev.destroy_command_pool(t.pool, None);
            }
        }
    }
}

/// Starts recording `cmd` with a leading full memory barrier (orders it after everything
/// submitted before, on either queue, together with the timeline wait).
pub(crate) fn begin(dev: &ash::Device, cmd: vk::CommandBuffer) -> Result<()> {
    let bi =
        vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
    // SAFETY: `cmd` is not pending (its previous submission was waited for) and its pool
    // allows resetting individual buffers.
    unsafe { dev.begin_command_buffer(cmd, &bi) }.map_err(|e| vk_err("vkBeginCommandBuffer", e))?;
    let mb = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
        .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE);
    // SAFETY: `cmd` is recording.
    unsafe {
        dev.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::DependencyFlags::empty(),
            &[mb],
            &[],
            &[],
        )
    };
    Ok(())
}

/// Ends the recording `cmd` with a barrier that makes every device write visible to the
/// host.
fn end_with_host_barrier(dev: &ash::Device, cmd: vk::CommandBuffer) -> Result<()> {
    let mb = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
        .dst_access_mask(vk::AccessFlags::HOST_READ | vk::AccessFlags::HOST_WRITE);
    // SAFETY: `cmd` is recording (caller's contract; a wrong state is a Vulkan error the
    // validation layer reports, not memory unsafety on our side).
    unsafe {
        dev.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[mb],
            &[],
            &[],
        );
        dev.end_command_buffer(cmd)
    }
    .map_err(|e| vk_err("vkEndCommandBuffer", e))
}
