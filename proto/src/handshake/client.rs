//! The client side of the fixed-newstyle handshake as a sans-IO state
//! machine. It sends one option at a time and waits for its final reply,
//! falling back the way qemu and nbd-client do: `EXTENDED_HEADERS` to
//! `STRUCTURED_REPLY`, `GO` to `EXPORT_NAME`.

use bytes::{Buf, BytesMut};

use super::option::{
    EXPORT_NAME_REPLY_LEN, EXPORT_NAME_ZEROES, GREETING_LEN, REPLY_HEADER_LEN,
    encode_option_request, info_request, meta_request, peek_reply_header,
};
use super::{ClientFlags, HandshakeFlags};
use crate::consts::{IHAVEOPT, MAX_OPTION_LEN, NBDMAGIC, OPTION_REPLY_MAGIC, info, opt, rep};
use crate::error::HandshakeError;
use crate::export::BlockSize;
use crate::transmission::TransmissionFlags;

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientConfig {
    /// Export name; `""` is the server's default export.
    pub export: String,
    /// Ask for structured replies.
    pub structured_replies: bool,
    /// Ask for extended headers (falls back to structured replies).
    pub extended_headers: bool,
    /// Metadata contexts to select, e.g. `["base:allocation"]`; needs structured replies.
    pub meta_contexts: Vec<String>,
    /// Also ask for `NBD_INFO_NAME` and `NBD_INFO_DESCRIPTION`.
    pub request_info: bool,
}

/// What the client handshake wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStatus {
    /// Send any output, then feed more input.
    NeedMore,
    /// Send any output, then enter transmission with the leftover input.
    Done(ClientNegotiated),
    /// The export list (name, description); `ABORT` is queued: send it and close.
    Listed(Vec<(String, String)>),
}

/// The outcome of a successful client handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNegotiated {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags from the server.
    pub flags: TransmissionFlags,
    /// Block size constraints, if the server sent them.
    pub block_size: Option<BlockSize>,
    /// Structured replies are on.
    pub structured_replies: bool,
    /// Extended headers are on.
    pub extended_headers: bool,
    /// Selected metadata contexts: (server-assigned id, name).
    pub meta_contexts: Vec<(u32, String)>,
    /// Export description, if sent.
    pub description: Option<String>,
}

/// The option whose replies we are waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    ExtendedHeaders,
    StructuredReply,
    SetMetaContext,
    Go,
    List,
}

impl Pending {
    fn option(self) -> u32 {
        match self {
            Pending::ExtendedHeaders => opt::EXTENDED_HEADERS,
            Pending::StructuredReply => opt::STRUCTURED_REPLY,
            Pending::SetMetaContext => opt::SET_META_CONTEXT,
            Pending::Go => opt::GO,
            Pending::List => opt::LIST,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ExpectGreeting,
    ExpectReply(Pending),
    ExpectExportName,
    Finished,
}

/// The client half of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    config: ClientConfig,
    list_only: bool,
    state: State,
    out: BytesMut,
    no_zeroes: bool,
    structured: bool,
    extended: bool,
    meta: Vec<(u32, String)>,
    /// `SET_META_CONTEXT` was answered (or is not needed again).
    meta_done: bool,
    size_flags: Option<(u64, TransmissionFlags)>,
    block_size: Option<BlockSize>,
    description: Option<String>,
    listed: Vec<(String, String)>,
}

impl ClientHandshake {
    /// A handshake that negotiates `config` and selects its export.
    pub fn new(config: ClientConfig) -> Self {
        ClientHandshake {
            config,
            list_only: false,
            state: State::ExpectGreeting,
            out: BytesMut::new(),
            no_zeroes: false,
            structured: false,
            extended: false,
            meta: Vec::new(),
            meta_done: false,
            size_flags: None,
            block_size: None,
            description: None,
            listed: Vec::new(),
        }
    }

    /// A handshake that sends `LIST`, then `ABORT`, ending in [`ClientStatus::Listed`].
    pub fn list() -> Self {
        ClientHandshake { list_only: true, ..Self::new(ClientConfig::default()) }
    }

    /// Moves all queued output bytes to the end of `out`.
    pub fn take_output(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.out);
        self.out.clear();
    }

