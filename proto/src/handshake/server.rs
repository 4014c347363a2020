//! The server side of the fixed-newstyle handshake as a sans-IO state
//! machine: bytes in, bytes out, and a [`HandshakeStatus`] telling the driver
//! when to switch to transmission. It does no IO and knows no clock.

use bytes::{Buf, BufMut, BytesMut};

use super::option::{
    EXPORT_NAME_ZEROES, OPTION_HEADER_LEN, encode_greeting, encode_option_reply, info_block_size,
    info_export, info_string, parse_info_request, parse_meta_request, peek_option_header,
    rep_meta_context, rep_server,
};
use super::{ClientFlags, HandshakeFlags, MetaContext};
use crate::consts::{IHAVEOPT, MAX_OPTION_LEN, info, opt, rep};
use crate::error::HandshakeError;
use crate::export::{ExportCatalog, ExportInfo};

/// Server handshake settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Accept `NBD_OPT_EXTENDED_HEADERS` (default `true`).
    pub allow_extended_headers: bool,
    /// Longest option data we buffer; longer options end the connection.
    pub max_option_len: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { allow_extended_headers: true, max_option_len: MAX_OPTION_LEN }
    }
}

/// What the server handshake wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// Feed more input (after sending any output).
    NeedMore,
    /// Send the output, then enter transmission with the leftover input.
    Done(Negotiated),
    /// The client sent `NBD_OPT_ABORT`; send the queued `ACK` and close.
    Aborted,
}

/// The outcome of a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The selected export, with `flags` as actually sent.
    pub export: ExportInfo,
    /// Structured replies are on (also true with extended headers).
    pub structured_replies: bool,
    /// Extended (64-bit) headers are on.
    pub extended_headers: bool,
    /// Selected metadata contexts with the ids the client will see.
    pub meta_contexts: Vec<(u32, MetaContext)>,
    /// Both sides set `NO_ZEROES`.
    pub no_zeroes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ExpectClientFlags,
    ExpectOption,
    Finished,
}

/// Longest export name quoted back in an error message.
const QUOTED_NAME_MAX: usize = 256;

/// The server half of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    config: ServerConfig,
    state: State,
    out: BytesMut,
    no_zeroes: bool,
    structured: bool,
    extended: bool,
    meta: Vec<(u32, MetaContext)>,
    /// Canonical name of the export the meta selection was made for.
    meta_export: Option<String>,
}

impl ServerHandshake {
    /// Starts a handshake; the 18-byte greeting is queued for output.
    pub fn new(config: ServerConfig) -> Self {
        let mut out = BytesMut::with_capacity(64);
        encode_greeting(&mut out, HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES);
        ServerHandshake {
            config,
            state: State::ExpectClientFlags,
            out,
            no_zeroes: false,
            structured: false,
            extended: false,
            meta: Vec::new(),
            meta_export: None,
        }
    }

