//! Where an entity lives: rendezvous (highest-random-weight) hashing of
//! `(tenant, kind, id)` over the live members. Every node computes the
//! same answer from the same member list, with no coordinator; when a
//! member leaves only its own entities move, and when one joins it takes
//! only the entities it now wins.
//!
//! The hash is FNV-1a 64 with a final avalanche step: fixed here, so
//! nodes of different releases and platforms agree.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of entity placed on a home node. (Calls and IVR sessions
/// are not placed: they stay where their media is.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Agent,
    SkillGroup,
    TelesalesTask,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Agent, Kind::SkillGroup, Kind::TelesalesTask];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::SkillGroup => "skill_group",
            Kind::TelesalesTask => "telesales_task",
        }
    }

    /// The kind named `s` (`agent`, `skill_group` or `group`,
    /// `telesales_task`).
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "agent" => Some(Kind::Agent),
            "skill_group" | "group" => Some(Kind::SkillGroup),
            "telesales_task" => Some(Kind::TelesalesTask),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One placed entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityKey<'a> {
    pub tenant: &'a str,
    pub kind: Kind,
    pub id: &'a str,
}

impl<'a> EntityKey<'a> {
    pub fn new(tenant: &'a str, kind: Kind, id: &'a str) -> EntityKey<'a> {
        EntityKey { tenant, kind, id }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The avalanche step of SplitMix64: every input bit reaches every
/// output bit, which FNV alone does poorly for short inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `node`'s weight for `key`; the highest weight wins.
pub fn weight(key: &EntityKey<'_>, node: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for part in [key.tenant, key.kind.as_str(), key.id, node] {
        h = fnv(h, part.as_bytes());
        // A separator no name contains, so ("ab","c") and ("a","bc")
        // differ.
        h = fnv(h, &[0x1f]);
    }
    mix(h)
}

/// The home of `key` among `nodes` (names; order does not matter), or
/// `None` when there is no node. Equal weights (practically never) go to
/// the smaller name, so the answer is still the same everywhere.
pub fn home<'n, I>(key: &EntityKey<'_>, nodes: I) -> Option<&'n str>
where
    I: IntoIterator<Item = &'n str>,
{
    nodes
        .into_iter()
        .map(|n| (weight(key, n), n))
        .max_by(|(wa, na), (wb, nb)| wa.cmp(wb).then_with(|| nb.cmp(na)))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_hash_is_fixed() {
        // Nodes of every release must agree: this value may never change.
        let k = EntityKey::new("demo", Kind::Agent, "1001");
        assert_eq!(weight(&k, "a"), weight(&k, "a"));
        assert_eq!(
            weight(&k, "a"),
            0x4c77_5cb4_81ef_4be1,
            "{:#x}",
            weight(&k, "a")
        );
        assert_ne!(
            weight(&EntityKey::new("ab", Kind::Agent, "c"), "n"),
            weight(&EntityKey::new("a", Kind::Agent, "bc"), "n")
        );
    }

    #[test]
    fn order_of_members_does_not_matter() {
        let k = EntityKey::new("demo", Kind::SkillGroup, "support");
        let a = home(&k, ["a", "b", "c"]);
        assert_eq!(a, home(&k, ["c", "a", "b"]));
        assert_eq!(home(&k, std::iter::empty()), None);
    }

    #[test]
    fn spreads_entities_evenly() {
        let nodes = ["a", "b", "c"];
        let mut count = BTreeMap::new();
        let ids: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        for id in &ids {
            let k = EntityKey::new("t", Kind::Agent, id);
            *count.entry(home(&k, nodes).unwrap()).or_insert(0) += 1;
        }
        for n in nodes {
            let c = count[n];
            assert!((850..1150).contains(&c), "{n} has {c} of 3000: {count:?}");
        }
    }

    fn names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z]{1,6}", 2..8).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        /// When a member leaves, only the entities it was home to move.
        #[test]
        fn a_leaving_member_moves_only_its_own(nodes in names(), gone in any::<prop::sample::Index>(), ids in proptest::collection::vec("[0-9]{1,5}", 1..60)) {
            let gone = gone.get(&nodes).clone();
            let rest: Vec<&str> = nodes.iter().map(String::as_str).filter(|n| *n != gone).collect();
            for id in &ids {
                let k = EntityKey::new("t", Kind::Agent, id);
                let before = home(&k, nodes.iter().map(String::as_str)).unwrap();
                let after = home(&k, rest.iter().copied()).unwrap();
                if before != gone {
                    prop_assert_eq!(before, after);
                } else {
                    prop_assert_ne!(after, gone.as_str());
                }
            }
        }

        /// When a member joins, entities move only to it.
        #[test]
        fn a_joining_member_takes_only_what_it_wins(nodes in names(), ids in proptest::collection::vec("[0-9]{1,5}", 1..60)) {
            let (new, old) = nodes.split_last().unwrap();
            for id in &ids {
                let k = EntityKey::new("t", Kind::SkillGroup, id);
                let before = home(&k, old.iter().map(String::as_str)).unwrap();
                let after = home(&k, nodes.iter().map(String::as_str)).unwrap();
                prop_assert!(after == before || after == new.as_str());
            }
        }
    }
}
