//! Live updates of the sessions pages: the server's stream of session moves
//! (`/sessions/events`, server-sent events) tells a page which sessions moved, and the page
//! reads them again through its own door. When the stream cannot be kept (signed out, a proxy
//! that refuses streams), the page refreshes every [`FALLBACK_EVERY`] instead.

#[cfg(feature = "hydrate")]
use leptos::prelude::*;

/// How often a page without the stream refreshes.
pub const FALLBACK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Calls `on_move` with the public ids of the sessions that moved (empty: "something may have
/// changed": when the stream opens, and from the periodic fallback) for as long as the calling
/// component lives. Nothing
/// happens on the server's render.
pub fn on_session_moves(on_move: impl Fn(Vec<String>) + Clone + 'static) {
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::watch(on_move.clone()));
    #[cfg(not(feature = "hydrate"))]
    let _ = on_move;
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::FALLBACK_EVERY;
    use leptos::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        type EventSource;
        #[wasm_bindgen(catch, constructor)]
        fn new(url: &str) -> Result<EventSource, JsValue>;
        #[wasm_bindgen(method, js_name = addEventListener)]
        fn add_event_listener(this: &EventSource, kind: &str, listener: &js_sys::Function);
        #[wasm_bindgen(method, getter, js_name = readyState)]
        fn ready_state(this: &EventSource) -> u16;
        #[wasm_bindgen(method)]
        fn close(this: &EventSource);
    }

    /// A stream and the callbacks it holds, kept until the page that opened it goes away.
    struct Watch {
        source: EventSource,
        _on_message: Closure<dyn FnMut(JsValue)>,
        _on_open: Closure<dyn FnMut(JsValue)>,
        _on_error: Closure<dyn FnMut(JsValue)>,
    }

    thread_local! {
        // Browser objects cannot cross threads, and a cleanup must be `Send`: the cleanup
        // carries the key, the browser's one thread keeps the objects.
        static WATCHES: RefCell<HashMap<u32, Watch>> = RefCell::new(HashMap::new());
        static NEXT: RefCell<u32> = const { RefCell::new(0) };
    }

    /// The public ids in one event's data (`[{"public_id": …}, …]`).
    fn moved(data: &str) -> Vec<String> {
        serde_json::from_str::<Vec<serde_json::Value>>(data)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["public_id"].as_str().map(str::to_string))
            .collect()
    }

    /// The periodic refresh when no stream can be kept.
    fn fall_back(on_move: impl Fn(Vec<String>) + 'static) {
        if let Ok(handle) = set_interval_with_handle(move || on_move(Vec::new()), FALLBACK_EVERY) {
            on_cleanup(move || handle.clear());
        }
    }

    pub(super) fn watch(on_move: impl Fn(Vec<String>) + Clone + 'static) {
        let Ok(source) = EventSource::new(crate::access::SESSION_EVENTS_ROUTE) else {
            fall_back(on_move);
            return;
        };
        let key = NEXT.with(|n| {
            let mut n = n.borrow_mut();
            *n += 1;
            *n
        });
        let on_data = on_move.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let data = js_sys::Reflect::get(&event, &JsValue::from_str("data"))
                .ok()
                .and_then(|d| d.as_string())
                .unwrap_or_default();
            let ids = moved(&data);
            if !ids.is_empty() {
                on_data(ids);
            }
        });
        // The stream starts at the newest move when it opens; anything between the page's own
        // read and that moment is caught by reading once more as it opens (and after every
        // reconnection).
        let on_open_move = on_move.clone();
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| on_open_move(Vec::new()));
        let fallen = std::rc::Rc::new(std::cell::Cell::new(false));
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            // The browser retries a dropped stream itself (readyState CONNECTING); a stream it
            // gave up on (CLOSED: refused, not a stream) is replaced by the periodic refresh.
            let closed = WATCHES.with(|w| {
                w.borrow()
                    .get(&key)
                    .is_some_and(|watch| watch.source.ready_state() == 2)
            });
            if closed && !fallen.replace(true) {
                let on_move = on_move.clone();
                if let Ok(handle) =
                    set_interval_with_handle(move || on_move(Vec::new()), FALLBACK_EVERY)
                {
                    // Kept until the page goes: the watch's cleanup clears it.
                    INTERVALS.with(|i| i.borrow_mut().insert(key, handle));
                }
            }
        });
        source.add_event_listener("sessions", on_message.as_ref().unchecked_ref());
        source.add_event_listener("open", on_open.as_ref().unchecked_ref());
        source.add_event_listener("error", on_error.as_ref().unchecked_ref());
        WATCHES.with(|w| {
            w.borrow_mut().insert(
                key,
                Watch {
                    source,
                    _on_message: on_message,
                    _on_open: on_open,
                    _on_error: on_error,
                },
            )
        });
        on_cleanup(move || {
            if let Some(watch) = WATCHES.with(|w| w.borrow_mut().remove(&key)) {
                watch.source.close();
            }
            if let Some(handle) = INTERVALS.with(|i| i.borrow_mut().remove(&key)) {
                handle.clear();
            }
        });
    }

    thread_local! {
        static INTERVALS: RefCell<HashMap<u32, IntervalHandle>> = RefCell::new(HashMap::new());
    }
}
