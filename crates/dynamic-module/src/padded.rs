//! A value alone on its cache lines.
//!
//! The reader pools and the task store are split into shards, each behind a
//! `Mutex`, so that worker threads rarely want the same one. Shards laid
//! side by side in one allocation would still share cache lines: a worker
//! locking its shard would take the line from a worker locking the next
//! one, and every lock, unlock and write inside would move it back and
//! forth between cores ("false sharing"). [`Padded`] aligns its value to 128
//! bytes, two 64-byte lines, because x86-64 cores also fetch a line's
//! neighbour.

use std::ops::Deref;

/// `T`, aligned (and so sized) to a multiple of 128 bytes.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn neighbours_never_share_a_line() {
        let shards: Box<[Padded<Mutex<[u64; 12]>>]> =
            (0..4).map(|_| Padded(Mutex::new([0; 12]))).collect();
        for pair in shards.windows(2) {
            let [a, b] = pair else { unreachable!() };
            let (a, b) = (a as *const _ as usize, b as *const _ as usize);
            assert_eq!(a % 128, 0);
            assert!(b - a >= 128);
        }
    }
}
