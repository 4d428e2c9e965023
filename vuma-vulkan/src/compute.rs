//! Kernel launches: the checks of a launch against the device's limits and the module's
//! interface ([`Launch::prepare`]), compute pipelines (cached by a hash of the SPIR-V
//! words, the entry point and the argument layout), the descriptor pool launches take
//! their set from, and the recorded dispatch ([`Launch::record`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{Hash, Hasher};

use ash::vk;
use vuma_core::{Arg, Error, Kernel, LaunchConfig, Result};

use crate::buffer::VulkanBuffer;
use crate::error::vk_err;
use crate::reflect::SPIRV_MAGIC;
use crate::shared::Shared;
use crate::submit::Submit;

/// What identifies one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    words_hash: u64,
    words_len: usize,
    entry: String,
    bindings: u32,
    push_bytes: u32,
}

impl PipelineKey {
    pub fn new(words: &[u32], entry: &str, bindings: u32, push_bytes: u32) -> Self {
        let mut h = DefaultHasher::new();
        words.hash(&mut h);
        PipelineKey {
            words_hash: h.finish(),
            words_len: words.len(),
            entry: entry.to_string(),
            bindings,
            push_bytes,
        }
    }
}

/// One compute pipeline with its layouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pipe {
    pub module: vk::ShaderModule,
    pub set_layout: vk::DescriptorSetLayout,
    pub layout: vk::PipelineLayout,
    pub pipeline: vk::Pipeline,
}

/// The pipeline cache and the launch descriptor pool.
#[derive(Debug, Default)]
pub(crate) struct Pipelines {
    map: HashMap<PipelineKey, Pipe>,
    pool: vk::DescriptorPool,
    pool_capacity: u32,
}

