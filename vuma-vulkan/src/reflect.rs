//! What a SPIR-V compute module declares about its interface, read from the words: the
//! storage-buffer bindings of descriptor set 0 and the size of its push-constant block.
//!
//! A launch binds one storage buffer per buffer argument (bindings 0, 1, …) and fills the
//! push constants with the scalars in order. A module that declares a binding the launch
//! does not provide, or a push-constant block larger than the scalars given, would read
//! unbound descriptors or undefined push constants: [`check`] refuses such a launch with a
//! typed error before any pipeline is built. Malformed words are an error as well (the
//! driver would otherwise be handed them).

use vuma_core::{Error, Result};

/// What a module declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Bindings of descriptor set 0 used by storage buffers (sorted, unique).
    pub bindings: Vec<u32>,
    /// Bytes of the push-constant block (0 without one; `None` when a member's type has no
    /// size this reader knows).
    pub push_bytes: Option<u32>,
}

/// SPIR-V's magic number (first word of every module).
pub(crate) const SPIRV_MAGIC: u32 = 0x0723_0203;
const OP_TYPE_INT: u32 = 21;
const OP_TYPE_FLOAT: u32 = 22;
const OP_TYPE_VECTOR: u32 = 23;
const OP_TYPE_STRUCT: u32 = 30;
const OP_TYPE_POINTER: u32 = 32;
const OP_VARIABLE: u32 = 59;
const OP_DECORATE: u32 = 71;
const OP_MEMBER_DECORATE: u32 = 72;
const DEC_BINDING: u32 = 33;
const DEC_SET: u32 = 34;
const DEC_OFFSET: u32 = 35;
const SC_UNIFORM: u32 = 2;
const SC_PUSH_CONSTANT: u32 = 9;
const SC_STORAGE_BUFFER: u32 = 12;

