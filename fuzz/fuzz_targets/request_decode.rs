//! Arbitrary bytes through `decode_request` (compact and extended) and the
//! reply header decoder: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clonebd_proto::fuzzing::request_decode(data);
});
