//! The request identifier that pairs replies with requests.

/// Opaque 64-bit request identifier (the spec's "cookie", formerly "handle").
/// Replies may come back in any order; the cookie matches them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Cookie(pub u64);
