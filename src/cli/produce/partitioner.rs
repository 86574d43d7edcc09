//! Kafka's default partitioner: murmur2 of the key bytes for keyed records, a sticky partition
//! (changed each time a batch of it is sent) for keyless records, or one fixed partition.

/// Kafka's murmur2, exactly as `org.apache.kafka.common.utils.Utils.murmur2` computes it
/// (seed 0x9747b28c, m 0x5bd1e995, r 24, little-endian 4-byte blocks, Java's signed result).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a keyed record:
/// `toPositive(murmur2(key)) % partitionCount`, where toPositive masks the sign bit.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// Chooses the partition of each record.
#[derive(Debug, Clone)]
pub struct Partitioner {
    partition_count: i32,
    fixed: Option<i32>,
    sticky: i32,
}

impl Partitioner {
    /// `partition_count` must be positive; `fixed` sends everything to one partition;
    /// `sticky_start` seeds the first partition used for keyless records.
    pub fn new(partition_count: i32, fixed: Option<i32>, sticky_start: u32) -> Self {
        assert!(partition_count > 0, "a topic has at least one partition");
        let sticky = (sticky_start % partition_count as u32) as i32;
        Partitioner { partition_count, fixed, sticky }
    }

    /// The partition for a record with this key.
    pub fn partition(&self, key: Option<&[u8]>) -> i32 {
        match (self.fixed, key) {
            (Some(fixed), _) => fixed,
            (None, Some(key)) => partition_for_key(key, self.partition_count),
            (None, None) => self.sticky,
        }
    }

    /// Called when a batch of `partition` is sent: keyless records move to the next partition.
    pub fn batch_sent(&mut self, partition: i32) {
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partition_count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        // From Kafka's clients UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn murmur2_matches_kafka_for_every_tail_length() {
        // Values of Kafka's Utils.murmur2 for lengths 1..=5 (all tail sizes plus one block).
        let cases: [(&[u8], i32); 5] = [
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyed_partition_masks_the_sign_bit_before_modulo() {
        // murmur2("21") is negative; Kafka masks it to positive rather than taking abs().
        let masked = (-973_932_308i32 & 0x7fff_ffff) % 7;
        assert_eq!(partition_for_key(b"21", 7), masked);
        for count in 1..20 {
            let p = partition_for_key(b"foobar", count);
            assert!((0..count).contains(&p));
        }
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
        let mut partitioner = Partitioner::new(3, None, 7);
        assert_eq!(partitioner.partition(None), 1);
        partitioner.batch_sent(0);
        assert_eq!(partitioner.partition(None), 1);
        partitioner.batch_sent(1);
        assert_eq!(partitioner.partition(None), 2);
        partitioner.batch_sent(2);
        assert_eq!(partitioner.partition(None), 0);
    }

    #[test]
    fn fixed_partition_overrides_keys() {
        let partitioner = Partitioner::new(8, Some(5), 0);
        assert_eq!(partitioner.partition(Some(b"foobar")), 5);
        assert_eq!(partitioner.partition(None), 5);
    }
}
