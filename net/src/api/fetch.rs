//! Fetch (key 1), v4–17: long poll (answer once min_bytes is reached or max_wait_ms passes),
//! max_bytes and partition_max_bytes (the first batch always goes out whole), OFFSET_OUT_OF_RANGE,
//! isolation levels (read_committed stops at the last stable offset and lists the aborted
//! transactions the data holds, so clients drop them: KIP-98),
//! incremental fetch sessions (KIP-227), and zero-copy records: cached batches as shared `Bytes`,
//! older data as sendfile(2) ranges spliced into the encoded response.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{select, select_all, Either};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProducerId, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use fjord_engine::partition::{Chunk, Isolation, Partition};
use fjord_engine::rt;
use futures::channel::oneshot;

use super::handler::{Answer, Framed, Versions};
use crate::codes;
use crate::context::ShardContext;
use crate::fetch_session::{SessionKey, SessionPartition};
use crate::message::{FetchPart, FetchResult, ShardRequest};
use crate::response::{self, OutFrame};
use crate::router;

pub const VERSIONS: Versions = Versions { min: 4, max: 17 };

/// Upper bound on a long poll, whatever the client asks.
const FETCH_WAIT_MS_MAX: i32 = 60_000;

/// (topic, partition, offset) a long poll waits past.
type WatchPart = (String, i32, i64);

/// One partition the response covers.
struct Wanted {
    topic: String,
    topic_id: [u8; 16],
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
}

pub async fn handle(ctx: Rc<ShardContext>, header: RequestHeader, request: FetchRequest) -> Answer {
    let version = header.request_api_version;
    let (wanted, session) = match select_partitions(&ctx, version, &request) {
        Ok(selected) => selected,
        Err(code) => return encode_error(&header, code).map(Some),
    };
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let isolation = if request.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let max_bytes = request.max_bytes.max(0) as usize;
    let mut results = fetch_round(&ctx, &wanted, isolation, max_bytes).await;
    loop {
        let total: usize = results.iter().map(|result| result.chunks.iter().map(Chunk::len).sum::<usize>()).sum();
        let any_error = results.iter().any(|result| result.error_code != 0);
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || ctx.shutting_down.get() {
            break;
        }
        wait_for_data(&ctx, &wanted, isolation, deadline - now).await;
        results = fetch_round(&ctx, &wanted, isolation, max_bytes).await;
    }
    apply_max_bytes(&mut results, max_bytes);
    let sent: usize = results.iter().map(|result| result.chunks.iter().map(Chunk::len).sum::<usize>()).sum();
    ctx.metrics().fetch_requests.add(1);
    ctx.metrics().fetch_bytes.add(sent as u64);
    let isolation_committed = request.isolation_level == 1;
    build_response(&ctx, &header, wanted, results, session, isolation_committed)
}

/// What the response must say about the session.
struct SessionReply {
    id: i32,
    incremental: bool,
}

