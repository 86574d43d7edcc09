//! Keys and values of `__consumer_offsets` records.
