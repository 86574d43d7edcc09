//! One shard's protocol state: its [`ShardContext`] and the coordinators that live on it. The
//! handlers of the group and transaction APIs reach the coordinators through it; everything
//! else needs only the context.

use std::rc::Rc;

use crate::context::ShardContext;
use crate::coordinator::groups::GroupCoordinator;
use crate::coordinator::transactions::TxnCoordinator;

/// Lives on one shard.
pub struct Shard {
    pub ctx: Rc<ShardContext>,
    pub groups: Rc<GroupCoordinator>,
    pub transactions: Rc<TxnCoordinator>,
}

impl Shard {
    pub fn new(ctx: Rc<ShardContext>) -> Rc<Shard> {
        let groups = GroupCoordinator::new(ctx.clone(), ctx.settings.coordinator.clone());
        let transactions = TxnCoordinator::new(ctx.clone(), ctx.settings.transactions.clone());
        Rc::new(Shard { ctx, groups, transactions })
    }

    /// Loads the coordinator partitions this shard owns (at start: restored groups' sessions
    /// run again, open transactions time out, half-written markers are written again).
    pub fn load_coordinators(&self) {
        self.groups.load_owned();
        self.transactions.load_owned();
    }
}
