//! Classify a failed proxy attempt: which levee reason (and so status and header) answers it,
//! or none when the client side failed and there is nobody to answer.

use crate::reason::Reason;
use pingora_error::{Error, ErrorSource, ErrorType::*};

pub enum Outcome {
    /// Answer the client with this reason.
    Answer(Reason),
    /// Answer with a plain status (malformed client request, internal error).
    Status(u16),
    /// The client is gone; nothing to send.
    ClientGone,
}

pub fn classify(e: &Error) -> Outcome {
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(code)) => Outcome::Status(*code),
        (
            ErrorSource::Upstream,
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError
            | BindError | TLSHandshakeFailure | TLSHandshakeTimedout | HandshakeError | InvalidCert,
        ) => Outcome::Answer(Reason::UpstreamConnectFailed),
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => {
            Outcome::Answer(Reason::UpstreamTimeout)
        }
        (ErrorSource::Upstream, _) => Outcome::Answer(Reason::UpstreamError),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => Outcome::ClientGone,
        (ErrorSource::Downstream, _) => Outcome::Status(400),
        (ErrorSource::Internal | ErrorSource::Unset, _) => Outcome::Status(500),
    }
}

/// Connect-phase errors are safe to retry on another endpoint: nothing reached the upstream.
pub fn is_connect_failure(e: &Error) -> bool {
    matches!(
        e.etype(),
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
    )
}