fn select_partitions(ctx: &ShardContext, version: i16, request: &FetchRequest) -> Result<(Vec<Wanted>, SessionReply), i16> {
    let mut requested = Vec::new();
    for topic in &request.topics {
        let (name, id) = if version >= 13 {
            match ctx.topic_by_id(topic.topic_id.as_bytes()) {
                Some(info) => (info.name.clone(), info.id),
                None => (String::new(), *topic.topic_id.as_bytes()),
            }
        } else {
            let name = topic.topic.0.to_string();
            let id = ctx.topic(&name).map(|info| info.id).unwrap_or_default();
            (name, id)
        };
        for partition in &topic.partitions {
            requested.push(Wanted {
                topic: name.clone(),
                topic_id: id,
                partition: partition.partition,
                fetch_offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes,
                current_leader_epoch: partition.current_leader_epoch,
            });
        }
    }
    let session_id = request.session_id;
    let epoch = request.session_epoch;
    let mut sessions = ctx.fetch_sessions.borrow_mut();
    match (session_id, epoch) {
        (0, 0) => {
            let partitions = requested.iter().map(|wanted| (key(wanted), session_partition(wanted))).collect();
            let id = sessions.create(ctx.shard_id, partitions).unwrap_or(0);
            Ok((requested, SessionReply { id, incremental: false }))
        }
        (0, _) => Ok((requested, SessionReply { id: 0, incremental: false })),
        (id, -1) => {
            sessions.remove(id);
            Ok((requested, SessionReply { id: 0, incremental: false }))
        }
        (id, epoch) => {
            let session = sessions.get_mut(id, epoch)?;
            for wanted in &requested {
                let entry = session.partitions.entry(key(wanted)).or_insert_with(|| session_partition(wanted));
                entry.fetch_offset = wanted.fetch_offset;
                entry.max_bytes = wanted.max_bytes;
            }
            for forgotten in &request.forgotten_topics_data {
                let name = if version >= 13 {
                    ctx.topic_by_id(forgotten.topic_id.as_bytes()).map(|info| info.name.clone()).unwrap_or_default()
                } else {
                    forgotten.topic.0.to_string()
                };
                for partition in &forgotten.partitions {
                    session.partitions.shift_remove(&(name.clone(), *partition));
                }
            }
            session.next_epoch = session.next_epoch.wrapping_add(1).max(1);
            let all = session
                .partitions
                .iter()
                .map(|((topic, partition), cached)| Wanted {
                    topic: topic.clone(),
                    topic_id: cached.topic_id,
                    partition: *partition,
                    fetch_offset: cached.fetch_offset,
                    max_bytes: cached.max_bytes,
                    current_leader_epoch: -1,
                })
                .collect();
            Ok((all, SessionReply { id, incremental: true }))
        }
    }
}

fn key(wanted: &Wanted) -> SessionKey {
    (wanted.topic.clone(), wanted.partition)
}

fn session_partition(wanted: &Wanted) -> SessionPartition {
    SessionPartition {
        topic_id: wanted.topic_id,
        fetch_offset: wanted.fetch_offset,
        max_bytes: wanted.max_bytes,
        last_high_watermark: -1,
        last_log_start_offset: -1,
        last_error: -1,
    }
}

/// One pass over every wanted partition: errors decided here, reads on the owner shards, each
/// partition at most min(partition_max_bytes, max_bytes) (the first batch always whole).
async fn fetch_round(ctx: &Rc<ShardContext>, wanted: &[Wanted], isolation: Isolation, max_bytes: usize) -> Vec<FetchResult> {
    let mut results: Vec<FetchResult> = Vec::with_capacity(wanted.len());
    let mut routed = Vec::new();
    for (position, item) in wanted.iter().enumerate() {
        let mut result = FetchResult::error(0);
        match ctx.topic(&item.topic) {
            Some(topic) if topic.id == item.topic_id && item.partition >= 0 && item.partition < topic.partition_count => {
                let epoch = topic.leader_epochs.get(item.partition as usize).copied().unwrap_or(0);
                if item.current_leader_epoch >= 0 && item.current_leader_epoch < epoch {
                    result.error_code = codes::FENCED_LEADER_EPOCH;
                } else if item.current_leader_epoch > epoch {
                    result.error_code = codes::UNKNOWN_LEADER_EPOCH;
                } else {
                    routed.push((
                        position,
                        FetchPart {
                            topic: item.topic.clone(),
                            partition: item.partition,
                            spec: topic.spec(item.partition),
                            fetch_offset: item.fetch_offset,
                            max_bytes: (item.max_bytes.max(0) as usize).min(max_bytes),
                            isolation,
                        },
                    ));
                }
            }
            Some(topic) if topic.id != item.topic_id && item.topic_id != [0; 16] => result.error_code = codes::UNKNOWN_TOPIC_ID,
            Some(_) => result.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION,
            None if item.topic.is_empty() => result.error_code = codes::UNKNOWN_TOPIC_ID,
            None => result.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION,
        }
        results.push(result);
    }
    let split = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    for (position, answer) in router::call(ctx, split, |parts, reply| ShardRequest::Fetch { parts, reply }).await {
        match answer {
            Some(answer) => results[position] = answer,
            None => results[position].error_code = codes::KAFKA_STORAGE_ERROR,
        }
    }
    results
}

