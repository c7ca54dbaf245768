//! HTTP/2 errors: a code (RFC 9113 §7) and whether it ends one stream
//! (RST_STREAM) or the whole connection (GOAWAY), with a reason for the log
//! and for the GOAWAY debug data.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    Connect = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Error {
    pub code: ErrorCode,
    /// The stream it ends; `None`: the connection.
    pub stream: Option<u32>,
    pub reason: String,
}

impl H2Error {
    pub fn conn(code: ErrorCode, reason: impl Into<String>) -> H2Error {
        H2Error { code, stream: None, reason: reason.into() }
    }

    pub fn stream(stream: u32, code: ErrorCode, reason: impl Into<String>) -> H2Error {
        H2Error { code, stream: Some(stream), reason: reason.into() }
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.stream {
            Some(s) => write!(f, "stream {s}: {:?}: {}", self.code, self.reason),
            None => write!(f, "connection: {:?}: {}", self.code, self.reason),
        }
    }
}
