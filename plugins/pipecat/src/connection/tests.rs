// SPDX-License-Identifier: MPL-2.0
use super::*;
use crate::wire::serializer::WireAudio;

fn audio(first: u8) -> Inbound {
    Inbound::Audio(WireAudio {
        data: vec![first, 0, 0, 0].into(),
        rate: 8000,
        channels: 1,
        law: None,
    })
}

fn firsts(batch: &[Chunk]) -> Vec<u8> {
    batch.iter().map(|c| c.audio.data[0]).collect()
}

fn closed(conn: &Connection) -> bool {
    conn.mailbox().end.is_some()
}

/// Two users of one named connection coming and going on two threads:
/// a connection handed out is never one its last user is closing.
#[test]
fn a_connection_handed_out_is_never_closed_by_a_racing_last_release() {
    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let element = gst::ElementFactory::make("identity").build().unwrap();
    pipeline.add(&element).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (element, stop) = (element.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut handed_out_closed = 0;
                let deadline = std::time::Instant::now() + Duration::from_millis(500);
                while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let conn = Connection::acquire(&element, "race", None).unwrap();
                    if closed(&conn) {
                        handed_out_closed += 1;
                    }
                    drop(conn);
                }
                handed_out_closed
            })
        })
        .collect();
    let closed_ones: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(closed_ones, 0, "uses handed a closed connection");
}

/// A pipeline freed while an element of it still holds its connection:
/// a new pipeline, whatever address it gets, never joins that entry.
#[test]
fn a_new_pipeline_never_joins_a_freed_ones_connection() {
    gst::init().unwrap();
    let held = {
        let pipeline = gst::Pipeline::new();
        let element = gst::ElementFactory::make("identity").build().unwrap();
        pipeline.add(&element).unwrap();
        let held = Connection::acquire(&element, "stale", None).unwrap();
        pipeline.remove(&element).unwrap();
        held
    };
    // Many new pipelines: the allocator hands one the freed address.
    for _ in 0..200 {
        let pipeline = gst::Pipeline::new();
        let element = gst::ElementFactory::make("identity").build().unwrap();
        pipeline.add(&element).unwrap();
        let conn = Connection::acquire(&element, "stale", None).unwrap();
        assert_ne!(conn.id(), held.id(), "joined a freed pipeline's connection");
    }
}

#[test]
fn take_all_hands_over_everything_in_order_then_the_end() {
    let conn = Connection::new(None, None, "test");
    let arrival = std::time::Instant::now();
    for i in 0..3 {
        conn.deliver(audio(i), arrival);
    }
    conn.mailbox().end = Some(End::Closed {
        code: 1000,
        reason: "bye".into(),
    });
    let mut batch = Vec::new();
    let (after, dropped) = conn.take_all(&mut batch);
    assert_eq!(firsts(&batch), [0, 1, 2]);
    assert!(batch.iter().all(|c| c.arrival == arrival));
    assert!(matches!(
        after,
        Some(Next::End(End::Closed { code: 1000, .. }))
    ));
    assert!(dropped.is_empty());

    // Taken means gone; while flushing, only that.
    batch.clear();
    conn.deliver(audio(7), arrival);
    conn.set_flushing(true);
    let (after, _) = conn.take_all(&mut batch);
    assert!(batch.is_empty());
    assert!(matches!(after, Some(Next::Flushing)));
}

#[test]
fn a_sender_learns_why_the_connection_ended_never_that_it_was_not_opened() {
    let conn = Connection::new(None, None, "test");
    let outbox = Arc::new(Outbox::default());
    {
        let mut link = lock(&conn.link);
        link.outgoing = Some(outbox.clone());
        link.session = Some(Arc::new(Session::new(
            Serializer::Protobuf,
            CallIds::default(),
        )));
    }
    // The writer stopped on a failure the reader has not recorded yet.
    outbox.close();
    assert!(conn.send(Message::Text("lost".into())).is_ok());
    // The reader records it; whoever sends next learns it.
    conn.finish(
        0,
        End::Failed {
            text: "the bot is gone".into(),
            debug: String::new(),
        },
    );
    assert!(lock(&conn.link).outgoing.is_none());
    match conn.send(Message::Text("late".into())) {
        Err(Unsent::Ended(End::Failed { text, .. })) => assert_eq!(text, "the bot is gone"),
        Err(Unsent::NotConnected) => panic!("not connected, instead of why it ended"),
        _ => panic!("sent on an ended connection"),
    }
}

#[test]
fn the_pusher_is_called_with_its_connection_after_the_audio_is_queued() {
    type Seen = Vec<(String, usize, Vec<u8>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    gst::init().unwrap();
    let conn = Arc::new(Connection::new(None, None, "test"));
    conn.set_pusher(Some(Pusher {
        pad: gst::Pad::builder(gst::PadDirection::Src)
            .name("the-pad")
            .build(),
        push: |pad, c| {
            let mut batch = Vec::new();
            c.take_all(&mut batch);
            let address = c as *const Connection as usize;
            lock(&SEEN).push((pad.name().to_string(), address, firsts(&batch)));
        },
    }));
    conn.deliver(audio(5), std::time::Instant::now());
    let address = Arc::as_ptr(&conn) as usize;
    assert_eq!(*lock(&SEEN), [("the-pad".to_string(), address, vec![5])]);
}
