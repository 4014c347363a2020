//! What the load generator does: access pattern, block size, queue depth,
//! connections, duration, read/write mix, and where in the export.

use std::str::FromStr;

/// Access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Sequential reads.
    SeqRead,
    /// Sequential writes.
    SeqWrite,
    /// Uniform random reads.
    RandRead,
    /// Uniform random writes.
    RandWrite,
    /// Uniform random, `read_percent` reads.
    RandRw,
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "seqread" | "read" => Pattern::SeqRead,
            "seqwrite" | "write" => Pattern::SeqWrite,
            "randread" => Pattern::RandRead,
            "randwrite" => Pattern::RandWrite,
            "randrw" | "rw" => Pattern::RandRw,
            other => {
                return Err(format!(
                    "unknown pattern {other:?}: use seqread, seqwrite, randread, randwrite or randrw"
                ));
            }
        })
    }
}

impl Pattern {
    /// Whether offsets are drawn at random.
    pub fn random(self) -> bool {
        matches!(self, Pattern::RandRead | Pattern::RandWrite | Pattern::RandRw)
    }
}

/// One run's parameters, validated.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Access pattern.
    pub pattern: Pattern,
    /// Bytes per request.
    pub block_size: u32,
    /// Requests in flight per connection.
    pub queue_depth: u32,
    /// NBD connections.
    pub connections: u32,
    /// Seconds to run.
    pub seconds: f64,
    /// Percent of requests that are reads (randrw).
    pub read_percent: u32,
    /// Check every block read with the self-verifying format.
    pub verify: bool,
    /// First byte of the range used.
    pub offset: u64,
    /// Length of the range used (0 = to the end of the export).
    pub length: u64,
}

impl Workload {
    /// Checks the parameters against the export size; returns the range.
    pub fn range(&self, export_size: u64) -> Result<(u64, u64), String> {
        if self.block_size == 0 || self.queue_depth == 0 || self.connections == 0 {
            return Err("block size, queue depth and connections must be positive".into());
        }
        if self.verify && (self.block_size as usize) < crate::verify::HEADER_LEN {
            return Err(format!(
                "--verify needs blocks of at least {} bytes",
                crate::verify::HEADER_LEN
            ));
        }
        let end =
            if self.length == 0 { export_size } else { self.offset.saturating_add(self.length) };
        if end > export_size || self.offset >= end {
            return Err(format!(
                "range {}+{} does not fit the export ({export_size} bytes)",
                self.offset, self.length
            ));
        }
        let blocks = (end - self.offset) / u64::from(self.block_size);
        if blocks == 0 {
            return Err("the range is smaller than one block".into());
        }
        Ok((self.offset, blocks))
    }

    /// Whether the next request is a read, given a uniform draw in 0..100.
    pub fn is_read(&self, draw: u32) -> bool {
        match self.pattern {
            Pattern::SeqRead | Pattern::RandRead => true,
            Pattern::SeqWrite | Pattern::RandWrite => false,
            Pattern::RandRw => draw < self.read_percent,
        }
    }
}

/// Parses sizes like `4k`, `1M`, `2G`, `512` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        _ => return Err(format!("bad size unit in {s:?}")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size {s:?} overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pattern: Pattern) -> Workload {
        Workload {
            pattern,
            block_size: 4096,
            queue_depth: 8,
            connections: 1,
            seconds: 1.0,
            read_percent: 70,
            verify: false,
            offset: 0,
            length: 0,
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("k").is_err());
    }

    #[test]
    fn patterns_parse_and_mix() {
        assert_eq!("randrw".parse::<Pattern>(), Ok(Pattern::RandRw));
        assert!("sideways".parse::<Pattern>().is_err());
        let rw = w(Pattern::RandRw);
        assert!(rw.is_read(69) && !rw.is_read(70));
        assert!(w(Pattern::SeqRead).is_read(99));
        assert!(!w(Pattern::RandWrite).is_read(0));
    }

    #[test]
    fn ranges_are_checked() {
        let mut x = w(Pattern::RandRead);
        assert_eq!(x.range(1 << 20), Ok((0, 256)));
        x.offset = 1 << 19;
        x.length = 1 << 20;
        assert!(x.range(1 << 20).is_err());
        x.verify = true;
        x.block_size = 8;
        x.offset = 0;
        x.length = 0;
        assert!(x.range(1 << 20).is_err());
    }
}