    /// Consumes every complete message at the front of `input`. Option
    /// replies longer than 64 KiB fail from their header alone.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<ClientStatus, HandshakeError> {
        let result = self.step_all(input);
        if !matches!(result, Ok(ClientStatus::NeedMore)) {
            self.state = State::Finished;
        }
        result
    }

    fn step_all(&mut self, input: &mut BytesMut) -> Result<ClientStatus, HandshakeError> {
        loop {
            match self.state {
                State::Finished => return Err(HandshakeError::Finished),
                State::ExpectGreeting => {
                    if input.len() < GREETING_LEN {
                        return Ok(ClientStatus::NeedMore);
                    }
                    self.greeting(input)?;
                }
                State::ExpectExportName => {
                    let zeroes = if self.no_zeroes { 0 } else { EXPORT_NAME_ZEROES };
                    if input.len() < EXPORT_NAME_REPLY_LEN + zeroes {
                        return Ok(ClientStatus::NeedMore);
                    }
                    let size = input.get_u64();
                    let flags = TransmissionFlags::from_bits_retain(input.get_u16());
                    input.advance(zeroes);
                    self.size_flags = Some((size, flags));
                    return Ok(ClientStatus::Done(self.negotiated(size, flags)));
                }
                State::ExpectReply(pending) => {
                    let Some((magic, option, reply_type, len)) = peek_reply_header(input) else {
                        return Ok(ClientStatus::NeedMore);
                    };
                    if magic != OPTION_REPLY_MAGIC {
                        return Err(HandshakeError::BadReplyMagic(magic));
                    }
                    if len > MAX_OPTION_LEN {
                        return Err(HandshakeError::ReplyTooLong { len, max: MAX_OPTION_LEN });
                    }
                    if option != pending.option() {
                        return Err(HandshakeError::UnexpectedReply { option, reply_type });
                    }
                    let len = len as usize;
                    if input.len() < REPLY_HEADER_LEN + len {
                        return Ok(ClientStatus::NeedMore);
                    }
                    input.advance(REPLY_HEADER_LEN);
                    let data = input.split_to(len);
                    if let Some(status) = self.reply(pending, reply_type, &data)? {
                        return Ok(status);
                    }
                }
            }
        }
    }

    fn greeting(&mut self, input: &mut BytesMut) -> Result<(), HandshakeError> {
        let magic = input.get_u64();
        if magic != NBDMAGIC {
            return Err(HandshakeError::BadServerMagic(magic));
        }
        let magic = input.get_u64();
        if magic != IHAVEOPT {
            return Err(HandshakeError::BadServerMagic(magic));
        }
        let raw = input.get_u16();
        let flags = HandshakeFlags::from_bits_retain(raw);
        if !flags.contains(HandshakeFlags::FIXED_NEWSTYLE) {
            return Err(HandshakeError::BadHandshakeFlags(raw));
        }
        self.no_zeroes = flags.contains(HandshakeFlags::NO_ZEROES);
        let mut ours = ClientFlags::FIXED_NEWSTYLE;
        if self.no_zeroes {
            ours |= ClientFlags::NO_ZEROES;
        }
        self.out.extend_from_slice(&ours.bits().to_be_bytes());
        if self.list_only {
            self.send(Pending::List, &[]);
        } else if self.config.extended_headers {
            self.send(Pending::ExtendedHeaders, &[]);
        } else if self.config.structured_replies {
            self.send(Pending::StructuredReply, &[]);
        } else {
            self.after_structured();
        }
        Ok(())
    }

    fn send(&mut self, pending: Pending, data: &[u8]) {
        encode_option_request(&mut self.out, pending.option(), data);
        self.state = State::ExpectReply(pending);
    }

    /// Next step once structured replies are settled: meta contexts, then GO.
    fn after_structured(&mut self) {
        if self.structured && !self.meta_done && !self.config.meta_contexts.is_empty() {
            let data = meta_request(&self.config.export, &self.config.meta_contexts);
            self.send(Pending::SetMetaContext, &data);
        } else {
            let mut infos = vec![info::BLOCK_SIZE];
            if self.config.request_info {
                infos.extend([info::NAME, info::DESCRIPTION]);
            }
            let data = info_request(&self.config.export, &infos);
            self.send(Pending::Go, &data);
        }
    }

    fn negotiated(&mut self, size: u64, flags: TransmissionFlags) -> ClientNegotiated {
        ClientNegotiated {
            size,
            flags,
            block_size: self.block_size,
            structured_replies: self.structured,
            extended_headers: self.extended,
            meta_contexts: std::mem::take(&mut self.meta),
            description: self.description.take(),
        }
    }

    /// Handles one option reply; `Some` ends the handshake.
    fn reply(
        &mut self,
        pending: Pending,
        reply_type: u32,
        data: &[u8],
    ) -> Result<Option<ClientStatus>, HandshakeError> {
        let option = pending.option();
        let is_err = reply_type & rep::ERR_BIT != 0;
        let rejected = || HandshakeError::Rejected {
            option,
            reply_type,
            message: String::from_utf8_lossy(data).into_owned(),
        };
        let unexpected = HandshakeError::UnexpectedReply { option, reply_type };
        match (pending, reply_type) {
            (Pending::ExtendedHeaders, rep::ACK) => {
                self.extended = true;
                self.structured = true;
                self.after_structured();
            }
            (Pending::ExtendedHeaders, _) if is_err => {
                if self.config.structured_replies {
                    self.send(Pending::StructuredReply, &[]);
                } else {
                    self.after_structured();
                }
            }
            (Pending::StructuredReply, rep::ACK) => {
                self.structured = true;
                self.after_structured();
            }
            (Pending::StructuredReply, _) if is_err => self.after_structured(),
            (Pending::SetMetaContext, rep::META_CONTEXT) => {
                let mut p = data;
                if p.len() < 4 {
                    return Err(HandshakeError::Malformed("meta context reply too short"));
                }
                let id = p.get_u32();
                self.meta.push((id, String::from_utf8_lossy(p).into_owned()));
            }
            (Pending::SetMetaContext, rep::ACK) => {
                self.meta_done = true;
                self.after_structured();
            }
            (Pending::SetMetaContext, _) if is_err => {
                // Block status is optional: carry on without contexts.
                self.meta.clear();
                self.meta_done = true;
                self.after_structured();
            }
            (Pending::Go, rep::INFO) => self.info(data)?,
            (Pending::Go, rep::ACK) => {
                let (size, flags) = self
                    .size_flags
                    .ok_or(HandshakeError::Malformed("GO acknowledged without NBD_INFO_EXPORT"))?;
                return Ok(Some(ClientStatus::Done(self.negotiated(size, flags))));
            }
            (Pending::Go, rep::ERR_UNSUP) if !self.extended => {
                // An old server: fall back to EXPORT_NAME (forbidden under extended headers).
                self.size_flags = None;
                self.block_size = None;
                self.description = None;
                encode_option_request(
                    &mut self.out,
                    opt::EXPORT_NAME,
                    self.config.export.as_bytes(),
                );
                self.state = State::ExpectExportName;
            }
            (Pending::List, rep::SERVER) => {
                let mut p = data;
                if p.len() < 4 {
                    return Err(HandshakeError::Malformed("server reply too short"));
                }
                let name_len = p.get_u32() as usize;
                if p.len() < name_len {
                    return Err(HandshakeError::Malformed("server reply name overruns"));
                }
                let (name, desc) = p.split_at(name_len);
                let name = String::from_utf8_lossy(name).into_owned();
                self.listed.push((name, String::from_utf8_lossy(desc).into_owned()));
            }
            (Pending::List, rep::ACK) => {
                encode_option_request(&mut self.out, opt::ABORT, &[]);
                return Ok(Some(ClientStatus::Listed(std::mem::take(&mut self.listed))));
            }
            (Pending::Go | Pending::List, _) if is_err => return Err(rejected()),
            _ => return Err(unexpected),
        }
        Ok(None)
    }

    /// One `NBD_REP_INFO` in reply to `GO`; unknown info types are ignored.
    fn info(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        let mut p = data;
        if p.len() < 2 {
            return Err(HandshakeError::Malformed("info reply too short"));
        }
        match p.get_u16() {
            info::EXPORT if p.len() == 10 => {
                let size = p.get_u64();
                self.size_flags = Some((size, TransmissionFlags::from_bits_retain(p.get_u16())));
            }
            info::BLOCK_SIZE if p.len() == 12 => {
                let (min, preferred, max) = (p.get_u32(), p.get_u32(), p.get_u32());
                self.block_size = Some(BlockSize { min, preferred, max });
            }
            info::EXPORT | info::BLOCK_SIZE => {
                return Err(HandshakeError::Malformed("info reply has the wrong length"));
            }
            info::DESCRIPTION => self.description = Some(String::from_utf8_lossy(p).into_owned()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
