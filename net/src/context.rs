//! What every request handler on a shard can reach: the partitions it owns, the mesh to the
//! other shards, the metadata view, settings and budgets. The coordinators, which use all of
//! this, sit above it ([`crate::shard::Shard`]).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ahash::AHashMap;
use fjord_engine::metrics::{Metrics, ShardMetrics};
use fjord_engine::rt::{Mesh, Notify};
use fjord_engine::shard::{PartitionSpec, ShardStore, ShardTable};
use fjord_engine::topic_config::{resolve_topic_config, BrokerConfigs, TopicConfig};
use fjord_replication::metadata::{Controller, MetadataImage, MetadataTable, TopicImage};

use crate::budget::RequestBudget;
use crate::fetch_session::FetchSessionCache;
use crate::log_limit::{LogLimiter, LOG_WINDOW};
use crate::message::ShardRequest;
use crate::settings::BrokerSettings;

/// A topic as the hot path needs it, resolved once per metadata version. Lives on one shard.
#[derive(Debug)]
pub struct TopicInfo {
    pub name: String,
    pub id: [u8; 16],
    pub partition_count: i32,
    pub leader_epochs: Vec<i32>,
    pub config: TopicConfig,
}

impl TopicInfo {
    pub fn spec(&self, partition: i32) -> PartitionSpec {
        PartitionSpec {
            topic_id: self.id,
            leader_epoch: self.leader_epochs.get(partition as usize).copied().unwrap_or(0),
            config: self.config.clone(),
        }
    }
}

/// Everything a handler on shard `shard_id` uses. Lives on that shard; the `Arc`s are the only
/// state shared between shards (the metadata read view and the controller's frontend).
pub struct ShardContext {
    pub shard_id: usize,
    pub table: ShardTable,
    pub store: ShardStore,
    pub mesh: Mesh<ShardRequest>,
    pub metadata: Arc<MetadataTable>,
    pub controller: Arc<Mutex<Controller>>,
    pub settings: Arc<BrokerSettings>,
    pub fetch_sessions: RefCell<FetchSessionCache>,
    pub shutting_down: Cell<bool>,
    pub shutdown: Rc<Notify>,
    /// Memory for requests in flight on this shard (queued.max.request.bytes / shards).
    pub request_budget: Arc<RequestBudget>,
    /// Rate limits the per-connection "closing connection" warnings, per close reason.
    pub close_warnings: LogLimiter,
    metrics: Arc<Metrics>,
    topics: RefCell<(i64, AHashMap<String, Rc<TopicInfo>>)>,
    /// Serves a message addressed to this shard (the handlers live above this module).
    local: OnceCell<ServeLocal>,
}

/// Serves a [`ShardRequest`] on the shard it was made for.
pub type ServeLocal = Box<dyn Fn(ShardRequest) -> Pin<Box<dyn Future<Output = ()>>>>;

impl ShardContext {
    pub fn new(
        store: ShardStore,
        mesh: Mesh<ShardRequest>,
        metadata: Arc<MetadataTable>,
        controller: Arc<Mutex<Controller>>,
        settings: Arc<BrokerSettings>,
        metrics: Arc<Metrics>,
    ) -> ShardContext {
        let budget_bytes = settings.queued_max_request_bytes / mesh.shard_count();
        // The configuration refuses values where it would not (src/config.rs).
        assert!(
            budget_bytes >= settings.socket_request_max_bytes,
            "a shard's request memory budget ({budget_bytes} bytes) must hold one frame of socket.request.max.bytes ({})",
            settings.socket_request_max_bytes
        );
        let request_budget = Arc::new(RequestBudget::new(budget_bytes, metrics.clone(), store.shard_id));
        ShardContext {
            shard_id: store.shard_id,
            table: store.table,
            store,
            mesh,
            metadata,
            controller,
            settings: settings.clone(),
            fetch_sessions: RefCell::new(FetchSessionCache::default()),
            shutting_down: Cell::new(false),
            shutdown: Rc::new(Notify::default()),
            request_budget,
            close_warnings: LogLimiter::new(fjord_engine::metrics::CLOSE_REASONS.len(), LOG_WINDOW),
            metrics,
            topics: RefCell::new((i64::MIN, AHashMap::new())),
            local: OnceCell::new(),
        }
    }

    /// Installs what serves this shard's own messages; once, before the shard serves requests.
    pub fn set_serve_local(&self, serve: ServeLocal) {
        assert!(self.local.set(serve).is_ok(), "shard {} got two local servers", self.shard_id);
    }

    /// Serves a message addressed to this shard, as the mesh would from another shard.
    pub async fn serve_local(&self, request: ShardRequest) {
        let serve = self.local.get().expect("the server installs serve_local before any request");
        serve(request).await
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &ShardMetrics {
        self.metrics.shard(self.shard_id)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.current()
    }

    pub fn broker_configs(&self, image: &MetadataImage) -> BrokerConfigs {
        BrokerConfigs { static_: self.settings.static_configs.clone(), dynamic: image.broker_config.clone() }
    }

    /// The topic, resolved against the current metadata image (cached per image version).
    pub fn topic(&self, name: &str) -> Option<Rc<TopicInfo>> {
        let image = self.image();
        let mut cache = self.topics.borrow_mut();
        if cache.0 != image.offset {
            cache.0 = image.offset;
            cache.1.clear();
        }
        if let Some(found) = cache.1.get(name) {
            return Some(found.clone());
        }
        let topic = image.topics.get(name)?;
        let info = Rc::new(self.topic_info(&image, topic));
        cache.1.insert(name.to_string(), info.clone());
        Some(info)
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<Rc<TopicInfo>> {
        let image = self.image();
        let name = image.topic_ids.get(id)?.clone();
        self.topic(&name)
    }

    fn topic_info(&self, image: &MetadataImage, topic: &TopicImage) -> TopicInfo {
        let broker = self.broker_configs(image);
        TopicInfo {
            name: topic.name.clone(),
            id: topic.id,
            partition_count: topic.partitions.len() as i32,
            leader_epochs: topic.partitions.iter().map(|partition| partition.leader_epoch).collect(),
            config: resolve_topic_config(&broker, &topic.configs),
        }
    }

    /// Topic overrides of the image, for describe.
    pub fn topic_overrides(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.image().topics.get(name).map(|topic| topic.configs.clone())
    }
}
