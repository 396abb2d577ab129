//! Deterministic, resumable sample order.
//!
//! Sample `c` of the run (a global cursor counted from 0) is window
//! `perm_e[c mod n]` of epoch `e = c / n`, where `perm_e` is a Fisher–Yates
//! shuffle seeded by `(seed, e)` (or the identity without shuffling). The data
//! position of a run is just the cursor, so a resumed run sees exactly the
//! samples an uninterrupted run would.

/// The order in which windows are visited.
#[derive(Clone, Debug)]
pub struct DataOrder {
    len: usize,
    seed: u64,
    shuffle: bool,
    epoch: Option<(usize, Vec<usize>)>,
}

impl DataOrder {
    /// The order over `len` windows.
    pub fn new(len: usize, seed: u64, shuffle: bool) -> Self {
        assert!(len > 0, "empty dataset");
        Self {
            len,
            seed,
            shuffle,
            epoch: None,
        }
    }

    /// The window index of sample `cursor`.
    pub fn index(&mut self, cursor: u64) -> usize {
        let epoch = (cursor / self.len as u64) as usize;
        let pos = (cursor % self.len as u64) as usize;
        if !self.shuffle {
            return pos;
        }
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch = Some((epoch, permutation(self.len, self.seed, epoch as u64)));
        }
        self.epoch.as_ref().expect("set above").1[pos]
    }

    /// The epoch of sample `cursor`.
    pub fn epoch(&self, cursor: u64) -> u64 {
        cursor / self.len as u64
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut state = seed ^ epoch.wrapping_mul(0xd6e8_feb8_6659_fd93);
    let mut perm: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_permutation() {
        let mut order = DataOrder::new(10, 7, true);
        for epoch in 0..3u64 {
            let mut seen: Vec<usize> = (0..10).map(|i| order.index(epoch * 10 + i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(
            (0..10).map(|i| order.index(i)).collect::<Vec<_>>(),
            (10..20).map(|i| order.index(i)).collect::<Vec<_>>()
        );
    }
}
