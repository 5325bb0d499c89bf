//! Status objects (`onStatus`, `_result`, `_error` information) and the
//! status codes a server sends (RTMP spec §7.2.2).

use super::super::amf::{Amf0Value, Properties};

/// The information object of `onStatus`, `_result` or `_error`
/// (RTMP spec §7.2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Transaction id (0 for onStatus).
    pub transaction_id: f64,
    /// `level`: `status`, `warning` or `error`.
    pub level: String,
    /// `code`, e.g. `NetStream.Play.Start`.
    pub code: String,
    /// `description`, human readable.
    pub description: String,
    /// The whole information object, in order.
    pub info: Properties,
}

impl Status {
    pub(super) fn from_info(transaction_id: f64, info: &Amf0Value) -> Status {
        let text = |k| {
            info.get(k)
                .and_then(Amf0Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Status {
            transaction_id,
            level: text("level"),
            code: text("code"),
            description: text("description"),
            info: info.properties().map(<[_]>::to_vec).unwrap_or_default(),
        }
    }
}

/// NetConnection / NetStream status codes a server sends (RTMP spec §7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusCode {
    /// `NetConnection.Connect.Success` (status).
    ConnectSuccess,
    /// `NetConnection.Connect.Rejected` (error).
    ConnectRejected,
    /// `NetConnection.Connect.Closed` (status).
    ConnectClosed,
    /// `NetStream.Publish.Start` (status).
    PublishStart,
    /// `NetStream.Publish.BadName` (error): e.g. already publishing.
    PublishBadName,
    /// `NetStream.Publish.Denied` (error): admission refused.
    PublishDenied,
    /// `NetStream.Unpublish.Success` (status).
    UnpublishSuccess,
    /// `NetStream.Play.Reset` (status).
    PlayReset,
    /// `NetStream.Play.Start` (status).
    PlayStart,
    /// `NetStream.Play.Stop` (status).
    PlayStop,
    /// `NetStream.Play.StreamNotFound` (error).
    PlayStreamNotFound,
    /// `NetStream.Play.Failed` (error): e.g. admission refused.
    PlayFailed,
    /// `NetStream.Play.PublishNotify` (status): the publisher (re)started.
    PlayPublishNotify,
    /// `NetStream.Play.UnpublishNotify` (status): the publisher stopped.
    PlayUnpublishNotify,
    /// `NetStream.Data.Start` (status).
    DataStart,
    /// `NetStream.Pause.Notify` (status).
    PauseNotify,
    /// `NetStream.Unpause.Notify` (status).
    UnpauseNotify,
}

impl StatusCode {
    /// The `code` string.
    pub fn code(self) -> &'static str {
        match self {
            StatusCode::ConnectSuccess => "NetConnection.Connect.Success",
            StatusCode::ConnectRejected => "NetConnection.Connect.Rejected",
            StatusCode::ConnectClosed => "NetConnection.Connect.Closed",
            StatusCode::PublishStart => "NetStream.Publish.Start",
            StatusCode::PublishBadName => "NetStream.Publish.BadName",
            StatusCode::PublishDenied => "NetStream.Publish.Denied",
            StatusCode::UnpublishSuccess => "NetStream.Unpublish.Success",
            StatusCode::PlayReset => "NetStream.Play.Reset",
            StatusCode::PlayStart => "NetStream.Play.Start",
            StatusCode::PlayStop => "NetStream.Play.Stop",
            StatusCode::PlayStreamNotFound => "NetStream.Play.StreamNotFound",
            StatusCode::PlayFailed => "NetStream.Play.Failed",
            StatusCode::PlayPublishNotify => "NetStream.Play.PublishNotify",
            StatusCode::PlayUnpublishNotify => "NetStream.Play.UnpublishNotify",
            StatusCode::DataStart => "NetStream.Data.Start",
            StatusCode::PauseNotify => "NetStream.Pause.Notify",
            StatusCode::UnpauseNotify => "NetStream.Unpause.Notify",
        }
    }

    /// The `level` string: `status` or `error`.
    pub fn level(self) -> &'static str {
        match self {
            StatusCode::ConnectRejected
            | StatusCode::PublishBadName
            | StatusCode::PublishDenied
            | StatusCode::PlayStreamNotFound
            | StatusCode::PlayFailed => "error",
            _ => "status",
        }
    }
}