/// Waits until an owner reports new data for one of the partitions, or `wait` passes.
async fn wait_for_data(ctx: &Rc<ShardContext>, wanted: &[Wanted], isolation: Isolation, wait: Duration) {
    let items: Vec<(usize, (String, i32, i64))> = wanted
        .iter()
        .enumerate()
        .map(|(position, item)| (position, (item.topic.clone(), item.partition, item.fetch_offset)))
        .collect();
    let by_shard = router::split_by_owner(items, |(topic, partition, _): &WatchPart| ctx.table.owner(topic, *partition)).by_shard;
    if by_shard.is_empty() {
        rt::sleep(wait).await;
        return;
    }
    let receivers = router::fan_out(ctx, by_shard, |parts, reply| ShardRequest::Watch { parts, isolation, reply }).await;
    let arrivals = select_all(receivers);
    let shutdown = ctx.shutdown.notified();
    let _ = rt::timeout(wait, select(arrivals, shutdown)).await;
}

/// Bounds the whole response by the request's max_bytes, filling partitions in the order they are
/// listed (KIP-74): each partition gets what is left of the budget, and only the first partition
/// that returns data may exceed it, by its first batch, so a consumer always makes progress. The
/// owner shards read in parallel, each partition up to min(partition_max_bytes, max_bytes); the
/// shared budget is applied here, once every shard has answered, so a request split over shards
/// is bounded as one. A partition whose first batch does not fit what is left returns no records
/// (Kafka v3+ does the same), a later batch that does not fit is cut: a file slice at the byte
/// budget (a partial trailing batch, which clients skip, as from Kafka), a cached batch whole.
pub fn apply_max_bytes(results: &mut [FetchResult], max_bytes: usize) {
    let mut remaining = max_bytes;
    let mut first = true;
    for result in results.iter_mut() {
        let size: usize = result.chunks.iter().map(Chunk::len).sum();
        if size == 0 {
            continue;
        }
        let first_batch_bytes = result.chunks.first().map_or(0, first_batch_bytes);
        let allowed = if first { remaining.max(first_batch_bytes) } else { remaining };
        if size > allowed {
            truncate_chunks(&mut result.chunks, allowed, first_batch_bytes);
        }
        let kept: usize = result.chunks.iter().map(Chunk::len).sum();
        if kept > 0 {
            first = false;
        }
        remaining = remaining.saturating_sub(kept);
    }
}

/// The whole batch a partition's data starts with (a cached chunk is exactly one batch).
fn first_batch_bytes(chunk: &Chunk) -> usize {
    match chunk {
        Chunk::Memory(bytes) => bytes.len(),
        Chunk::File(slice) => slice.first_batch_bytes,
    }
}

/// Cuts a partition's chunks to at most `allowed` bytes; nothing if its first batch does not fit.
fn truncate_chunks(chunks: &mut Vec<Chunk>, allowed: usize, first_batch_bytes: usize) {
    if allowed < first_batch_bytes {
        chunks.clear();
        return;
    }
    let mut used = 0usize;
    let mut keep = 0usize;
    for chunk in chunks.iter_mut() {
        let length = chunk.len();
        if used + length <= allowed {
            used += length;
            keep += 1;
            continue;
        }
        if let Chunk::File(slice) = chunk {
            // A file slice holds whole batches from its start; the cut may end inside one.
            slice.length = allowed - used;
            if slice.length > 0 {
                keep += 1;
            }
        }
        break;
    }
    chunks.truncate(keep);
    debug_assert!(chunks.iter().map(Chunk::len).sum::<usize>() <= allowed);
}

