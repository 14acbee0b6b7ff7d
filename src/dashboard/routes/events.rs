//! `GET /api/dashboard/events`: Server-Sent Events, a `status` event at once and after every
//! published snapshot.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use crate::dashboard::Dashboard;
use crate::dashboard::auth::Reader;
use crate::dashboard::views;

pub async fn events(
    State(d): State<Dashboard>,
    _: Reader,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((d.snapshot, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let snapshot = rx.borrow_and_update().clone();
        // These views always serialize (every map key is a string).
        let data = serde_json::to_string(&views::status_event(&snapshot)).unwrap_or_default();
        Some((Ok(Event::default().event("status").data(data)), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
