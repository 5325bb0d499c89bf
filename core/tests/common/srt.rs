//! Looking up what an SRT [`Endpoint`](arcly::srt::endpoint::Endpoint)
//! reported: the SRT caller / listener tests against ourselves and libsrt.

use arcly::srt::caller::ConnectError;
use arcly::srt::endpoint::{ConnectionRequest, EndpointEvent};
use arcly::srt::packet::SocketId;

/// The socket of the first `Connected` event.
pub fn connected_id(events: &[EndpointEvent]) -> Option<SocketId> {
    events.iter().find_map(|e| match e {
        EndpointEvent::Connected { id, .. } => Some(*id),
        _ => None,
    })
}

/// The reason of the first `ConnectFailed` event.
pub fn connect_failure(events: &[EndpointEvent]) -> Option<ConnectError> {
    events.iter().find_map(|e| match e {
        EndpointEvent::ConnectFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

/// The first connection request a listener reported.
pub fn first_request(events: &[EndpointEvent]) -> Option<ConnectionRequest> {
    events.iter().find_map(|e| match e {
        EndpointEvent::Request(r) => Some((**r).clone()),
        _ => None,
    })
}
