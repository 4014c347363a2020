//! Request decode: `proto::decode_request` over a buffer of 32 pipelined
//! requests, as the server's reader finds it after one socket read.
//! `cargo bench -p clonebd-benches --bench decode`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use proto::{
    Command, CommandFlags, Cookie, DEFAULT_MAX_PAYLOAD, Request, decode_request, encode_request,
};

const PIPELINE: usize = 32;
const BLOCK: usize = 4096;

/// `PIPELINE` requests back to back, as a client sends them.
fn pipelined(write: bool, extended: bool) -> BytesMut {
    let payload = bytes::Bytes::from(vec![0xa5u8; BLOCK]);
    let mut buf = BytesMut::new();
    for i in 0..PIPELINE {
        let offset = (i * 7919 * BLOCK) as u64;
        let command = if write {
            Command::Write { offset, data: payload.clone() }
        } else {
            Command::Read { offset, length: BLOCK as u64 }
        };
        let req = Request { cookie: Cookie(i as u64), flags: CommandFlags::empty(), command };
        encode_request(&mut buf, &req, extended);
    }
    buf
}

/// Decodes every request in `buf` into `out`. Returns both, so that
/// criterion drops them (and the write payloads) outside the timing.
fn drain((mut buf, mut out): (BytesMut, Vec<Request>), extended: bool) -> (BytesMut, Vec<Request>) {
    while let Some(req) = decode_request(&mut buf, extended, DEFAULT_MAX_PAYLOAD).unwrap() {
        out.push(req);
    }
    assert!(buf.is_empty(), "a partial request left over");
    (buf, out)
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_request");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    for (write, kind) in [(true, "write4k"), (false, "read4k")] {
        for (extended, headers) in [(false, "compact"), (true, "extended")] {
            let template = pipelined(write, extended);
            let (_, decoded) = drain((template.clone(), Vec::new()), extended);
            assert_eq!(decoded.len(), PIPELINE);
            // Copying the template is set-up, not measured.
            group.bench_function(format!("{kind}_x{PIPELINE}_{headers}"), |b| {
                b.iter_batched(
                    || (template.clone(), Vec::with_capacity(PIPELINE)),
                    |buf| drain(buf, extended),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
