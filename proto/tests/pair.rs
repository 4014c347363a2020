//! Sans-IO pair tests: the server and client handshakes talk to each other
//! through in-memory buffers, with no sockets (quinn's `Pair` style).

use bytes::BytesMut;
use clonebd_proto::fuzzing::FixedCatalog;
use clonebd_proto::{
    BlockSize, ClientConfig, ClientHandshake, ClientStatus, Command, CommandFlags, Cookie,
    HandshakeError, HandshakeStatus, MetaContext, Request, ServerConfig, ServerHandshake,
    TransmissionFlags, decode_request, encode_request, opt, rep,
};

struct Pair {
    server: ServerHandshake,
    client: ClientHandshake,
    catalog: FixedCatalog,
    to_server: BytesMut,
    to_client: BytesMut,
}

type Outcome =
    (Option<Result<HandshakeStatus, HandshakeError>>, Option<Result<ClientStatus, HandshakeError>>);

impl Pair {
    fn new(config: ServerConfig, client: ClientHandshake) -> Self {
        Pair {
            server: ServerHandshake::new(config),
            client,
            catalog: FixedCatalog::sample(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
        }
    }

    /// Shuttles bytes until neither side makes progress; returns each side's
    /// final result (`None` if it only ever needed more).
    fn drive(&mut self) -> Outcome {
        let (mut s_end, mut c_end) = (None, None);
        for _ in 0..100 {
            self.server.take_output(&mut self.to_client);
            self.client.take_output(&mut self.to_server);
            let before = (self.to_server.len(), self.to_client.len());
            if c_end.is_none() {
                match self.client.handle_input(&mut self.to_client) {
                    Ok(ClientStatus::NeedMore) => {}
                    other => c_end = Some(other),
                }
            }
            if s_end.is_none() {
                match self.server.handle_input(&mut self.to_server, &self.catalog) {
                    Ok(HandshakeStatus::NeedMore) => {}
                    other => s_end = Some(other),
                }
            }
            let idle =
                before == (self.to_server.len(), self.to_client.len()) && !self.server.has_output();
            let mut c_out = BytesMut::new();
            self.client.take_output(&mut c_out);
            self.to_server.extend_from_slice(&c_out);
            if idle && c_out.is_empty() {
                break;
            }
        }
        (s_end, c_end)
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        export: "vol".into(),
        structured_replies: true,
        extended_headers: false,
        meta_contexts: vec!["base:allocation".into()],
        request_info: true,
    }
}

#[test]
fn go_with_structured_replies_and_base_allocation() {
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::new(client_config()));
    let (s, c) = pair.drive();
    let Some(Ok(HandshakeStatus::Done(s))) = s else { panic!("server: {s:?}") };
    let Some(Ok(ClientStatus::Done(c))) = c else { panic!("client: {c:?}") };
    assert!(s.structured_replies && c.structured_replies);
    assert!(!s.extended_headers && !c.extended_headers);
    assert_eq!(s.meta_contexts, vec![(1, MetaContext::BaseAllocation)]);
    assert_eq!(c.meta_contexts, vec![(1, "base:allocation".to_string())]);
    assert_eq!(c.size, s.export.size);
    assert_eq!(c.flags, s.export.flags);
    assert!(c.flags.contains(TransmissionFlags::HAS_FLAGS | TransmissionFlags::SEND_DF));
    assert_eq!(c.block_size, Some(BlockSize::default()));
    assert_eq!(c.description.as_deref(), Some("a test volume"));
    assert!(pair.to_server.is_empty() && pair.to_client.is_empty());
}

#[test]
fn extended_headers_then_a_request_crosses_over() {
    let config = ClientConfig { extended_headers: true, ..client_config() };
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::new(config));
    let (s, c) = pair.drive();
    let Some(Ok(HandshakeStatus::Done(s))) = s else { panic!("server: {s:?}") };
    let Some(Ok(ClientStatus::Done(c))) = c else { panic!("client: {c:?}") };
    assert!(
        s.extended_headers && c.extended_headers && s.structured_replies && c.structured_replies
    );

    // Transmission starts on the same buffers.
    let req = Request {
        cookie: Cookie(1),
        flags: CommandFlags::FUA,
        command: Command::Write { offset: 0, data: vec![7; 100].into() },
    };
    encode_request(&mut pair.to_server, &req, c.extended_headers);
    let got = decode_request(&mut pair.to_server, s.extended_headers, s.export.block_size.max);
    assert_eq!(got, Ok(Some(req)));
}

#[test]
fn client_falls_back_when_server_refuses_extended_headers() {
    let server = ServerConfig { allow_extended_headers: false, ..Default::default() };
    let config = ClientConfig { extended_headers: true, ..client_config() };
    let mut pair = Pair::new(server, ClientHandshake::new(config));
    let (s, c) = pair.drive();
    let Some(Ok(HandshakeStatus::Done(s))) = s else { panic!("server: {s:?}") };
    let Some(Ok(ClientStatus::Done(c))) = c else { panic!("client: {c:?}") };
    assert!(!s.extended_headers && !c.extended_headers);
    assert!(s.structured_replies && c.structured_replies);
    assert_eq!(c.meta_contexts.len(), 1);
}

#[test]
fn plain_client_without_structured_replies_gets_no_df() {
    let config = ClientConfig { export: "ro".into(), ..Default::default() };
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::new(config));
    let (s, c) = pair.drive();
    let Some(Ok(HandshakeStatus::Done(s))) = s else { panic!("server: {s:?}") };
    let Some(Ok(ClientStatus::Done(c))) = c else { panic!("client: {c:?}") };
    assert!(!c.structured_replies && s.meta_contexts.is_empty());
    assert_eq!(c.flags.bits(), 0x0007);
    assert_eq!(c.block_size, Some(BlockSize { min: 512, preferred: 4096, max: 1 << 20 }));
}

#[test]
fn list_then_abort() {
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::list());
    let (s, c) = pair.drive();
    assert_eq!(s, Some(Ok(HandshakeStatus::Aborted)));
    let want = vec![("vol".to_string(), "a test volume".to_string()), ("ro".into(), String::new())];
    assert_eq!(c, Some(Ok(ClientStatus::Listed(want))));
}

#[test]
fn unknown_export_on_go_is_rejected_and_server_keeps_listening() {
    let config = ClientConfig { export: "nope".into(), ..client_config() };
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::new(config));
    let (s, c) = pair.drive();
    assert_eq!(s, None, "the server waits for another option");
    let Some(Err(HandshakeError::Rejected { option, reply_type, message })) = c else {
        panic!("client: {c:?}")
    };
    // SET_META_CONTEXT failed first (unknown export) and was skipped; GO then failed.
    assert_eq!((option, reply_type), (opt::GO, rep::ERR_UNKNOWN));
    assert!(message.contains("nope"));
}

#[test]
fn default_export_by_empty_name() {
    let config = ClientConfig { export: String::new(), ..client_config() };
    let mut pair = Pair::new(ServerConfig::default(), ClientHandshake::new(config));
    let (s, c) = pair.drive();
    let Some(Ok(HandshakeStatus::Done(s))) = s else { panic!("server: {s:?}") };
    assert!(matches!(c, Some(Ok(ClientStatus::Done(_)))));
    assert_eq!(s.export.name, "vol");
    // The selection was made for "" which the catalog resolved to "vol" too.
    assert_eq!(s.meta_contexts, vec![(1, MetaContext::BaseAllocation)]);
}
