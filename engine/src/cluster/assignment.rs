//! Which live node should own which shard: a pure function of the number of
//! shards and the set of live nodes, so every node computes the same answer from
//! the same membership without talking to the others.
//!
//! Even: node `i` of the sorted live nodes gets `S / n` shards, plus one for the
//! first `S mod n` nodes, so no two nodes differ by more than one shard. Stable:
//! each shard prefers nodes in rendezvous-hash order (highest `hash(shard, node)`
//! first) and goes to the first of them with room left, so when a node joins or
//! leaves, most shards keep their owner — a moved shard costs a final checkpoint
//! and a recovery, so fewer moves mean shorter pauses.

use super::NodeId;
use crate::codec::ShardId;

/// The owner of every shard: `owners[s]` is an index into `nodes` (which must be
/// sorted and free of duplicates). Empty when there are no nodes.
pub fn assign(shards: u16, nodes: &[NodeId]) -> Vec<usize> {
    let n = nodes.len();
    if n == 0 {
        return Vec::new();
    }
    let base = usize::from(shards) / n;
    let extra = usize::from(shards) % n;
    let mut room: Vec<usize> = (0..n).map(|i| base + usize::from(i < extra)).collect();
    let mut owners = Vec::with_capacity(usize::from(shards));
    let mut preference: Vec<usize> = (0..n).collect();
    for shard in 0..shards {
        preference.sort_by_key(|&i| std::cmp::Reverse(score(ShardId(shard), &nodes[i])));
        // unwrap: the rooms add up to `shards`, so one is left for every shard.
        let owner = *preference.iter().find(|&&i| room[i] > 0).unwrap();
        room[owner] -= 1;
        owners.push(owner);
    }
    owners
}

/// The shards `node` should own among `nodes` (sorted), in order.
pub fn shards_of(shards: u16, nodes: &[NodeId], node: &NodeId) -> Vec<ShardId> {
    let Some(me) = nodes.iter().position(|n| n == node) else {
        return Vec::new();
    };
    assign(shards, nodes)
        .into_iter()
        .enumerate()
        .filter(|&(_, owner)| owner == me)
        // unwrap-free: `assign` returns one owner per shard, and shards fit in u16.
        .map(|(s, _)| ShardId(s as u16))
        .collect()
}

/// A stable hash of (shard, node): FNV-1a then a splitmix64 finaliser, fixed here
/// rather than `std`'s hasher, whose output may change between Rust releases and
/// would make two nodes built differently disagree.
fn score(shard: ShardId, node: &NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shard.0.to_le_bytes().iter().chain(node.as_str().as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = (0..n)
            .map(|i| NodeId::parse(&format!("node-{i}")).unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_shard_has_one_owner_and_loads_differ_by_at_most_one() {
        for shards in [1u16, 7, 64, 100, 256] {
            for n in 1..=9 {
                let nodes = nodes(n);
                let owners = assign(shards, &nodes);
                assert_eq!(owners.len(), usize::from(shards));
                let mut load = vec![0usize; n];
                for o in owners {
                    load[o] += 1;
                }
                let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(max - min <= 1, "{shards} shards over {n}: {load:?}");
            }
        }
    }

    #[test]
    fn a_joining_node_moves_a_minority_of_shards() {
        // The ideal is S/(n+1) moves; greedy rooms move somewhat more, far fewer
        // than the S·n/(n+1) of `shard mod n`.
        for n in 1..=6 {
            let before = nodes(n);
            let after = nodes(n + 1);
            let (a, b) = (assign(64, &before), assign(64, &after));
            let moved = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| before[**x] != after[**y])
                .count();
            assert!(
                moved <= 64 * 3 / (2 * (n + 1)) + 2,
                "{n}→{}: {moved} moved",
                n + 1
            );
        }
    }

    #[test]
    fn the_answer_depends_only_on_the_membership() {
        let nodes = nodes(3);
        assert_eq!(assign(64, &nodes), assign(64, &nodes));
        let mine: usize = nodes.iter().map(|n| shards_of(64, &nodes, n).len()).sum();
        assert_eq!(mine, 64);
        assert!(shards_of(64, &nodes, &NodeId::parse("stranger").unwrap()).is_empty());
    }
}