impl Pipelines {
    /// The pipeline for `key`, created (and cached) on first use.
    pub fn get_or_create(
        &mut self,
        dev: &ash::Device,
        key: &PipelineKey,
        words: &[u32],
        entry: &str,
        kernel: &str,
    ) -> Result<Pipe> {
        if let Some(p) = self.map.get(key) {
            return Ok(*p);
        }
        let compile_err = |log: String| Error::Compile {
            kernel: kernel.to_string(),
            log,
        };
        if words.first() != Some(&SPIRV_MAGIC) || words.len() < 5 {
            return Err(compile_err(
                "not a SPIR-V module (missing magic number 0x07230203)".into(),
            ));
        }
        let entry_c = CString::new(entry)
            .map_err(|_| Error::invalid(format!("entry point `{entry}` contains a NUL byte")))?;
        let smci = vk::ShaderModuleCreateInfo::default().code(words);
        // SAFETY: `words` is a SPIR-V module (magic checked; further validity is the
        // kernel author's contract, checked by the validation layer in tests).
        let module = unsafe { dev.create_shader_module(&smci, None) }
            .map_err(|e| compile_err(format!("vkCreateShaderModule: {e:?}")))?;
        let bindings: Vec<vk::DescriptorSetLayoutBinding<'_>> = (0..key.bindings)
            .map(|i| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let dslci = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        let destroy_module = |dev: &ash::Device| {
            // SAFETY: `module` is not used by any pipeline yet.
            unsafe { dev.destroy_shader_module(module, None) }
        };
        // SAFETY: valid device and create info.
        let set_layout = match unsafe { dev.create_descriptor_set_layout(&dslci, None) } {
            Ok(l) => l,
            Err(e) => {
                destroy_module(dev);
                return Err(vk_err("vkCreateDescriptorSetLayout", e));
            }
        };
        let ranges = [vk::PushConstantRange {
            stage_flags: vk::ShaderStageFlags::COMPUTE,
            offset: 0,
            size: key.push_bytes.next_multiple_of(4),
        }];
        let set_layouts = [set_layout];
        let mut plci = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
        if key.push_bytes > 0 {
            plci = plci.push_constant_ranges(&ranges);
        }
        // SAFETY: valid device and create info.
        let layout = match unsafe { dev.create_pipeline_layout(&plci, None) } {
            Ok(l) => l,
            Err(e) => {
                destroy_module(dev);
                // SAFETY: unused layout.
                unsafe { dev.destroy_descriptor_set_layout(set_layout, None) };
                return Err(vk_err("vkCreatePipelineLayout", e));
            }
        };
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(&entry_c);
        let cpci = vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(layout);
        // SAFETY: valid device, module and layout; `entry_c` outlives the call.
        let pipeline =
            match unsafe { dev.create_compute_pipelines(vk::PipelineCache::null(), &[cpci], None) }
            {
                Ok(p) => p[0],
                Err((_, e)) => {
                    // SAFETY: the objects are unused.
                    unsafe {
                        dev.destroy_pipeline_layout(layout, None);
                        dev.destroy_descriptor_set_layout(set_layout, None);
                    }
                    destroy_module(dev);
                    return Err(compile_err(format!(
                        "vkCreateComputePipelines (entry `{entry}`): {e:?}"
                    )));
                }
            };
        let p = Pipe {
            module,
            set_layout,
            layout,
            pipeline,
        };
        self.map.insert(key.clone(), p);
        Ok(p)
    }

    /// A descriptor set of `layout` for one launch. The pool is reset first: launches
    /// complete before the next one starts, so no set is in use.
    pub fn descriptor_set(
        &mut self,
        dev: &ash::Device,
        layout: vk::DescriptorSetLayout,
        bindings: u32,
    ) -> Result<vk::DescriptorSet> {
        let need = bindings.max(1);
        if self.pool == vk::DescriptorPool::null() || self.pool_capacity < need {
            if self.pool != vk::DescriptorPool::null() {
                // SAFETY: no set of the pool is in use (see above).
                unsafe { dev.destroy_descriptor_pool(self.pool, None) };
                self.pool = vk::DescriptorPool::null();
            }
            let cap = need.max(16);
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: cap,
            }];
            let ci = vk::DescriptorPoolCreateInfo::default()
                .max_sets(1)
                .pool_sizes(&sizes);
            // SAFETY: valid device and create info.
            self.pool = unsafe { dev.create_descriptor_pool(&ci, None) }
                .map_err(|e| vk_err("vkCreateDescriptorPool", e))?;
            self.pool_capacity = cap;
        } else {
            // SAFETY: the pool belongs to `dev` and none of its sets is in use.
            unsafe { dev.reset_descriptor_pool(self.pool, vk::DescriptorPoolResetFlags::empty()) }
                .map_err(|e| vk_err("vkResetDescriptorPool", e))?;
        }
        let layouts = [layout];
        let ai = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(self.pool)
            .set_layouts(&layouts);
        // SAFETY: the pool has room for one set of up to `pool_capacity` storage buffers.
        let sets = unsafe { dev.allocate_descriptor_sets(&ai) }
            .map_err(|e| vk_err("vkAllocateDescriptorSets", e))?;
        Ok(sets[0])
    }

    /// Destroys every pipeline and the pool.
    ///
    /// # Safety
    /// The device must be idle and the objects must have been created from `dev`.
    pub unsafe fn destroy(&mut self, dev: &ash::Device) {
        for (_, p) in self.map.drain() {
            // SAFETY: the caller guarantees the device is idle; each object is destroyed once.
            unsafe {
                dev.destroy_pipeline(p.pipeline, None);
                dev.destroy_pipeline_layout(p.layout, None);
                dev.destroy_descriptor_set_layout(p.set_layout, None);
                dev.destroy_shader_module(p.module, None);
            }
        }
        if self.pool != vk::DescriptorPool::null() {
            // SAFETY: as above.
            unsafe { dev.destroy_descriptor_pool(self.pool, None) };
            self.pool = vk::DescriptorPool::null();
        }
    }
}

/// One checked launch: its pipeline key, storage-buffer bindings `(buffer, offset, range)`
/// in order, the push-constant bytes, and the grid.
pub(crate) struct Launch<'a> {
    kernel: &'a str,
    words: &'a [u32],
    entry: &'a str,
    key: PipelineKey,
    bindings: Vec<(vk::Buffer, u64, u64)>,
    push: Vec<u8>,
    grid: [u32; 3],
}