fn build_response(
    ctx: &ShardContext,
    header: &RequestHeader,
    wanted: Vec<Wanted>,
    results: Vec<FetchResult>,
    session: SessionReply,
    isolation_committed: bool,
) -> Answer {
    let version = header.request_api_version;
    let mut response = FetchResponse::default();
    response.session_id = session.id;
    let mut records: Vec<Vec<Chunk>> = Vec::new();
    let mut sessions = ctx.fetch_sessions.borrow_mut();
    let mut session_partitions: Option<&mut IndexMap<SessionKey, SessionPartition>> = None;
    if session.id != 0 {
        if let Ok(found) = sessions.get_mut_unchecked(session.id) {
            session_partitions = Some(&mut found.partitions);
        }
    }
    // KIP-227: in an incremental session, a partition that returned records goes to the end of
    // the session's order, so under a tight max_bytes the others get their turn.
    let mut served = Vec::new();
    for (item, result) in wanted.into_iter().zip(results) {
        if session.incremental && !result.chunks.is_empty() {
            served.push((item.topic.clone(), item.partition));
        }
        if let Some(partitions) = session_partitions.as_deref_mut() {
            if let Some(cached) = partitions.get_mut(&(item.topic.clone(), item.partition)) {
                let changed = !result.chunks.is_empty()
                    || cached.last_high_watermark != result.high_watermark
                    || cached.last_log_start_offset != result.log_start_offset
                    || cached.last_error != result.error_code;
                cached.last_high_watermark = result.high_watermark;
                cached.last_log_start_offset = result.log_start_offset;
                cached.last_error = result.error_code;
                if session.incremental && !changed {
                    continue;
                }
            }
        }
        let mut partition = PartitionData::default();
        partition.partition_index = item.partition;
        partition.error_code = result.error_code;
        partition.high_watermark = result.high_watermark;
        partition.last_stable_offset = result.last_stable_offset;
        partition.log_start_offset = if version >= 5 { result.log_start_offset } else { -1 };
        partition.aborted_transactions = isolation_committed.then(|| {
            result
                .aborted
                .iter()
                .map(|aborted| {
                    let mut entry = AbortedTransaction::default();
                    entry.producer_id = ProducerId(aborted.producer_id);
                    entry.first_offset = aborted.first_offset;
                    entry
                })
                .collect()
        });
        partition.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
        if result.chunks.is_empty() {
            partition.records = Some(Bytes::new());
        } else {
            partition.records = Some(response::placeholder(records.len() as u64));
            records.push(result.chunks);
        }
        let same_topic = response.responses.last().is_some_and(|last: &FetchableTopicResponse| {
            if version >= 13 {
                last.topic_id.as_bytes() == &item.topic_id
            } else {
                last.topic.0.as_str() == item.topic
            }
        });
        if !same_topic {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = TopicName(StrBytes::from_string(item.topic.clone()));
            topic.topic_id = Uuid::from_bytes(item.topic_id);
            response.responses.push(topic);
        }
        response.responses.last_mut().expect("pushed above").partitions.push(partition);
    }
    if let Some(partitions) = session_partitions {
        rotate_served(partitions, served);
    }
    drop(sessions);
    let encoded = response::encode(ApiKey::Fetch, version, header.correlation_id, &response)?;
    Ok(Some(response::splice_records(encoded, records, version >= 12)))
}

/// Moves the partitions that returned records to the end of a session's order (KIP-227).
pub fn rotate_served<K: std::hash::Hash + Eq, V>(partitions: &mut IndexMap<K, V>, served: Vec<K>) {
    for key in served {
        if let Some(cached) = partitions.shift_remove(&key) {
            partitions.insert(key, cached);
        }
    }
}

fn encode_error(header: &RequestHeader, code: i16) -> Framed {
    let mut response = FetchResponse::default();
    response.error_code = code;
    let bytes = response::encode(ApiKey::Fetch, header.request_api_version, header.correlation_id, &response)?;
    Ok(OutFrame::encoded(bytes))
}

