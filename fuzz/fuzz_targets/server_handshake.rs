//! Arbitrary bytes into the server handshake with a small fixed catalog:
//! must never panic, and never leave more than one maximal option buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clonebd_proto::fuzzing::server_handshake(data);
});
