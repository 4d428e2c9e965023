//! Compute pipelines (cached by a hash of the SPIR-V words, the entry point and the
//! argument layout) and the descriptor pool launches take their set from.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{Hash, Hasher};

use ash::vk;
use vuma_core::{Error, Result};

use crate::device::vk_err;

/// SPIR-V's magic number (first word of every module).
pub(crate) const SPIRV_MAGIC: u32 = 0x0723_0203;

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