/// The owner half of a fetch: reads each part (batch cache or sendfile ranges).
pub async fn read_on_owner(ctx: &ShardContext, parts: Vec<FetchPart>) -> Vec<FetchResult> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let result = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => match partition.read(part.fetch_offset, part.max_bytes, part.isolation) {
                Ok(read) => FetchResult {
                    error_code: 0,
                    high_watermark: read.high_watermark,
                    last_stable_offset: read.last_stable_offset,
                    log_start_offset: read.log_start_offset,
                    chunks: read.chunks,
                    aborted: read.aborted,
                },
                // As Kafka: an error partition carries no offsets.
                Err(error) => FetchResult::error(error.kafka_error_code()),
            },
            Err(error) => FetchResult::error(error.kafka_error_code()),
        };
        results.push(result);
    }
    results
}

/// Waits on this shard until one of `parts` has data past its offset, the requester gives up
/// (drops its receiver) or a bound passes.
pub async fn watch_on_owner(
    ctx: &ShardContext,
    parts: Vec<(String, i32, i64)>,
    isolation: Isolation,
    mut reply: oneshot::Sender<()>,
) {
    const WATCH_BOUND: Duration = Duration::from_secs(60);
    let partitions: Vec<_> = parts
        .iter()
        .filter_map(|(topic, partition, offset)| ctx.store.get(topic, *partition).map(|found| (found, *offset)))
        .collect();
    if partitions.is_empty() {
        return;
    }
    let deadline = std::time::Instant::now() + WATCH_BOUND;
    loop {
        let readable_end = |partition: &Partition| match isolation {
            Isolation::ReadUncommitted => partition.high_watermark(),
            Isolation::ReadCommitted => partition.last_stable_offset(),
        };
        if partitions.iter().any(|(partition, offset)| readable_end(partition) > *offset || partition.is_poisoned()) {
            let _ = reply.send(());
            return;
        }
        if std::time::Instant::now() >= deadline || ctx.shutting_down.get() {
            return;
        }
        let arrivals = select_all(partitions.iter().map(|(partition, _)| Box::pin(partition.data_arrived.notified())));
        let shutdown = ctx.shutdown.notified();
        let canceled = reply.cancellation();
        let waiting = select(arrivals, select(Box::pin(canceled), Box::pin(shutdown)));
        match rt::timeout(Duration::from_secs(1), waiting).await {
            Some(Either::Right((Either::Left(_), _))) => return, // requester gone
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    //! KIP-74's bound and KIP-227's rotation, over random partition counts, batch sizes, shard
    //! splits, cache or file reads, max_bytes and partition_max_bytes.

    use std::sync::Arc;

    use bytes::Bytes;
    use fjord_engine::partition::Chunk;
    use fjord_engine::segment::FileSlice;
    use indexmap::IndexMap;
    use proptest::prelude::*;

    use super::{apply_max_bytes, rotate_served};
    use crate::message::FetchResult;

    /// One partition of the model: its batches' sizes, where reads come from, its owner shard.
    #[derive(Debug, Clone)]
    struct ModelPartition {
        batches: Vec<usize>,
        cached: bool,
        shard: usize,
    }

    /// What an owner shard's read returns from batch `from` with `limit` bytes: whole cached
    /// batches up to the limit, or one file slice cut at it; the first batch always whole.
    fn read(partition: &ModelPartition, from: usize, limit: usize, file: &Arc<std::fs::File>) -> Vec<Chunk> {
        let rest = &partition.batches[from.min(partition.batches.len())..];
        let Some(&first) = rest.first() else { return Vec::new() };
        if partition.cached {
            let mut used = 0;
            let mut chunks = Vec::new();
            for &size in rest {
                if !chunks.is_empty() && used + size > limit {
                    break;
                }
                used += size;
                chunks.push(Chunk::Memory(Bytes::from(vec![0u8; size])));
            }
            chunks
        } else {
            let total: usize = rest.iter().sum();
            let length = total.min(limit.max(first));
            vec![Chunk::File(FileSlice { file: file.clone(), position: 0, length, first_batch_bytes: first })]
        }
    }

    /// Whole batches a consumer can take from what was returned (a cut trailing batch is skipped).
    fn whole_batches(partition: &ModelPartition, from: usize, chunks: &[Chunk]) -> usize {
        let returned: usize = chunks.iter().map(Chunk::len).sum();
        let mut used = 0;
        let mut count = 0;
        for &size in &partition.batches[from..] {
            if used + size > returned {
                break;
            }
            used += size;
            count += 1;
        }
        count
    }

    fn partitions() -> impl Strategy<Value = Vec<ModelPartition>> {
        let partition = (prop::collection::vec(1usize..3000, 0..6), any::<bool>(), 0usize..3)
            .prop_map(|(batches, cached, shard)| ModelPartition { batches, cached, shard });
        prop::collection::vec(partition, 1..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn responses_stay_within_max_bytes_and_no_partition_is_starved(
            model in partitions(),
            max_bytes in 0usize..8000,
            partition_max_bytes in 1usize..6000,
        ) {
            let file = Arc::new(std::fs::File::open("/dev/null").expect("/dev/null"));
            let count = model.len();
            let mut next = vec![0usize; count];
            // The session's order of partitions (index into `model`).
            let mut order: IndexMap<usize, ()> = (0..count).map(|index| (index, ())).collect();
            let mut waited = vec![0usize; count];
            let total_batches: usize = model.iter().map(|partition| partition.batches.len()).sum();
            for _round in 0..=total_batches {
                let wanted: Vec<usize> = order.keys().copied().collect();
                // Each owner shard reads its own partitions; answers go back to request order. The
                // shards read up to partition_max_bytes alone (the broker also caps reads at
                // max_bytes, but the bound must not depend on it).
                let limit = partition_max_bytes;
                let mut results: Vec<FetchResult> = wanted.iter().map(|_| FetchResult::default()).collect();
                for shard in 0..3 {
                    for (position, &index) in wanted.iter().enumerate() {
                        if model[index].shard == shard {
                            results[position].chunks = read(&model[index], next[index], limit, &file);
                        }
                    }
                }
                let first_available = results.iter().find_map(|result| result.chunks.first().map(super::first_batch_bytes));
                apply_max_bytes(&mut results, max_bytes);
                let sizes: Vec<usize> = results.iter().map(|result| result.chunks.iter().map(Chunk::len).sum()).collect();
                let total: usize = sizes.iter().sum();
                // The bound: max_bytes, or the first batch of the first partition with data.
                prop_assert!(total <= max_bytes.max(first_available.unwrap_or(0)), "{total} > {max_bytes} ({sizes:?})");
                if first_available.is_some() {
                    prop_assert!(total > 0, "data was available but the response is empty");
                }
                let mut served = Vec::new();
                for (position, &index) in wanted.iter().enumerate() {
                    let chunks = &results[position].chunks;
                    let available = next[index] < model[index].batches.len();
                    if sizes[position] > 0 {
                        let taken = whole_batches(&model[index], next[index], chunks);
                        prop_assert!(taken >= 1, "partition {index}: returned data holds no whole batch");
                        next[index] += taken;
                        served.push(index);
                        waited[index] = 0;
                    } else if available {
                        waited[index] += 1;
                        // KIP-227 rotation: within one pass over the session, every partition
                        // with data is served.
                        prop_assert!(waited[index] <= count, "partition {index} starved for {} rounds", waited[index]);
                    }
                }
                rotate_served(&mut order, served);
                if (0..count).all(|index| next[index] >= model[index].batches.len()) {
                    return Ok(());
                }
            }
            prop_assert!(false, "not every batch was consumed in {total_batches} rounds");
        }
    }
}
