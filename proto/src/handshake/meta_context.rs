//! The metadata contexts this crate knows, and the ids the server assigns them.

use crate::consts::BASE_ALLOCATION;

/// A metadata context selected with `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetaContext {
    /// `base:allocation`: `STATE_HOLE` and `STATE_ZERO` per extent.
    BaseAllocation,
}

impl MetaContext {
    /// The id the server assigns to this context in `SET_META_CONTEXT` replies.
    pub fn id(self) -> u32 {
        match self {
            MetaContext::BaseAllocation => 1,
        }
    }

    /// The context's full name.
    pub fn name(self) -> &'static str {
        match self {
            MetaContext::BaseAllocation => BASE_ALLOCATION,
        }
    }

    /// The context a `SET_META_CONTEXT` query selects: exact names only.
    pub fn from_name(name: &[u8]) -> Option<MetaContext> {
        (name == BASE_ALLOCATION.as_bytes()).then_some(MetaContext::BaseAllocation)
    }

    /// Whether a `LIST_META_CONTEXT` query matches this context: its exact
    /// name, or its namespace with nothing after the colon (`base:`).
    pub fn matches_list_query(self, query: &[u8]) -> bool {
        let name = self.name().as_bytes();
        let namespace = name.split(|&b| b == b':').next().unwrap_or(name);
        query == name || query.strip_suffix(b":") == Some(namespace)
    }
}
