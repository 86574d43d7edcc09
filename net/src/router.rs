//! The router: splits a request by partition owner, sends each owner shard one message with its
//! part (over the channel mesh, or directly when the owner is this shard), and gathers replies.
//!
//! ```text
//!  connection shard k                               owner shard j
//!  ─────────────────                                ─────────────
//!  decode ─▶ group parts by owner ──ShardRequest──▶ the API's owner half (crate::api::*):
//!                                                    ordered part (append, offsets)
//!                                                    └─ spawned: await durability, reply
//!  await replies (oneshot) ◀─────────────────────── reply: one answer per part, in order
//! ```
//! One message per request part per shard, never per record. Everything an owner does before its
//! first await happens in the order the messages were sent, which keeps a connection's appends to
//! one partition in order. The router knows no API: the messages are [`crate::message`]'s, and
//! what serves them on the owner is the server's (installed with [`ShardContext::serve_local`]).

use std::rc::Rc;

use futures::channel::oneshot;

use crate::context::ShardContext;
use crate::message::ShardRequest;

/// Sends `make(parts)` to each owner shard (directly for this shard) and returns, per shard, the
/// receiver of its reply. Remote sends happen in order before this returns.
pub async fn fan_out<P, R>(
    ctx: &Rc<ShardContext>,
    by_shard: Vec<(usize, Vec<P>)>,
    make: impl Fn(Vec<P>, oneshot::Sender<R>) -> ShardRequest,
) -> Vec<oneshot::Receiver<R>> {
    let mut receivers = Vec::with_capacity(by_shard.len());
    for (shard, parts) in by_shard {
        let (sender, receiver) = oneshot::channel();
        let request = make(parts, sender);
        if shard == ctx.shard_id {
            ctx.serve_local(request).await;
        } else if ctx.mesh.send(shard, request).await.is_err() {
            tracing::debug!(shard, "owner shard stopped; its part of the request fails");
        }
        receivers.push(receiver);
    }
    receivers
}

/// Per owner shard: the request positions of its items, and (shard, items) for [`fan_out`].
pub struct Split<P> {
    pub positions: Vec<Vec<usize>>,
    pub by_shard: Vec<(usize, Vec<P>)>,
}

/// Groups items by owner shard: per shard, the items' positions in the request and the items.
pub fn split_by_owner<P>(items: Vec<(usize, P)>, owner: impl Fn(&P) -> usize) -> Split<P> {
    let mut split = Split { positions: Vec::new(), by_shard: Vec::new() };
    for (position, item) in items {
        let shard = owner(&item);
        match split.by_shard.iter().position(|(candidate, _)| *candidate == shard) {
            Some(index) => {
                split.positions[index].push(position);
                split.by_shard[index].1.push(item);
            }
            None => {
                split.positions.push(vec![position]);
                split.by_shard.push((shard, vec![item]));
            }
        }
    }
    split
}

/// Sends each owner its parts ([`fan_out`]) and waits for every answer ([`gather`]).
pub async fn call<P, R>(
    ctx: &Rc<ShardContext>,
    split: Split<P>,
    make: impl Fn(Vec<P>, oneshot::Sender<Vec<R>>) -> ShardRequest,
) -> Vec<(usize, Option<R>)> {
    let receivers = fan_out(ctx, split.by_shard, make).await;
    gather(split.positions, receivers).await
}

/// Waits for each owner's answers and pairs them with their request positions: `None` where the
/// owner could not answer (it stopped). An owner answers each part once, in order; a reply of
/// another length is a broken owner half, and fatal (never zipped into a silent default).
pub async fn gather<R>(positions: Vec<Vec<usize>>, receivers: Vec<oneshot::Receiver<Vec<R>>>) -> Vec<(usize, Option<R>)> {
    assert_eq!(positions.len(), receivers.len(), "one receiver per owner shard");
    let mut answers = Vec::with_capacity(positions.iter().map(Vec::len).sum());
    for (order, receiver) in positions.into_iter().zip(receivers) {
        match receiver.await {
            Ok(replies) => {
                assert_eq!(
                    replies.len(),
                    order.len(),
                    "an owner shard answered {} parts with {} replies",
                    order.len(),
                    replies.len()
                );
                answers.extend(order.into_iter().zip(replies.into_iter().map(Some)));
            }
            Err(_) => answers.extend(order.into_iter().map(|position| (position, None))),
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_request_positions_per_owner() {
        let items: Vec<(usize, u32)> = vec![(0, 10), (1, 21), (2, 12), (3, 23)];
        let split = split_by_owner(items, |item| (*item / 10) as usize);
        assert_eq!(split.positions, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(split.by_shard, vec![(1, vec![10, 12]), (2, vec![21, 23])]);
    }

    #[test]
    fn gather_pairs_answers_with_positions_and_marks_lost_owners() {
        let (first, first_receiver) = oneshot::channel();
        let (second, second_receiver) = oneshot::channel::<Vec<&str>>();
        first.send(vec!["a", "c"]).expect("receiver alive");
        drop(second);
        let answers = futures::executor::block_on(gather(vec![vec![0, 2], vec![1]], vec![first_receiver, second_receiver]));
        assert_eq!(answers, vec![(0, Some("a")), (2, Some("c")), (1, None)]);
    }

    #[test]
    #[should_panic(expected = "answered 2 parts with 1 replies")]
    fn a_short_reply_is_fatal() {
        let (sender, receiver) = oneshot::channel();
        sender.send(vec![1]).expect("receiver alive");
        futures::executor::block_on(gather(vec![vec![0, 1]], vec![receiver]));
    }
}
