// SPDX-License-Identifier: MPL-2.0
//! `pipecatwssink`: the caller's audio, to the bot, on the WebSocket of the
//! `pipecatwsrc` naming the same `connection` (or its own, given a `uri`).

use std::sync::{LazyLock, Mutex};

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::common::{self, LinkSettings};
use crate::connection::{CAT, Connection, End, Unsent, Use};
use crate::wire::session::dtmf_key_of_event;

#[derive(Default)]
struct State {
    connection: Option<std::sync::Arc<Use>>,
    rate: u32,
}

#[derive(Default)]
pub struct PipecatWsSink {
    settings: Mutex<LinkSettings>,
    state: Mutex<State>,
}

impl PipecatWsSink {
    /// `send-message` and `send-text`.
    fn send(&self, what: common::Outgoing) -> bool {
        let conn = lock(&self.state).connection.clone();
        common::send_outgoing(self.obj().upcast_ref(), conn.as_deref(), what)
    }

    fn settings(&self) -> LinkSettings {
        lock(&self.settings).clone()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PipecatWsSink {
    const NAME: &'static str = "GstPipecatWsSink";
    type Type = super::PipecatWsSink;
    type ParentType = gst_base::BaseSink;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for PipecatWsSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(LinkSettings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        lock(&self.settings).set(pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.settings()
            .get(pspec.name())
            .expect("every property is a link setting")
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            common::send_signals::<super::PipecatWsSink>(|obj, what| obj.imp().send(what))
        });
        SIGNALS.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        // The bot paces itself: the caller's audio goes out as it arrives,
        // and a live call does not wait for this sink to preroll.
        self.obj().set_sync(false);
        self.obj().set_async(false);
    }
}

impl GstObjectImpl for PipecatWsSink {}

impl ElementImpl for PipecatWsSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Pipecat WebSocket sink",
                "Sink/Audio/Network",
                "Sends the caller's audio to a Pipecat bot, on the WebSocket of the pipecatwsrc with the same connection",
                env!("CARGO_PKG_AUTHORS"),
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .channels(1)
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for PipecatWsSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        if settings.connection.is_empty() && settings.uri.is_none() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["pipecatwssink needs a uri, or the connection name of a pipecatwsrc"]
            ));
        }
        let obj = self.obj();
        let element: &gst::Element = obj.upcast_ref();
        let peer = settings
            .uri
            .as_deref()
            .map(|uri| (uri, settings.serializer));
        let conn = Connection::acquire(element, &settings.connection, peer)
            .map_err(|text| gst::error_msg!(gst::ResourceError::Settings, ("{}", text)))?;
        // Sinks start before sources: with its own uri the sink connects
        // (in the background), otherwise the pipecatwsrc of the same
        // connection does.
        if let Some(uri) = settings.uri.as_deref() {
            conn.connect(&settings.connect_config(uri))
                .map_err(|end| match end {
                    End::Failed { text, debug } => {
                        gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", text), ["{}", debug])
                    }
                    End::Closed { .. } => gst::error_msg!(
                        gst::ResourceError::OpenWrite,
                        ["The Pipecat bot closed at once"]
                    ),
                })?;
        }
        lock(&self.state).connection = Some(std::sync::Arc::new(conn));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Letting go of our use closes the socket if nobody else uses it.
        lock(&self.state).connection = None;
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(conn) = lock(&self.state).connection.clone() {
            conn.set_send_flushing(true);
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(conn) = lock(&self.state).connection.clone() {
            conn.set_send_flushing(false);
        }
        Ok(())
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let mut caps = self.obj().sink_pad().pad_template_caps();
        if let Some(rate) = self.settings().serializer.fixed_rate() {
            caps.make_mut().set("rate", rate as i32);
        }
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "bad caps {caps}"))?;
        lock(&self.state).rate = info.rate();
        Ok(())
    }

    /// A `dtmf-event` (as `rtpdtmfdepay` posts it and `dtmfsrc` takes it)
    /// sent downstream to this sink goes to the bot as DTMF, in stream order.
    fn event(&self, event: gst::Event) -> bool {
        let is_custom = matches!(
            event.type_(),
            gst::EventType::CustomDownstream
                | gst::EventType::CustomDownstreamOob
                | gst::EventType::CustomBoth
        );
        if let Some(s) = event
            .structure()
            .filter(|s| is_custom && s.name() == "dtmf-event")
        {
            self.dtmf_event(s);
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (conn, rate) = {
            let state = lock(&self.state);
            (
                state.connection.clone().ok_or(gst::FlowError::Flushing)?,
                state.rate,
            )
        };
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        gst::trace!(
            CAT,
            imp = self,
            "sending {} bytes of caller audio",
            map.len()
        );
        let sent = conn
            .wait_connected()
            .and_then(|()| conn.send_with(|session| session.audio(&map, rate)));
        match sent {
            Err(Unsent::Flushing) => Err(gst::FlowError::Flushing),
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(Unsent::Ended(End::Closed { .. })) => Err(gst::FlowError::Eos),
            Err(Unsent::Ended(End::Failed { text, debug })) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("{}", text),
                    ["{}", debug]
                );
                Err(gst::FlowError::Error)
            }
            Err(Unsent::NotConnected) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Not connected to a Pipecat bot"),
                    [
                        "connection '{}' has not been opened by a pipecatwsrc; set uri on the sink or start the source",
                        self.settings().connection
                    ]
                );
                Err(gst::FlowError::Error)
            }
        }
    }
}

impl PipecatWsSink {
    fn dtmf_event(&self, s: &gst::StructureRef) {
        // The end of a tone carries nothing new: one key is one event.
        if !s.get::<bool>("start").unwrap_or(true) {
            return;
        }
        match s.get::<i32>("number").ok().and_then(dtmf_key_of_event) {
            Some(key) => {
                gst::debug!(CAT, imp = self, "DTMF {key} for the bot");
                self.send(common::Outgoing::Dtmf(key.to_string()));
            }
            None => gst::warning!(
                CAT,
                imp = self,
                "dtmf-event {s} is not a key Pipecat takes (0-9, *, #): not sent"
            ),
        }
    }
}

impl URIHandlerImpl for PipecatWsSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

    fn protocols() -> &'static [&'static str] {
        common::URI_PROTOCOLS
    }

    fn uri(&self) -> Option<String> {
        common::pipecat_uri(self.settings().uri.as_deref())
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        common::apply_pipecat_uri(self.obj().upcast_ref(), uri, common::LINK_URI_PARAMETERS)
    }
}