impl<'a> Launch<'a> {
    /// Checks a launch of SPIR-V module `words` (entry `entry`) of `kernel` on `shared`'s
    /// device: buffer owners, offsets against `minStorageBufferOffsetAlignment`, ranges
    /// against `maxStorageBufferRange`, the count of buffers and the bytes of scalars
    /// against the stage's limits, the grid against `maxComputeWorkGroupCount`, and the
    /// module's declared interface (`reflect::check`).
    pub fn prepare(
        shared: &Shared,
        kernel: &'a Kernel,
        words: &'a [u32],
        entry: &'a str,
        config: &LaunchConfig,
        args: &[Arg<'_, VulkanBuffer>],
    ) -> Result<Self> {
        let limits = &shared.limits;
        let mut bindings = Vec::new();
        let mut push = Vec::new();
        for a in args {
            match *a {
                Arg::Buffer {
                    buffer,
                    offset,
                    len,
                    ..
                } => {
                    buffer.check_owner(shared)?;
                    if offset % limits.min_storage_offset_align != 0 {
                        return Err(Error::invalid(format!(
                            "kernel `{}`: buffer argument {} offset {offset} is not a multiple of \
                             minStorageBufferOffsetAlignment ({})",
                            kernel.name(),
                            bindings.len(),
                            limits.min_storage_offset_align
                        )));
                    }
                    if len > limits.max_storage_range {
                        return Err(Error::TooLarge {
                            device: format!(
                                "{} (one storage-buffer binding, maxStorageBufferRange; split the range)",
                                shared.name
                            ),
                            requested: len,
                            max: limits.max_storage_range,
                        });
                    }
                    bindings.push((buffer.raw, offset, len));
                }
                Arg::Scalar(s) => push.extend_from_slice(&s.to_le_bytes()),
            }
        }
        if bindings.len() as u32 > limits.max_storage_per_stage {
            return Err(Error::invalid(format!(
                "kernel `{}`: {} buffer arguments, the device allows {} storage buffers per stage",
                kernel.name(),
                bindings.len(),
                limits.max_storage_per_stage
            )));
        }
        if push.len() as u32 > limits.max_push_constants {
            return Err(Error::invalid(format!(
                "kernel `{}`: {} bytes of scalars exceed maxPushConstantsSize ({})",
                kernel.name(),
                push.len(),
                limits.max_push_constants
            )));
        }
        for (d, (&g, &m)) in config
            .grid
            .iter()
            .zip(limits.max_group_count.iter())
            .enumerate()
        {
            if g == 0 || g > m {
                return Err(Error::invalid(format!(
                    "kernel `{}`: grid[{d}] = {g} workgroups; the device allows 1..={m} \
                     (maxComputeWorkGroupCount); split the dispatch or use a 2-D grid",
                    kernel.name()
                )));
            }
        }
        crate::reflect::check(kernel.name(), words, bindings.len(), push.len())?;
        Ok(Launch {
            kernel: kernel.name(),
            words,
            entry,
            key: PipelineKey::new(words, entry, bindings.len() as u32, push.len() as u32),
            bindings,
            push,
            grid: config.grid,
        })
    }

    /// Builds (or finds) the pipeline, writes the descriptor set, and runs the dispatch on
    /// the compute queue, waiting for it.
    pub fn record(
        &self,
        shared: &Shared,
        sub: &mut Submit,
        pipelines: &mut Pipelines,
    ) -> Result<()> {
        let bindings = &self.bindings;
        let push = &self.push;
        let dev = &shared.device;
        let pipe = pipelines.get_or_create(dev, &self.key, self.words, self.entry, self.kernel)?;
        let set = pipelines.descriptor_set(dev, pipe.set_layout, bindings.len() as u32)?;
        let infos: Vec<vk::DescriptorBufferInfo> = bindings
            .iter()
            .map(|&(buffer, offset, range)| vk::DescriptorBufferInfo {
                buffer,
                offset,
                range,
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet<'_>> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(std::slice::from_ref(info))
            })
            .collect();
        // SAFETY: the set was allocated from this device's pool and is not in use (the last
        // launch completed); every buffer is valid and its range in bounds.
        unsafe { dev.update_descriptor_sets(&writes, &[]) };
        let grid = self.grid;
        sub.run_once(shared, true, |dev, cmd| {
            // SAFETY: `cmd` is recording on the compute queue; the pipeline, layout and set
            // are valid and compatible; the push range matches the layout.
            unsafe {
                dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipe.pipeline);
                if !bindings.is_empty() {
                    dev.cmd_bind_descriptor_sets(
                        cmd,
                        vk::PipelineBindPoint::COMPUTE,
                        pipe.layout,
                        0,
                        &[set],
                        &[],
                    );
                }
                if !push.is_empty() {
                    dev.cmd_push_constants(
                        cmd,
                        pipe.layout,
                        vk::ShaderStageFlags::COMPUTE,
                        0,
                        push,
                    );
                }
                dev.cmd_dispatch(cmd, grid[0], grid[1], grid[2]);
            }
            Ok(())
        })
    }
}
