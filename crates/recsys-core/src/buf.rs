//! `Buf<T>`: an array that is either owned (a `Vec`) or borrowed from read-only memory that
//! something else keeps alive, such as a model image mapped by every backend of a PostgreSQL
//! cluster (one physical copy in the page cache instead of one decoded copy per connection).
//!
//! Reads go through the slice (`Deref`). A write turns a borrowed buffer into an owned copy
//! first (copy on write), so the borrowed memory is never written: training builds owned
//! buffers as before, serving borrows, and a backend that appends posts to its model copies
//! just the arrays it appends to.
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Element types for which every bit pattern is a valid value (so a borrowed byte range can be
/// read as them): plain integers and floats.
///
/// # Safety
/// Implement only for types without padding, invalid bit patterns or pointers.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}
// SAFETY: primitive integers and floats: any bit pattern is a value, no padding.
unsafe impl Plain for u8 {}
unsafe impl Plain for i8 {}
unsafe impl Plain for u16 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for i64 {}
unsafe impl Plain for u64 {}
unsafe impl Plain for usize {}
unsafe impl Plain for f32 {}
unsafe impl Plain for f64 {}

pub enum Buf<T: Plain> {
    Owned(Vec<T>),
    Borrowed { ptr: *const T, len: usize, keep: Arc<dyn Send + Sync> },
}

// SAFETY: a borrowed buffer points into memory that is never written while `keep` (shared,
// Send + Sync) is alive, and T is Plain (Send + Sync): sharing or moving it across threads is
// as safe as sharing a &[T].
unsafe impl<T: Plain> Send for Buf<T> {}
// SAFETY: as above; all access through &Buf is read-only.
unsafe impl<T: Plain> Sync for Buf<T> {}

impl<T: Plain> Buf<T> {
    /// A buffer over `len` values at `ptr`, kept alive by `keep`.
    ///
    /// # Safety
    /// `ptr` must be aligned for T and valid for reads of `len` values for as long as `keep`
    /// lives, and that memory must never be written meanwhile.
    pub unsafe fn borrowed(ptr: *const T, len: usize, keep: Arc<dyn Send + Sync>) -> Buf<T> {
        Buf::Borrowed { ptr, len, keep }
    }

    pub fn is_borrowed(&self) -> bool {
        matches!(self, Buf::Borrowed { .. })
    }

    /// The owned vector, copying a borrowed buffer first.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Buf::Borrowed { .. } = self {
            *self = Buf::Owned(self.deref().to_vec());
        }
        match self {
            Buf::Owned(v) => v,
            Buf::Borrowed { .. } => unreachable!("just made owned"),
        }
    }

    pub fn into_vec(self) -> Vec<T> {
        match self {
            Buf::Owned(v) => v,
            b => b.deref().to_vec(),
        }
    }

    pub fn push(&mut self, x: T) {
        self.to_mut().push(x)
    }

    pub fn extend_from_slice(&mut self, x: &[T]) {
        self.to_mut().extend_from_slice(x)
    }

    pub fn resize(&mut self, n: usize, x: T) {
        self.to_mut().resize(n, x)
    }

    pub fn truncate(&mut self, n: usize) {
        self.to_mut().truncate(n)
    }

    pub fn clear(&mut self) {
        self.to_mut().clear()
    }

    /// Bytes of the values (owned or not).
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.deref())
    }

    /// The values as bytes (native endianness), e.g. to write an image.
    pub fn as_bytes(&self) -> &[u8] {
        as_bytes(self.deref())
    }
}

/// A slice of Plain values as bytes.
pub fn as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: T is Plain (no padding), so every byte of the slice is initialised.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

impl<T: Plain> Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            // SAFETY: guaranteed by the constructor's contract (`borrowed`).
            Buf::Borrowed { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl<T: Plain> DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T: Plain> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Self {
        Buf::Owned(v)
    }
}

impl<T: Plain> Default for Buf<T> {
    fn default() -> Self {
        Buf::Owned(Vec::new())
    }
}

impl<T: Plain> Clone for Buf<T> {
    fn clone(&self) -> Self {
        match self {
            Buf::Owned(v) => Buf::Owned(v.clone()),
            Buf::Borrowed { ptr, len, keep } => Buf::Borrowed { ptr: *ptr, len: *len, keep: keep.clone() },
        }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Buf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.deref().fmt(f)
    }
}

impl<T: Plain + PartialEq> PartialEq for Buf<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deref() == other.deref()
    }
}

impl<T: Plain> FromIterator<T> for Buf<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Buf::Owned(it.into_iter().collect())
    }
}

impl<T: Plain> Extend<T> for Buf<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        self.to_mut().extend(it)
    }
}

impl<'a, T: Plain> IntoIterator for &'a Buf<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.deref().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_reads_and_copies_on_write() {
        let backing: Arc<Vec<u32>> = Arc::new(vec![1, 2, 3]);
        // SAFETY: the Vec is kept alive by the Arc and never written.
        let mut b = unsafe { Buf::borrowed(backing.as_ptr(), 3, backing.clone()) };
        assert!(b.is_borrowed() && b[1] == 2 && b.len() == 3);
        let c = b.clone();
        b.push(4);
        assert!(!b.is_borrowed());
        assert_eq!((&b[..], &c[..], &backing[..]), (&[1, 2, 3, 4][..], &[1, 2, 3][..], &[1, 2, 3][..]));
        assert_eq!(as_bytes(&[1u32][..]), &1u32.to_ne_bytes());
    }
}