    /// Moves all queued output bytes to the end of `out`.
    pub fn take_output(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.out);
        self.out.clear();
    }

    /// Whether output is waiting for [`take_output`](Self::take_output).
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Consumes every complete message at the front of `input`.
    ///
    /// Returns `Ok(NeedMore)` once what is left is an incomplete message. An
    /// option longer than `max_option_len` fails from its header alone, so the
    /// caller never needs to hold more than `16 + max_option_len` bytes. After
    /// `Done`, bytes past the final option stay in `input` for transmission.
    /// Any error means: send the output (if any) and close.
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        catalog: &dyn ExportCatalog,
    ) -> Result<HandshakeStatus, HandshakeError> {
        let result = self.step_all(input, catalog);
        if !matches!(result, Ok(HandshakeStatus::NeedMore)) {
            self.state = State::Finished;
        }
        result
    }

    fn step_all(
        &mut self,
        input: &mut BytesMut,
        catalog: &dyn ExportCatalog,
    ) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match self.state {
                State::Finished => return Err(HandshakeError::Finished),
                State::ExpectClientFlags => {
                    if input.len() < 4 {
                        return Ok(HandshakeStatus::NeedMore);
                    }
                    let raw = input.get_u32();
                    let flags = ClientFlags::from_bits(raw)
                        .filter(|f| f.contains(ClientFlags::FIXED_NEWSTYLE))
                        .ok_or(HandshakeError::BadClientFlags(raw))?;
                    self.no_zeroes = flags.contains(ClientFlags::NO_ZEROES);
                    self.state = State::ExpectOption;
                }
                State::ExpectOption => {
                    let Some((magic, option, len)) = peek_option_header(input) else {
                        return Ok(HandshakeStatus::NeedMore);
                    };
                    if magic != IHAVEOPT {
                        return Err(HandshakeError::BadOptionMagic(magic));
                    }
                    let max = self.config.max_option_len;
                    if len > max {
                        return Err(HandshakeError::OptionTooLong { len, max });
                    }
                    let len = len as usize;
                    if input.len() < OPTION_HEADER_LEN + len {
                        return Ok(HandshakeStatus::NeedMore);
                    }
                    input.advance(OPTION_HEADER_LEN);
                    let data = input.split_to(len);
                    if let Some(status) = self.handle_option(option, &data, catalog)? {
                        return Ok(status);
                    }
                }
            }
        }
    }

    fn reply(&mut self, option: u32, reply_type: u32, data: &[u8]) {
        encode_option_reply(&mut self.out, option, reply_type, data);
    }

    fn error(&mut self, option: u32, reply_type: u32, message: &str) {
        self.reply(option, reply_type, message.as_bytes());
    }

    /// Handles one option; `Some` ends the handshake.
    fn handle_option(
        &mut self,
        option: u32,
        data: &[u8],
        catalog: &dyn ExportCatalog,
    ) -> Result<Option<HandshakeStatus>, HandshakeError> {
        match option {
            opt::EXPORT_NAME => return self.export_name(data, catalog).map(Some),
            opt::ABORT => {
                self.reply(option, rep::ACK, &[]);
                return Ok(Some(HandshakeStatus::Aborted));
            }
            opt::INFO | opt::GO => return Ok(self.info_or_go(option, data, catalog)),
            opt::LIST if !data.is_empty() => {
                self.error(option, rep::ERR_INVALID, "NBD_OPT_LIST takes no data");
            }
            opt::LIST => {
                for e in catalog.list() {
                    self.reply(option, rep::SERVER, &rep_server(&e.name, &e.description));
                }
                self.reply(option, rep::ACK, &[]);
            }
            opt::STRUCTURED_REPLY | opt::EXTENDED_HEADERS if !data.is_empty() => {
                self.error(option, rep::ERR_INVALID, "option takes no data");
            }
            opt::STRUCTURED_REPLY => {
                self.structured = true;
                self.reply(option, rep::ACK, &[]);
            }
            opt::EXTENDED_HEADERS if !self.config.allow_extended_headers => {
                self.error(option, rep::ERR_UNSUP, "extended headers are disabled");
            }
            opt::EXTENDED_HEADERS => {
                self.extended = true;
                self.structured = true;
                self.reply(option, rep::ACK, &[]);
            }
            opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                self.meta_context(option, data, catalog);
            }
            opt::STARTTLS => self.error(option, rep::ERR_UNSUP, "TLS is not supported"),
            _ => self.error(option, rep::ERR_UNSUP, "unsupported option"),
        }
        Ok(None)
    }

    /// Looks up a name from the wire; on failure queues `ERR_UNKNOWN`.
    fn lookup(
        &mut self,
        option: u32,
        name: &[u8],
        catalog: &dyn ExportCatalog,
    ) -> Option<ExportInfo> {
        let found = std::str::from_utf8(name).ok().and_then(|n| catalog.lookup(n));
        if found.is_none() {
            let shown = String::from_utf8_lossy(&name[..name.len().min(QUOTED_NAME_MAX)]);
            self.error(option, rep::ERR_UNKNOWN, &format!("unknown export {shown:?}"));
        }
        found
    }

    /// Builds the final outcome; the meta selection only holds for the export it named.
    fn finish(&mut self, mut export: ExportInfo) -> HandshakeStatus {
        export.flags = export.wire_flags(self.structured, self.extended);
        let meta = if self.meta_export.as_deref() == Some(export.name.as_str()) {
            std::mem::take(&mut self.meta)
        } else {
            Vec::new()
        };
        HandshakeStatus::Done(Negotiated {
            export,
            structured_replies: self.structured,
            extended_headers: self.extended,
            meta_contexts: meta,
            no_zeroes: self.no_zeroes,
        })
    }

    /// `NBD_OPT_EXPORT_NAME`: no reply header, and failure means disconnect.
    fn export_name(
        &mut self,
        data: &[u8],
        catalog: &dyn ExportCatalog,
    ) -> Result<HandshakeStatus, HandshakeError> {
        if self.extended {
            return Err(HandshakeError::ExportNameAfterExtendedHeaders);
        }
        let export = std::str::from_utf8(data)
            .ok()
            .and_then(|n| catalog.lookup(n))
            .ok_or(HandshakeError::UnknownExport)?;
        let status = self.finish(export);
        if let HandshakeStatus::Done(n) = &status {
            self.out.put_u64(n.export.size);
            self.out.put_u16(n.export.flags.bits());
            if !self.no_zeroes {
                self.out.put_bytes(0, EXPORT_NAME_ZEROES);
            }
        }
        Ok(status)
    }

    /// `NBD_OPT_INFO` and `NBD_OPT_GO`: `None` keeps the handshake going.
    fn info_or_go(
        &mut self,
        option: u32,
        data: &[u8],
        catalog: &dyn ExportCatalog,
    ) -> Option<HandshakeStatus> {
        let Some(req) = parse_info_request(data) else {
            self.error(option, rep::ERR_INVALID, "malformed NBD_OPT_INFO/GO data");
            return None;
        };
        let export = self.lookup(option, req.name, catalog)?;
        let flags = export.wire_flags(self.structured, self.extended);
        // NBD_INFO_EXPORT is mandatory even when not asked for (the kernel asks for nothing).
        self.reply(option, rep::INFO, &info_export(export.size, flags));
        if req.infos.contains(&info::NAME) {
            self.reply(option, rep::INFO, &info_string(info::NAME, &export.name));
        }
        if req.infos.contains(&info::DESCRIPTION) && !export.description.is_empty() {
            let payload = info_string(info::DESCRIPTION, &export.description);
            self.reply(option, rep::INFO, &payload);
        }
        // Always advertised: clients that did not ask may ignore it.
        self.reply(option, rep::INFO, &info_block_size(export.block_size));
        self.reply(option, rep::ACK, &[]);
        (option == opt::GO).then(|| self.finish(export))
    }

    /// `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
    fn meta_context(&mut self, option: u32, data: &[u8], catalog: &dyn ExportCatalog) {
        if !self.structured {
            let msg = "negotiate structured replies first";
            return self.error(option, rep::ERR_INVALID, msg);
        }
        let Some(req) = parse_meta_request(data) else {
            return self.error(option, rep::ERR_INVALID, "malformed meta context data");
        };
        let Some(export) = self.lookup(option, req.name, catalog) else { return };
        let ctx = MetaContext::BaseAllocation;
        if option == opt::LIST_META_CONTEXT {
            let listed =
                req.queries.is_empty() || req.queries.iter().any(|q| ctx.matches_list_query(q));
            if listed {
                self.reply(option, rep::META_CONTEXT, &rep_meta_context(0, ctx.name()));
            }
        } else {
            let mut selected = Vec::new();
            for q in &req.queries {
                if let Some(c) = MetaContext::from_name(q)
                    && !selected.iter().any(|&(_, s)| s == c)
                {
                    selected.push((c.id(), c));
                }
            }
            for &(id, c) in &selected {
                self.reply(option, rep::META_CONTEXT, &rep_meta_context(id, c.name()));
            }
            self.meta = selected;
            self.meta_export = Some(export.name);
        }
        self.reply(option, rep::ACK, &[]);
    }
}

#[cfg(test)]
mod tests;
