// SPDX-License-Identifier: MPL-2.0
//! The process's connections by (pipeline, name): acquire, count the
//! users, release; the last release closes the socket. Counted under the
//! registry's lock, so a racing last release never closes a connection
//! just handed out.

use super::*;

pub(super) type Key = (usize, String);

pub(super) static REGISTRY: LazyLock<Mutex<HashMap<Key, Weak<Connection>>>> =
    LazyLock::new(Default::default);

/// An element's hold on a connection; the last one let go closes it.
pub struct Use(Arc<Connection>);

impl std::ops::Deref for Use {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl Use {
    /// Starts connecting, unless this connection already is or has (see
    /// `Connection::start`).
    pub fn connect(&self, cfg: &ConnectConfig) -> Result<(), End> {
        self.0.start(cfg)
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        // Under the registry's lock, as `acquire` counts a new user: the
        // last user leaves it, and a connection it found is never closed
        // under it.
        let registry = self.0.key.as_ref().map(|_| lock(&REGISTRY));
        let last = self.0.users.fetch_sub(1, Ordering::AcqRel) == 1;
        if let (true, Some(mut registry)) = (last, registry) {
            self.0.leave_registry(&mut registry);
        }
        if last {
            self.0.close();
        }
    }
}

/// The pipeline (topmost bin) `element` is in.
pub(super) fn scope_of(element: &gst::Element) -> gst::Object {
    let mut top: gst::Object = element.clone().upcast();
    while let Some(parent) = top.parent() {
        top = parent;
    }
    top
}

impl Connection {
    /// The connection `name` of `element`'s pipeline (a private one for an
    /// empty name). `peer` is the bot the element names, if it names one;
    /// a different bot under the same name is refused.
    pub fn acquire(
        element: &gst::Element,
        name: &str,
        peer: Option<(&str, Serializer)>,
    ) -> Result<Use, String> {
        let conn = if name.is_empty() {
            Arc::new(Connection::new(None, None, name))
        } else {
            let scope = scope_of(element);
            let key = (scope.as_ptr() as usize, name.to_owned());
            let mut registry = lock(&REGISTRY);
            registry.retain(|_, c| c.strong_count() > 0);
            // An entry of a freed pipeline at the same address is not ours.
            let existing = registry
                .get(&key)
                .and_then(Weak::upgrade)
                .filter(|c| c.scope.as_ref().and_then(|s| s.upgrade()).as_ref() == Some(&scope));
            let conn = match existing {
                Some(existing) => existing,
                None => {
                    let conn = Arc::new(Connection::new(Some(key.clone()), Some(&scope), name));
                    registry.insert(key, Arc::downgrade(&conn));
                    conn
                }
            };
            // Counted under the registry's lock: see `Use::drop`.
            conn.users.fetch_add(1, Ordering::AcqRel);
            conn
        };
        if name.is_empty() {
            conn.users.fetch_add(1, Ordering::AcqRel);
        }
        // From here on, an early return lets go of the use it counted.
        let conn = Use(conn);
        if let Some((uri, serializer)) = peer {
            let mut link = lock(&conn.link);
            match &link.peer {
                Some(p) if p.uri != uri || p.serializer != serializer => {
                    return Err(format!(
                        "connection '{name}' is already used in this pipeline for the bot at {} \
                         ({}); this element names {} ({}): give each bot its own connection name",
                        redact::redact_uri(&p.uri),
                        p.serializer.nick(),
                        redact::redact_uri(uri),
                        serializer.nick(),
                    ));
                }
                Some(_) => {}
                None => {
                    link.peer = Some(Peer {
                        uri: uri.to_owned(),
                        serializer,
                    })
                }
            }
        }
        Ok(conn)
    }

    /// Takes this connection's entry out of the registry, if it is its.
    pub(super) fn leave_registry(&self, registry: &mut HashMap<Key, Weak<Connection>>) {
        if let Some(key) = &self.key
            && registry
                .get(key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            registry.remove(key);
        }
    }
}
