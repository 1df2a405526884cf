//! Owned, zero-initialised byte buffers with a chosen alignment.
//!
//! Arenas and decoded weights must be aligned more strictly than `Vec<u8>` promises (64 bytes for
//! AVX-512 loads). This is the one place that calls the allocator directly; it must never hand out
//! a pointer that outlives the buffer or is misaligned, even for zero-length buffers.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::Error;

/// A buffer of `length` bytes aligned to `alignment`, zeroed on creation.
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    length: usize,
    alignment: usize,
    /// Large buffers are anonymous mappings: the kernel hands out zero pages as they are first
    /// written, where the allocator would memset the whole buffer up front (for ResNet50's
    /// packed weights, 100 MB written twice at load); dropping one returns its pages at once.
    mapping: Option<memmap2::MmapMut>,
}

/// Buffers from this size on are anonymous mappings.
const MAPPED_FROM_BYTES: usize = 1 << 20;

// SAFETY: the buffer exclusively owns its allocation, like a `Vec<u8>`; shared references only
// allow reads.
unsafe impl Send for AlignedBuffer {}
// SAFETY: as above: `&AlignedBuffer` only reads, mutation needs `&mut`.
unsafe impl Sync for AlignedBuffer {}

impl AlignedBuffer {
    /// Allocates `length` zero bytes aligned to `alignment` (a power of two).
    pub fn zeroed(length: usize, alignment: usize) -> Result<AlignedBuffer, Error> {
        let allocation_error = Error::Allocation {
            bytes: length,
            alignment,
        };
        let Ok(layout) = Layout::from_size_align(length, alignment) else {
            return Err(allocation_error);
        };
        if length == 0 {
            // A dangling but aligned pointer, as the ABI allows for an empty arena.
            let Some(pointer) = NonNull::new(alignment as *mut u8) else {
                return Err(allocation_error);
            };
            return Ok(AlignedBuffer {
                pointer,
                length,
                alignment,
                mapping: None,
            });
        }
        // Page-aligned, so any alignment up to a page holds.
        if length >= MAPPED_FROM_BYTES && alignment <= 4096 {
            // Populated: the kernel maps every page in the one call rather than in one fault per
            // page at the first write (measured on this VM, that costs as much as the writing).
            let mut mapping = memmap2::MmapOptions::new()
                .len(length)
                .populate()
                .map_anon()
                .map_err(|_| allocation_error)?;
            let Some(pointer) = NonNull::new(mapping.as_mut_ptr()) else {
                return Err(Error::Allocation {
                    bytes: length,
                    alignment,
                });
            };
            return Ok(AlignedBuffer {
                pointer,
                length,
                alignment,
                mapping: Some(mapping),
            });
        }
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else {
            return Err(allocation_error);
        };
        Ok(AlignedBuffer {
            pointer,
            length,
            alignment,
            mapping: None,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Start of the buffer (aligned, valid for `len()` bytes).
    pub fn as_ptr(&self) -> *const u8 {
        self.pointer.as_ptr()
    }

    /// Mutable start of the buffer.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the pointer is valid and initialised for `length` bytes (dangling only when
        // `length` is 0, which `from_raw_parts` allows for an aligned non-null pointer).
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.length) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.length) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        if self.length == 0 || self.mapping.is_some() {
            return; // nothing allocated, or the mapping unmaps itself
        }
        // SAFETY: allocated in `zeroed` with exactly this size and alignment, which were valid.
        unsafe {
            let layout = Layout::from_size_align_unchecked(self.length, self.alignment);
            alloc::dealloc(self.pointer.as_ptr(), layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for length in [0, 1, 63, 64, 1000, MAPPED_FROM_BYTES + 5] {
            let buffer = AlignedBuffer::zeroed(length, 64).unwrap();
            assert_eq!(buffer.as_ptr() as usize % 64, 0);
            assert_eq!(buffer.len(), length);
            assert!(buffer.as_slice().iter().all(|&byte| byte == 0));
        }
    }

    #[test]
    fn bad_alignment_is_an_error() {
        assert!(AlignedBuffer::zeroed(16, 3).is_err());
    }
}