/// Reads the interface of a module.
pub fn interface(words: &[u32]) -> Result<Interface> {
    let bad = |why: &str| Error::invalid(format!("malformed SPIR-V: {why}"));
    if words.len() < 5 || words[0] != SPIRV_MAGIC {
        return Err(bad("no SPIR-V header (magic number 0x07230203)"));
    }
    use std::collections::HashMap;
    let mut binding: HashMap<u32, u32> = HashMap::new();
    let mut set: HashMap<u32, u32> = HashMap::new();
    let mut member_offset: HashMap<(u32, u32), u32> = HashMap::new();
    let mut scalar_bytes: HashMap<u32, u32> = HashMap::new();
    let mut structs: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut pointers: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut vars: Vec<(u32, u32, u32)> = Vec::new(); // (id, pointer type, storage class)
    let mut i = 5;
    while i < words.len() {
        let (count, op) = ((words[i] >> 16) as usize, words[i] & 0xffff);
        if count == 0 || i + count > words.len() {
            return Err(bad("an instruction runs past the end of the module"));
        }
        let ins = &words[i..i + count];
        let arg = |k: usize| ins.get(k).copied().ok_or_else(|| bad("short instruction"));
        match op {
            OP_DECORATE if count >= 4 => match arg(2)? {
                DEC_BINDING => {
                    binding.insert(arg(1)?, arg(3)?);
                }
                DEC_SET => {
                    set.insert(arg(1)?, arg(3)?);
                }
                _ => {}
            },
            OP_MEMBER_DECORATE if count >= 5 && arg(3)? == DEC_OFFSET => {
                member_offset.insert((arg(1)?, arg(2)?), arg(4)?);
            }
            OP_TYPE_INT | OP_TYPE_FLOAT if count >= 3 => {
                scalar_bytes.insert(arg(1)?, arg(2)? / 8);
            }
            OP_TYPE_VECTOR if count >= 4 => {
                if let Some(&b) = scalar_bytes.get(&arg(2)?) {
                    scalar_bytes.insert(arg(1)?, b.saturating_mul(arg(3)?));
                }
            }
            OP_TYPE_STRUCT => {
                structs.insert(arg(1)?, ins[2..].to_vec());
            }
            OP_TYPE_POINTER if count >= 4 => {
                pointers.insert(arg(1)?, (arg(2)?, arg(3)?));
            }
            OP_VARIABLE if count >= 4 => vars.push((arg(2)?, arg(1)?, arg(3)?)),
            _ => {}
        }
        i += count;
    }
    let mut out = Interface {
        push_bytes: Some(0),
        ..Interface::default()
    };
    for (id, ptr, class) in vars {
        match class {
            SC_STORAGE_BUFFER | SC_UNIFORM => {
                if let Some(&b) = binding.get(&id) {
                    if set.get(&id).copied().unwrap_or(0) == 0 {
                        out.bindings.push(b);
                    }
                }
            }
            SC_PUSH_CONSTANT => {
                let size = pointers.get(&ptr).and_then(|&(_, ty)| {
                    type_bytes(ty, &scalar_bytes, &structs, &member_offset, 0)
                });
                out.push_bytes = match (out.push_bytes, size) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    out.bindings.sort_unstable();
    out.bindings.dedup();
    Ok(out)
}

/// Bytes of type `ty` (scalars, vectors, structs of them with member offsets); `None` for
/// anything else.
fn type_bytes(
    ty: u32,
    scalar_bytes: &std::collections::HashMap<u32, u32>,
    structs: &std::collections::HashMap<u32, Vec<u32>>,
    member_offset: &std::collections::HashMap<(u32, u32), u32>,
    depth: u32,
) -> Option<u32> {
    if let Some(&b) = scalar_bytes.get(&ty) {
        return Some(b);
    }
    if depth > 8 {
        return None;
    }
    let members = structs.get(&ty)?;
    members.iter().enumerate().try_fold(0u32, |end, (k, &m)| {
        let off = member_offset.get(&(ty, k as u32))?;
        let sz = type_bytes(m, scalar_bytes, structs, member_offset, depth + 1)?;
        Some(end.max(off.saturating_add(sz)))
    })
}

/// Checks that a launch with `buffers` buffer arguments and `push_bytes` bytes of scalars
/// provides everything module `words` of kernel `kernel` declares.
pub fn check(kernel: &str, words: &[u32], buffers: usize, push_bytes: usize) -> Result<()> {
    let it = interface(words).map_err(|e| Error::invalid(format!("kernel `{kernel}`: {e}")))?;
    if let Some(&b) = it.bindings.iter().find(|&&b| b as usize >= buffers) {
        return Err(Error::invalid(format!(
            "kernel `{kernel}` declares storage-buffer binding {b} (bindings {:?}), but the \
             launch gives {buffers} buffer arguments (bound to 0..{buffers})",
            it.bindings
        )));
    }
    if let Some(need) = it.push_bytes {
        if need as usize > push_bytes {
            return Err(Error::invalid(format!(
                "kernel `{kernel}` reads {need} bytes of push constants, the launch's scalars \
                 fill {push_bytes}: pass every scalar the shader declares"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bundled_kernels() {
        // increment: (buf, n: u32, add: u32); read_sum: (src, dst, n: u32).
        let inc = crate::kernels::increment_spirv();
        let it = interface(&inc).unwrap();
        assert_eq!(it.bindings, vec![0], "{it:?}");
        assert_eq!(it.push_bytes, Some(8), "{it:?}");
        assert!(check("increment", &inc, 1, 8).is_ok());
        let e = check("increment", &inc, 0, 8).unwrap_err();
        assert!(e.to_string().contains("binding 0"), "{e}");
        let e = check("increment", &inc, 1, 4).unwrap_err();
        assert!(e.to_string().contains("push constants"), "{e}");
        let vuma_core::KernelVariant::SpirV { words, .. } =
            crate::kernels::read_sum_kernel().variants()[0].clone()
        else {
            panic!("read_sum has a SPIR-V variant");
        };
        let it = interface(&words).unwrap();
        assert_eq!(it.bindings, vec![0, 1], "{it:?}");
        assert_eq!(it.push_bytes, Some(4), "{it:?}");
    }

    #[test]
    fn malformed_words_are_errors() {
        assert!(interface(&[]).is_err());
        assert!(interface(&[1, 2, 3, 4, 5]).is_err());
        // An instruction whose word count runs past the end.
        assert!(interface(&[SPIRV_MAGIC, 0x10000, 0, 1, 0, 0x0050_0047]).is_err());
        // A zero word count.
        assert!(interface(&[SPIRV_MAGIC, 0x10000, 0, 1, 0, 0]).is_err());
    }
}
