use super::super::event::tests::decode;
use super::super::reply::DEFAULT_PATH;
use super::super::request::{MAX_SUBJECTS, MAX_SUBJECT_BYTES};
use super::*;
use crate::hub::{validate_channel, Message, MessageId};
use serde_json::Value;
use std::sync::Arc;

const A: ConnRef = ConnRef { loop_id: 0, conn: 1, stream: 0 };
const B: ConnRef = ConnRef { loop_id: 0, conn: 2, stream: 0 };
const C: ConnRef = ConnRef { loop_id: 1, conn: 3, stream: 0 };
const D: ConnRef = ConnRef { loop_id: 1, conn: 4, stream: 0 };

const SECOND: Duration = Duration::from_secs(1);

fn config() -> Config {
    Config {
        lease: Duration::from_secs(60),
        max_queue: 3,
        read_timeout: Duration::from_secs(20),
        auth: None,
        pull_wait_ms: (2000, 6000),
        poll_wait_ms: (6000, 10_000),
        publish_allow: vec!["/chat".into(), "/news".into()],
    }
}

/// An engine, a clock and what it published to the hub.
struct World {
    e: Engine,
    now: Instant,
    published: Vec<NewMessage>,
    /// What the hub callback answers.
    hub_answer: Result<(), String>,
    next_mid: u64,
}

impl World {
    fn new() -> World {
        World::with(config())
    }

    fn with(config: Config) -> World {
        World {
            e: Engine::new(config),
            now: Instant::now(),
            published: Vec::new(),
            hub_answer: Ok(()),
            next_mid: 0,
        }
    }

    fn send(&mut self, from: ConnRef, fields: &[(&str, &str)]) -> Vec<Output> {
        self.send_path(from, fields, "/pushlet/pushlet.srv")
    }

    fn send_path(&mut self, from: ConnRef, fields: &[(&str, &str)], path: &str) -> Vec<Output> {
        let fields = fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let mut out = Vec::new();
        let answer = self.hub_answer.clone();
        let published = &mut self.published;
        let mut publish = |m: &mut NewMessage, to_hub: bool| {
            if to_hub {
                published.push(m.clone());
            }
            answer.clone()
        };
        self.e.request(Request { from, fields, path: path.into() }, self.now, &mut publish, &mut out);
        check_invariants(&self.e);
        out
    }

    /// Joins (and listens when `mode` is given) in xml-strict; returns the id.
    fn join(&mut self, from: ConnRef, mode: Option<&str>, subject: Option<&str>) -> String {
        let mut fields = vec![
            ("p_event", if mode.is_some() { "join-listen" } else { "join" }),
            ("p_format", "xml-strict"),
        ];
        if let Some(mode) = mode {
            fields.push(("p_mode", mode));
        }
        if let Some(subject) = subject {
            fields.push(("p_subject", subject));
        }
        let out = self.send(from, &fields);
        let first = &events_of(&out[0])[0];
        get(first, "p_id").to_string()
    }

    fn deliver(&mut self, channel: &str, data: &str) -> Vec<Output> {
        self.deliver_many(&[(channel, data)])
    }

    fn deliver_many(&mut self, messages: &[(&str, &str)]) -> Vec<Output> {
        let batch: Vec<Arc<Message>> = messages
            .iter()
            .map(|(channel, data)| {
                self.next_mid += 1;
                let id = MessageId::new(1_700_000_000_123, self.next_mid);
                Arc::new(Message::new(id, Arc::from(*channel), None, (*data).into()))
            })
            .collect();
        let mut out = Vec::new();
        self.e.deliver(&batch, self.now, &mut out);
        check_invariants(&self.e);
        out
    }

    fn tick_after(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        let mut out = Vec::new();
        self.e.tick(self.now, &mut out);
        check_invariants(&self.e);
        out
    }
}

/// The engine's internal bookkeeping agrees with itself.
fn check_invariants(e: &Engine) {
    for (conn, id) in &e.conns {
        let linked = e.sessions.get(id).and_then(|s| s.link.as_ref()).map(Link::to);
        assert_eq!(linked, Some(*conn), "conns entry {conn:?} → {id} has no matching link");
    }
    let mut earliest: HashMap<&str, Instant> = HashMap::new();
    for Reverse((at, id)) in e.timers.iter() {
        let entry = earliest.entry(id.as_str()).or_insert(*at);
        *entry = (*entry).min(*at);
    }
    for (id, s) in &e.sessions {
        if let Some(link) = &s.link {
            assert_eq!(e.conns.get(&link.to()), Some(id), "link of {id} not in conns");
        }
        let armed = earliest.get(id.as_str()).is_some_and(|at| *at <= s.deadline());
        assert!(armed, "session {id} has no timer at or before its deadline");
        for sub in &s.subscriptions {
            for subject in &sub.spec.subjects {
                assert!(e.index.get(subject).is_some_and(|m| m.get(id).is_some_and(|n| *n > 0)), "{subject}");
            }
        }
    }
    for (subject, ids) in &e.index {
        for (id, n) in ids {
            let real = e.sessions.get(id).map_or(0, |s| {
                s.subscriptions.iter().filter(|sub| sub.spec.subjects.contains(subject)).count()
            });
            assert_eq!(real, *n, "index count for {subject} / {id}");
        }
    }
}

fn format_of(content_type: &str) -> Format {
    match content_type {
        "text/html;charset=UTF-8" => Format::Js,
        "text/plain;charset=UTF-8" => Format::Xml,
        "text/xml;charset=UTF-8" => Format::XmlStrict,
        other => panic!("unexpected content type {other}"),
    }
}

fn target(o: &Output) -> ConnRef {
    match o {
        Output::Whole { to, .. }
        | Output::Open { to, .. }
        | Output::More { to, .. }
        | Output::End { to, .. } => *to,
    }
}

fn body(o: &Output) -> &[u8] {
    match o {
        Output::Whole { body, .. }
        | Output::Open { body, .. }
        | Output::More { body, .. }
        | Output::End { body, .. } => body,
    }
}

/// Events of an output, decoded as xml-strict unless its content type says otherwise.
fn events_of(o: &Output) -> Vec<Event> {
    let format = match o {
        Output::Whole { content_type, .. } | Output::Open { content_type, .. } => format_of(content_type),
        _ => Format::XmlStrict,
    };
    decode(format, body(o)).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body(o))))
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| get(e, "p_event")).collect()
}

fn get<'a>(event: &'a Event, name: &str) -> &'a str {
    field(event, name).unwrap_or_else(|| panic!("no {name} in {event:?}"))
}

/// The one `Whole` answer to `to`, as events.
fn answer(out: &[Output], to: ConnRef) -> Vec<Event> {
    let wholes: Vec<&Output> =
        out.iter().filter(|o| matches!(o, Output::Whole { .. }) && target(o) == to).collect();
    assert_eq!(wholes.len(), 1, "one answer to {to:?} in {out:?}");
    events_of(wholes[0])
}

fn is_name(id: &str, len: usize) -> bool {
    id.len() == len
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| if i % 2 == 0 { CONSONANTS.contains(&b) } else { VOWELS.contains(&b) })
}

#[test]
fn every_command_and_error() {
    // Each row runs on a fresh engine with one xml-strict session ($ID) that
    // listens in pull mode and has one subscription ($SID, /news, label L).
    type Pairs = &'static [(&'static str, &'static str)];
    /// (what, request fields, answer's p_event or "" for held, fields to check)
    type Row = (&'static str, Pairs, &'static str, Pairs);
    let rows: &[Row] = &[
        ("hb", &[("p_event", "hb"), ("p_id", "$ID")], "hb-ack", &[]),
        ("leave", &[("p_event", "leave"), ("p_id", "$ID")], "leave-ack", &[("p_id", "$ID")]),
        (
            "subscribe",
            &[("p_event", "subscribe"), ("p_id", "$ID"), ("p_subject", "/a, /b"), ("p_label", "x")],
            "subscribe-ack",
            &[("p_id", "$ID"), ("p_subject", "/a, /b"), ("p_label", "x")],
        ),
        (
            "subscribe without subject",
            &[("p_event", "subscribe"), ("p_id", "$ID")],
            "nack",
            &[("p_id", "$ID"), ("p_reason", "no subject provided")],
        ),
        (
            "subscribe to an empty list",
            &[("p_event", "subscribe"), ("p_id", "$ID"), ("p_subject", " , ")],
            "nack",
            &[("p_reason", "no subject provided")],
        ),
        (
            "unsubscribe one",
            &[("p_event", "unsubscribe"), ("p_id", "$ID"), ("p_sid", "$SID")],
            "unsubscribe-ack",
            &[("p_id", "$ID"), ("p_sid", "$SID"), ("p_subject", "/news"), ("p_label", "L")],
        ),
        (
            "unsubscribe all",
            &[("p_event", "unsubscribe"), ("p_id", "$ID")],
            "unsubscribe-ack",
            &[("p_id", "$ID")],
        ),
        (
            "unsubscribe unknown sid",
            &[("p_event", "unsubscribe"), ("p_id", "$ID"), ("p_sid", "nope")],
            "nack",
            &[("p_reason", "no subscription for sid=nope")],
        ),
        (
            "publish",
            &[("p_event", "publish"), ("p_id", "$ID"), ("p_subject", "/chat/r"), ("msg", "hi")],
            "publish-ack",
            &[],
        ),
        (
            "publish without subject",
            &[("p_event", "publish"), ("p_id", "$ID"), ("msg", "hi")],
            "nack",
            &[("p_reason", "no subject provided")],
        ),
        (
            "publish outside the allow list",
            &[("p_event", "publish"), ("p_id", "$ID"), ("p_subject", "/secret")],
            "nack",
            &[("p_reason", "publishing to /secret is not allowed")],
        ),
        (
            "publish to a subject that is no channel",
            &[("p_event", "publish"), ("p_id", "$ID"), ("p_subject", "/chat/a b")],
            "nack",
            &[],
        ),
        ("refresh", &[("p_event", "refresh"), ("p_id", "$ID")], "", &[]),
        (
            "listen",
            &[
                ("p_event", "listen"),
                ("p_id", "$ID"),
                ("p_mode", "poll"),
                ("p_subject", "/x"),
                ("p_label", "y"),
            ],
            "listen-ack",
            &[("p_id", "$ID"), ("p_mode", "poll"), ("p_format", "xml-strict"), ("p_label", "y")],
        ),
        (
            "listen with an unknown mode",
            &[("p_event", "listen"), ("p_id", "$ID"), ("p_mode", "push")],
            "nack",
            &[("p_reason", "unknown mode 'push'; use stream, pull or poll")],
        ),
        (
            "unknown event type",
            &[("p_event", "frob"), ("p_id", "$ID")],
            "nack",
            &[("p_id", "$ID"), ("p_reason", "unknown event type 'frob'")],
        ),
        (
            "unknown id",
            &[("p_event", "hb"), ("p_id", "zzzzzzzzzz")],
            "nack",
            &[("p_reason", "invalid or expired id zzzzzzzzzz")],
        ),
        (
            "no id",
            &[("p_event", "subscribe"), ("p_subject", "/a")],
            "nack",
            &[("p_reason", "no id specified")],
        ),
        (
            "join",
            &[("p_event", "join"), ("p_format", "xml-strict")],
            "join-ack",
            &[("p_format", "xml-strict")],
        ),
        (
            "join with ser",
            &[("p_event", "join"), ("p_format", "ser")],
            "nack",
            &[("p_reason", "format ser (Java serialization) is not supported; use js, xml or xml-strict")],
        ),
        (
            "join with an unknown format",
            &[("p_event", "join"), ("p_format", "json")],
            "nack",
            &[("p_reason", "unknown format 'json'; use js, xml or xml-strict")],
        ),
        (
            "join-listen",
            &[
                ("p_event", "join-listen"),
                ("p_format", "xml-strict"),
                ("p_mode", "pull"),
                ("p_subject", "/n"),
                ("p_label", "z"),
            ],
            "join-listen-ack",
            &[("p_mode", "pull"), ("p_format", "xml-strict"), ("p_label", "z")],
        ),
        (
            "join-listen with a bad mode",
            &[("p_event", "join-listen"), ("p_format", "xml-strict"), ("p_mode", "x")],
            "nack",
            &[("p_reason", "unknown mode 'x'; use stream, pull or poll")],
        ),
    ];
    for (name, fields, want_kind, checks) in rows {
        let mut w = World::new();
        let id = w.join(A, Some("pull"), Some("/news"));
        let out =
            w.send(B, &[("p_event", "subscribe"), ("p_id", &id), ("p_subject", "/news"), ("p_label", "L")]);
        let sub = answer(&out, B).remove(0);
        let sid = get(&sub, "p_sid").to_string();
        let sessions = w.e.sessions();
        let fill = |v: &str| v.replace("$ID", &id).replace("$SID", &sid);
        let fields: Vec<(String, String)> = fields.iter().map(|(n, v)| (n.to_string(), fill(v))).collect();
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let out = w.send(C, &borrowed);
        if want_kind.is_empty() {
            assert!(out.is_empty(), "{name}: held, so no answer yet: {out:?}");
            continue;
        }
        let events = answer(&out, C);
        let want_len = if want_kind.ends_with("listen-ack") { 2 } else { 1 };
        assert_eq!(events.len(), want_len, "{name}: {events:?}");
        if want_len == 2 {
            assert_eq!(get(&events[1], "p_event"), "refresh", "{name}: pull and poll end with refresh");
        }
        let event = &events[0];
        assert_eq!(get(event, "p_event"), *want_kind, "{name}: {event:?}");
        assert!(get(event, "p_time").parse::<u64>().is_ok(), "{name}");
        for (field_name, want) in *checks {
            assert_eq!(get(event, field_name), fill(want), "{name}: {field_name}");
        }
        if *want_kind == "nack" {
            assert!(!get(event, "p_reason").is_empty(), "{name}");
            if !name.starts_with("join") {
                assert_eq!(w.e.sessions(), sessions, "{name}: a nack changes no sessions");
            }
        }
        match *name {
            "join-listen with a bad mode" | "join with ser" | "join with an unknown format" => {
                assert_eq!(w.e.sessions(), 1, "{name}: a refused join leaves no session")
            }
            "leave" => assert_eq!(w.e.sessions(), 0),
            "publish" => assert_eq!(w.published.len(), 1, "{name}"),
            "subscribe" | "join-listen" | "listen" => assert!(is_name(get(event, "p_sid"), 5), "{name}"),
            _ => {}
        }
        if name.starts_with("join") && *want_kind != "nack" {
            assert!(is_name(get(event, "p_id"), 20), "{name}");
        }
    }
}

#[test]
fn ids_look_like_pushlet_ids_and_do_not_repeat() {
    let mut w = World::new();
    let mut ids = HashSet::new();
    for _ in 0..2000 {
        let id = w.join(A, None, None);
        assert!(is_name(&id, 20), "{id}");
        assert!(ids.insert(id));
    }
    assert_eq!(w.e.sessions(), 2000);
}

#[test]
fn answers_without_a_session_pick_a_format() {
    let cases: &[(&[(&str, &str)], Format)] = &[
        (&[("p_event", "hb"), ("p_id", "nobody")], Format::XmlStrict),
        (&[("p_event", "hb"), ("p_id", "nobody"), ("p_format", "js")], Format::Js),
        (&[("p_event", "hb"), ("p_id", "nobody"), ("p_format", "ser")], Format::XmlStrict),
        (&[("p_event", "join")], Format::Js),
        (&[("p_event", "join"), ("p_format", "xml")], Format::Xml),
        (&[("p_event", "join"), ("p_format", "bogus")], Format::XmlStrict),
        (&[("p_event", "join-listen"), ("p_format", "js"), ("p_mode", "bogus")], Format::Js),
        (&[("p_event", "")], Format::XmlStrict),
    ];
    for (fields, want) in cases {
        let mut w = World::new();
        let out = w.send(A, fields);
        match &out[..] {
            [Output::Whole { content_type, .. }] => assert_eq!(format_of(content_type), *want, "{fields:?}"),
            other => panic!("{fields:?}: {other:?}"),
        }
        assert!(!events_of(&out[0]).is_empty());
    }
}

#[test]
fn a_session_answers_in_its_own_format() {
    for format in [Format::Js, Format::Xml, Format::XmlStrict] {
        let mut w = World::new();
        let out = w.send(A, &[("p_event", "join"), ("p_format", format.name())]);
        let ack = answer(&out, A).remove(0);
        assert_eq!(get(&ack, "p_format"), format.name());
        let id = get(&ack, "p_id").to_string();
        let out = w.send(A, &[("p_event", "hb"), ("p_id", &id), ("p_format", "xml")]);
        let Output::Whole { content_type, body, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(format_of(content_type), format, "p_format on later requests is ignored");
        let text = String::from_utf8(body.clone()).unwrap();
        let want_end = match format {
            Format::Js => "</body></html>",
            Format::Xml => " />",
            Format::XmlStrict => "</pushlet>",
        };
        assert!(text.ends_with(want_end), "{text}");
    }
}

#[test]
fn stream_sends_ack_and_heartbeat_then_data_then_idle_heartbeats() {
    let mut w = World::new();
    let out = w.send(A, &[("p_event", "join-listen"), ("p_format", "xml-strict"), ("p_subject", "/news")]);
    let [Output::Open { to, content_type, body }] = &out[..] else { panic!("{out:?}") };
    assert_eq!((*to, *content_type), (A, "text/xml;charset=UTF-8"));
    assert!(body.starts_with(b"<pushlet>") && !body.ends_with(b"</pushlet>"));
    let events = events_of(&out[0]);
    assert_eq!(kinds(&events), ["join-listen-ack", "hb"]);
    assert_eq!(get(&events[0], "p_mode"), "stream");
    assert_eq!(get(&events[1], "p_seq"), "1");
    let sid = get(&events[0], "p_sid").to_string();

    w.now += 5 * SECOND;
    let out = w.deliver_many(&[("news/sports", r#"{"msg":"goal"}"#), ("news", "plain")]);
    let [Output::More { to: A, .. }] = &out[..] else { panic!("{out:?}") };
    let events = events_of(&out[0]);
    assert_eq!(kinds(&events), ["data", "data"]);
    assert_eq!(
        events[0],
        vec![
            ("p_event".to_string(), "data".to_string()),
            ("p_time".into(), "1700000000".into()),
            ("p_subject".into(), "/news/sports".into()),
            ("p_seq".into(), "2".into()),
            ("p_sid".into(), sid.clone()),
            ("p_mid".into(), "1700000000123-1".into()),
            ("msg".into(), "goal".into()),
        ]
    );
    assert_eq!((get(&events[1], "p_seq"), get(&events[1], "data")), ("3", "plain"));

    // Idle for read_timeout after the last data: one hb.
    assert!(w.tick_after(19 * SECOND).is_empty());
    let out = w.tick_after(SECOND);
    let [Output::More { to: A, .. }] = &out[..] else { panic!("{out:?}") };
    let events = events_of(&out[0]);
    assert_eq!((kinds(&events), get(&events[0], "p_seq")), (vec!["hb"], "4"));
    assert_eq!(w.e.next_deadline(), Some(w.now + 20 * SECOND));
    // A stream keeps its session far beyond the lease.
    for _ in 0..10 {
        let out = w.tick_after(20 * SECOND);
        assert_eq!(out.len(), 1);
    }
    assert_eq!(w.e.sessions(), 1);
}

#[test]
fn pull_answers_ack_and_refresh_then_holds_refreshes() {
    let mut w = World::new();
    let out = w.send(
        A,
        &[("p_event", "join-listen"), ("p_format", "xml-strict"), ("p_mode", "pull"), ("p_subject", "/news")],
    );
    let events = answer(&out, A);
    assert_eq!(kinds(&events), ["join-listen-ack", "refresh"]);
    let id = get(&events[0], "p_id").to_string();
    let wait: u64 = get(&events[1], "p_wait").parse().unwrap();
    assert!((2000..=6000).contains(&wait), "{wait}");
    assert_eq!(get(&events[1], "p_url"), format!("/pushlet/pushlet.srv?p_id={id}&p_event=refresh"));
    assert!(field(&events[1], "p_seq").is_none());

    // Held until a message arrives.
    assert!(w.send(B, &[("p_event", "refresh"), ("p_id", &id)]).is_empty());
    assert_eq!(w.e.next_deadline(), Some(w.now + 20 * SECOND));
    w.now += 3 * SECOND;
    let out = w.deliver("news/x", r#"{"n":1}"#);
    let events = answer(&out, B);
    assert_eq!(kinds(&events), ["refresh-ack", "data", "refresh"]);
    assert_eq!((get(&events[1], "p_seq"), get(&events[1], "n")), ("1", "1"));

    // Held until read_timeout: then refresh-ack, hb, refresh.
    assert!(w.send(C, &[("p_event", "refresh"), ("p_id", &id)]).is_empty());
    assert!(w.tick_after(19 * SECOND).is_empty());
    let out = w.tick_after(SECOND);
    let events = answer(&out, C);
    assert_eq!(kinds(&events), ["refresh-ack", "hb", "refresh"]);
    assert_eq!(get(&events[1], "p_seq"), "1");

    // Events that came between refreshes are answered at once, p_seq from 1.
    w.deliver_many(&[("news/a", "1"), ("news/b", "2")]);
    let out = w.send(D, &[("p_event", "refresh"), ("p_id", &id)]);
    let events = answer(&out, D);
    assert_eq!(kinds(&events), ["refresh-ack", "data", "data", "refresh"]);
    assert_eq!((get(&events[1], "p_seq"), get(&events[2], "p_seq")), ("1", "2"));

    // A second refresh while one is held: the first is let go empty.
    assert!(w.send(A, &[("p_event", "refresh"), ("p_id", &id)]).is_empty());
    let out = w.send(B, &[("p_event", "refresh"), ("p_id", &id)]);
    assert_eq!(kinds(&answer(&out, A)), ["refresh-ack", "hb", "refresh"]);
    let out = w.deliver("news/c", "3");
    assert_eq!(kinds(&answer(&out, B)), ["refresh-ack", "data", "refresh"]);
}

#[test]
fn poll_answers_every_refresh_at_once() {
    let mut w = World::new();
    let id = w.join(A, Some("poll"), Some("/news"));
    let out = w.send(A, &[("p_event", "refresh"), ("p_id", &id)]);
    let events = answer(&out, A);
    assert_eq!(kinds(&events), ["refresh-ack", "refresh"]);
    let wait: u64 = get(&events[1], "p_wait").parse().unwrap();
    assert!((6000..=10_000).contains(&wait), "{wait}");
    w.deliver("news/1", "a");
    w.deliver("news/2", "b");
    let out = w.send(A, &[("p_event", "refresh"), ("p_id", &id)]);
    let events = answer(&out, A);
    assert_eq!(kinds(&events), ["refresh-ack", "data", "data", "refresh"]);
    assert_eq!((get(&events[1], "data"), get(&events[2], "p_seq")), ("a", "2"));
    assert_eq!(w.e.next_deadline(), Some(w.now + 60 * SECOND), "only the lease is pending");
}

#[test]
fn refresh_needs_a_pull_or_poll_listener() {
    let mut w = World::new();
    let joined = w.join(A, None, None);
    let out = w.send(B, &[("p_event", "refresh"), ("p_id", &joined)]);
    assert_eq!(
        get(&answer(&out, B)[0], "p_reason"),
        format!("session {joined} is not listening; send listen first")
    );
    let streaming = w.join(C, Some("stream"), None);
    let out = w.send(B, &[("p_event", "refresh"), ("p_id", &streaming)]);
    assert!(get(&answer(&out, B)[0], "p_reason").contains("stream mode"));
}

#[test]
fn js_pages_navigate_to_the_refresh_url() {
    let mut w = World::new();
    let out = w.send_path(
        A,
        &[("p_event", "join-listen"), ("p_format", "js"), ("p_mode", "pull"), ("p_subject", "/news")],
        "/pushlet",
    );
    let [Output::Whole { content_type: "text/html;charset=UTF-8", body, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    let text = String::from_utf8(body.clone()).unwrap();
    assert_eq!(text.matches("</html>").count(), 1, "{text}");
    let events = events_of(&out[0]);
    assert_eq!(kinds(&events), ["join-listen-ack", "refresh"]);
    let id = get(&events[0], "p_id");
    assert_eq!(get(&events[1], "p_url"), format!("/pushlet?p_id={id}&p_event=refresh"));
}

#[test]
fn refresh_urls_only_use_plain_paths() {
    let cases = [
        ("/pushlet/pushlet.srv", "/pushlet/pushlet.srv"),
        ("/pushlet", "/pushlet"),
        ("//evil.example/x", DEFAULT_PATH),
        ("javascript:alert(1)", DEFAULT_PATH),
        ("/a?b=c", DEFAULT_PATH),
        ("/a'b", DEFAULT_PATH),
        ("", DEFAULT_PATH),
    ];
    for (path, want) in cases {
        assert_eq!(
            refresh_url(path, "bafemoruki"),
            format!("{want}?p_id=bafemoruki&p_event=refresh"),
            "{path}"
        );
    }
}

#[test]
fn subjects_match_by_prefix_with_one_copy_per_session() {
    let mut w = World::new();
    // X: two matching subscriptions; the first (by creation) stamps the copy.
    let x = w.join(A, Some("stream"), Some(" /news , /weather"));
    let out =
        w.send(D, &[("p_event", "subscribe"), ("p_id", &x), ("p_subject", "/news/sports"), ("p_label", "b")]);
    assert_eq!(get(&answer(&out, D)[0], "p_subject"), "/news/sports");
    let y = w.join(B, Some("stream"), Some("/newsletter"));
    let z = w.join(C, Some("stream"), Some("/"));
    let x_sid = w.e.sessions.get(&x).map(|s| s.subscriptions[0].sid.clone()).unwrap();
    let cases: &[(&str, &[ConnRef])] = &[
        ("news/sports", &[A, C]),
        ("newsletter", &[A, B, C]),
        ("weather/today", &[A, C]),
        ("sport", &[C]),
        ("new", &[C]),
    ];
    for (channel, want) in cases {
        let out = w.deliver(channel, "x");
        let mut got: Vec<ConnRef> = out.iter().map(target).collect();
        got.sort_by_key(|c| c.conn);
        assert_eq!(got, *want, "{channel}");
        for o in &out {
            let events = events_of(o);
            assert_eq!(events.len(), 1, "{channel}: one copy");
            if target(o) == A {
                assert_eq!(get(&events[0], "p_sid"), x_sid, "{channel}: first subscription wins");
                assert!(field(&events[0], "p_label").is_none());
            }
        }
    }
    let _ = (y, z);
}

#[test]
fn each_receiver_gets_its_own_label() {
    let mut w = World::new();
    let mut expect = Vec::new();
    for (conn, label) in [(A, Some("alpha")), (B, Some("beta")), (C, None), (D, Some(""))] {
        let mut fields = vec![("p_event", "join-listen"), ("p_format", "xml-strict"), ("p_subject", "/news")];
        if let Some(label) = label {
            fields.push(("p_label", label));
        }
        let out = w.send(conn, &fields);
        let ack = events_of(&out[0]).remove(0);
        assert_eq!(field(&ack, "p_label"), label);
        expect.push((conn, get(&ack, "p_sid").to_string(), label));
    }
    let out = w.deliver("news", "x");
    assert_eq!(out.len(), 4);
    for (conn, sid, label) in expect {
        let o = out.iter().find(|o| target(o) == conn).unwrap();
        let event = &events_of(o)[0];
        assert_eq!((get(event, "p_sid"), field(event, "p_label")), (sid.as_str(), label), "{conn:?}");
    }
}

#[test]
fn hub_payloads_become_attributes() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            r#"{"msg":"hi","n":3,"ok":true,"nothing":null,"nested":{"a":[1,"x"]},"p_sid":"evil","bad name":"y","a:b":"z"}"#,
            &[("msg", "hi"), ("n", "3"), ("nested", r#"{"a":[1,"x"]}"#), ("nothing", "null"), ("ok", "true")],
        ),
        ("plain text", &[("data", "plain text")]),
        ("[1,2]", &[("data", "[1,2]")]),
        ("\"just a string\"", &[("data", "\"just a string\"")]),
        ("{}", &[]),
        ("{broken", &[("data", "{broken")]),
    ];
    for (payload, want) in cases {
        let mut w = World::new();
        w.join(A, Some("stream"), Some("/t"));
        let out = w.deliver("t", payload);
        let event = events_of(&out[0]).remove(0);
        let attributes: Vec<(&str, &str)> = event
            .iter()
            .filter(|(n, _)| !n.starts_with("p_"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(attributes, *want, "{payload}");
        assert_ne!(get(&event, "p_sid"), "evil");
    }
}

#[test]
fn publish_goes_to_the_hub_and_comes_back_to_listeners() {
    let mut w = World::new();
    let listener = w.join(A, Some("stream"), Some("/chat"));
    let publisher = w.join(B, None, None);
    let out = w.send(
        C,
        &[
            ("p_event", "publish"),
            ("p_id", &publisher),
            ("p_subject", "/chat/room1"),
            ("msg", "hi \"you\""),
            ("p_to_not", "kept? no: p_ names are ours"),
            ("bad name", "dropped"),
            ("p_from", "forged"),
        ],
    );
    assert_eq!(kinds(&answer(&out, C)), ["publish-ack"]);
    assert!(field(&answer(&out, C)[0], "p_id").is_none(), "publish-ack carries no p_id");
    assert_eq!(
        w.published,
        vec![NewMessage {
            channel: Arc::from("chat/room1"),
            event: None,
            data: r#"{"msg":"hi \"you\""}"#.into(),
            ext: None
        }]
    );
    let published = w.published.remove(0);
    let out = w.deliver(&published.channel, &published.data);
    let event = events_of(&out[0]).remove(0);
    assert_eq!((get(&event, "p_subject"), get(&event, "msg")), ("/chat/room1", "hi \"you\""));
    let _ = listener;

    // The hub's refusal is the nack's reason.
    w.hub_answer = Err("publish queue is full; retry shortly".into());
    let out = w.send(C, &[("p_event", "publish"), ("p_id", &publisher), ("p_subject", "/chat/x")]);
    assert_eq!(get(&answer(&out, C)[0], "p_reason"), "publish queue is full; retry shortly");
}

#[test]
fn publish_allow_list() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "/chat", false),
        (&["/chat"], "/chat", true),
        (&["/chat"], "/chat/room", true),
        (&["/chat"], "/chatter", true),
        (&["/chat/"], "/chat", false),
        (&["/a", "/b"], "/b/c", true),
        (&["/a", "/b"], "/c", false),
        (&["/"], "/anything", true),
        (&["/"], "relative", false),
    ];
    for (allow, subject, ok) in cases {
        let mut w =
            World::with(Config { publish_allow: allow.iter().map(|s| s.to_string()).collect(), ..config() });
        let id = w.join(A, None, None);
        let out = w.send(A, &[("p_event", "publish"), ("p_id", &id), ("p_subject", subject)]);
        let event = answer(&out, A).remove(0);
        if *ok {
            assert_eq!(get(&event, "p_event"), "publish-ack", "{allow:?} {subject}");
        } else {
            assert_eq!(
                get(&event, "p_reason"),
                format!("publishing to {subject} is not allowed"),
                "{allow:?}"
            );
        }
        assert_eq!(w.published.len(), usize::from(*ok), "{allow:?} {subject}");
    }
}

#[test]
fn publish_to_one_session_skips_the_hub() {
    let mut w = World::new();
    let target = w.join(A, Some("pull"), Some("/elsewhere"));
    let other = w.join(B, Some("stream"), Some("/chat"));
    let idle = w.join(C, None, None);
    assert!(w.send(A, &[("p_event", "refresh"), ("p_id", &target)]).is_empty());
    let publisher = w.join(D, None, None);
    let out = w.send(
        D,
        &[
            ("p_event", "publish"),
            ("p_id", &publisher),
            ("p_subject", "/chat/dm"),
            ("p_to", &target),
            ("msg", "psst"),
        ],
    );
    assert!(w.published.is_empty(), "unicast does not reach the hub");
    assert_eq!(kinds(&answer(&out, D)), ["publish-ack"]);
    let events = answer(&out, A);
    assert_eq!(kinds(&events), ["refresh-ack", "data", "refresh"]);
    let data = &events[1];
    assert_eq!(
        [
            get(data, "p_from"),
            get(data, "p_to"),
            get(data, "p_subject"),
            get(data, "msg"),
            get(data, "p_seq")
        ],
        [publisher.as_str(), target.as_str(), "/chat/dm", "psst", "1"]
    );
    assert!(out.iter().all(|o| target_is(o, &[A, D])), "{other} saw nothing");
    // To a session that is not listening, or to nobody: acked, dropped.
    for to in [idle.as_str(), "nobody"] {
        let out =
            w.send(D, &[("p_event", "publish"), ("p_id", &publisher), ("p_subject", "/chat"), ("p_to", to)]);
        assert_eq!(out.len(), 1);
        assert_eq!(kinds(&answer(&out, D)), ["publish-ack"]);
    }
    assert!(w.e.sessions.get(&idle).is_some_and(|s| s.queue.is_empty()));
}

fn target_is(o: &Output, conns: &[ConnRef]) -> bool {
    conns.contains(&target(o))
}

#[test]
fn queue_overflow_drops_the_session() {
    // Pull listener between refreshes: the fourth queued event is one too many.
    let mut w = World::new();
    let id = w.join(A, Some("pull"), Some("/news"));
    for n in 0..3 {
        assert!(w.deliver("news", &n.to_string()).is_empty());
    }
    assert_eq!(w.e.sessions(), 1);
    assert!(w.deliver("news", "3").is_empty());
    assert_eq!(w.e.sessions(), 0);
    let out = w.send(A, &[("p_event", "refresh"), ("p_id", &id)]);
    assert_eq!(get(&answer(&out, A)[0], "p_reason"), format!("invalid or expired id {id}"));

    // An open stream: a burst over the limit ends it.
    let mut w = World::new();
    let id = w.join(A, Some("stream"), Some("/news"));
    let keep = w.join(B, Some("stream"), Some("/weather"));
    let out = w.deliver_many(&[("news", "1"), ("news", "2"), ("news", "3")]);
    assert!(matches!(&out[..], [Output::More { to: A, .. }]), "three fit: {out:?}");
    let out = w.deliver_many(&[("news", "1"), ("news", "2"), ("news", "3"), ("news", "4")]);
    assert_eq!(out, vec![Output::End { to: A, body: b"</pushlet>".to_vec() }]);
    assert!(!w.e.sessions.contains_key(&id) && w.e.sessions.contains_key(&keep));
    // Its connection is forgotten: closing it later changes nothing.
    w.e.closed(A, w.now);
    check_invariants(&w.e);
}

#[test]
fn sessions_expire_after_their_lease() {
    let mut w = World::new();
    let idle = w.join(A, None, None);
    let busy = w.join(B, None, None);
    let pulling = w.join(C, Some("pull"), Some("/x"));
    assert!(w.send(C, &[("p_event", "refresh"), ("p_id", &pulling)]).is_empty());
    assert_eq!(w.e.next_deadline(), Some(w.now + 20 * SECOND));
    for _ in 0..5 {
        w.tick_after(10 * SECOND);
        w.send(B, &[("p_event", "hb"), ("p_id", &busy)]);
    }
    // 50 s: everyone is alive; the pull has been answered (timeout) at 20 s.
    assert_eq!(w.e.sessions(), 3);
    let out = w.tick_after(10 * SECOND);
    assert!(out.is_empty());
    assert!(!w.e.sessions.contains_key(&idle), "idle for the 60 s lease");
    assert!(w.e.sessions.contains_key(&busy));
    // The pull's lease runs from its answer at 20 s, so it goes at 80 s.
    w.tick_after(19 * SECOND);
    assert!(w.e.sessions.contains_key(&pulling));
    w.tick_after(SECOND);
    assert!(!w.e.sessions.contains_key(&pulling));
    let out = w.send(A, &[("p_event", "hb"), ("p_id", &idle)]);
    assert_eq!(get(&answer(&out, A)[0], "p_reason"), format!("invalid or expired id {idle}"));
}

#[test]
fn a_closed_stream_queues_until_it_listens_again() {
    let mut w = World::new();
    let id = w.join(A, Some("stream"), Some("/news"));
    w.now += SECOND;
    w.e.closed(A, w.now);
    check_invariants(&w.e);
    assert!(w.deliver("news", "missed").is_empty());
    assert!(w.tick_after(30 * SECOND).is_empty(), "no heartbeat without a connection");
    let out = w.send(B, &[("p_event", "listen"), ("p_id", &id)]);
    let events = events_of(&out[0]);
    assert_eq!(kinds(&events), ["listen-ack", "hb", "data"]);
    assert_eq!((get(&events[2], "p_seq"), get(&events[2], "data")), ("2", "missed"));
    // Lease runs from the close, not from the join.
    w.e.closed(B, w.now);
    w.tick_after(59 * SECOND);
    assert_eq!(w.e.sessions(), 1);
    w.tick_after(SECOND);
    assert_eq!(w.e.sessions(), 0);
}

#[test]
fn leave_and_a_new_listen_end_the_open_stream() {
    let mut w = World::new();
    let id = w.join(A, Some("stream"), Some("/news"));
    // listen again elsewhere: the old stream ends, the new one opens.
    let out = w.send(B, &[("p_event", "listen"), ("p_id", &id), ("p_mode", "stream")]);
    assert_eq!(out[0], Output::End { to: A, body: b"</pushlet>".to_vec() });
    assert!(matches!(out[1], Output::Open { to: B, .. }));
    let out = w.deliver("news", "x");
    assert!(matches!(&out[..], [Output::More { to: B, .. }]));
    // leave from a third connection: ack there, the stream ends.
    let out = w.send(C, &[("p_event", "leave"), ("p_id", &id)]);
    assert_eq!(kinds(&answer(&out, C)), ["leave-ack"]);
    assert!(out.contains(&Output::End { to: B, body: b"</pushlet>".to_vec() }), "{out:?}");
    assert_eq!(w.e.sessions(), 0);
    assert!(w.deliver("news", "y").is_empty());
    // A held pull of a leaving session gets an empty document.
    let id = w.join(A, Some("pull"), None);
    assert!(w.send(A, &[("p_event", "refresh"), ("p_id", &id)]).is_empty());
    let out = w.send(B, &[("p_event", "leave"), ("p_id", &id)]);
    let held = out.iter().find(|o| target(o) == A).unwrap();
    assert_eq!(body(held), b"<pushlet></pushlet>");
}

#[test]
fn subscription_limits() {
    let mut w = World::new();
    let id = w.join(A, None, None);
    for n in 0..MAX_SUBSCRIPTIONS {
        let out = w.send(A, &[("p_event", "subscribe"), ("p_id", &id), ("p_subject", &format!("/s{n}"))]);
        assert_eq!(kinds(&answer(&out, A)), ["subscribe-ack"]);
    }
    let out = w.send(A, &[("p_event", "subscribe"), ("p_id", &id), ("p_subject", "/more")]);
    assert!(get(&answer(&out, A)[0], "p_reason").contains("too many subscriptions"));
    let many = vec!["/x"; MAX_SUBJECTS + 1].join(",");
    let long = format!("/{}", "y".repeat(MAX_SUBJECT_BYTES));
    let mut w = World::new();
    let id = w.join(A, None, None);
    for subject in [many, long] {
        let out = w.send(A, &[("p_event", "subscribe"), ("p_id", &id), ("p_subject", &subject)]);
        assert!(get(&answer(&out, A)[0], "p_reason").contains("the limit is"), "{subject}");
    }
    // Unsubscribing one leaves the others matching.
    let mut w = World::new();
    let id = w.join(A, Some("stream"), Some("/a"));
    let out = w.send(B, &[("p_event", "subscribe"), ("p_id", &id), ("p_subject", "/a,/b")]);
    let sid = get(&answer(&out, B)[0], "p_sid").to_string();
    w.send(B, &[("p_event", "unsubscribe"), ("p_id", &id), ("p_sid", &sid)]);
    assert_eq!(w.deliver("a", "x").len(), 1);
    assert!(w.deliver("b", "x").is_empty());
    w.send(B, &[("p_event", "unsubscribe"), ("p_id", &id)]);
    assert!(w.deliver("a", "x").is_empty());
    assert!(w.e.index.is_empty());
}

#[test]
fn extreme_configs_do_not_panic_or_spin() {
    let mut w = World::with(Config {
        lease: Duration::MAX,
        max_queue: 0,
        read_timeout: Duration::ZERO,
        auth: None,
        pull_wait_ms: (u64::MAX, 0),
        poll_wait_ms: (0, u64::MAX),
        publish_allow: vec![String::new()],
    });
    let id = w.join(A, Some("stream"), Some("/"));
    let out = w.tick_after(Duration::from_millis(20));
    assert_eq!(out.len(), 1, "one heartbeat per tick at most");
    let pull = w.join(B, Some("pull"), None);
    let poll = w.join(C, Some("poll"), None);
    w.send(D, &[("p_event", "refresh"), ("p_id", &poll)]);
    let out = w.deliver("x", "y");
    assert_eq!(out, vec![Output::End { to: A, body: b"</pushlet>".to_vec() }], "max_queue 0 drops at once");
    assert!(!w.e.sessions.contains_key(&id) && w.e.sessions.contains_key(&pull));
}

/// A small deterministic generator for the fuzz loop.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

#[test]
fn random_requests_never_panic_and_keep_streams_well_formed() {
    const HOSTILE: &[&str] = &[
        "",
        "x",
        "/news",
        "/news/sports",
        "/",
        "/chat/room",
        " , ",
        "</script><!--",
        "a\"b'c\\d&e",
        "\u{2028}\n\r\t\u{0}",
        "caf\u{e9}",
        "99999999999999999999999",
        "-1",
        "/chat/a b",
        "p_event",
    ];
    let mut w = World::with(Config { max_queue: 5, ..config() });
    let mut rng = Lcg(0x5eed);
    let mut ids: Vec<String> = vec!["nobody".into()];
    let mut sids: Vec<String> = vec!["nope".into()];
    // Which connections have an open stream (and its format), or a pending request.
    let mut open: HashMap<ConnRef, Format> = HashMap::new();
    let mut pending: HashSet<ConnRef> = HashSet::new();
    let mut formats: HashMap<String, Format> = HashMap::new();
    // How often each kind of output and answer showed up, so the loop is
    // known to reach every state.
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for round in 0..20_000u32 {
        let conn = ConnRef { loop_id: (rng.next() % 2) as usize, conn: rng.next() % 12, stream: 0 };
        let mut out = Vec::new();
        match rng.next() % 10 {
            0..=5 => {
                if open.contains_key(&conn) || pending.contains(&conn) {
                    continue; // a busy connection sends nothing
                }
                let kind = rng.pick(&[
                    "join",
                    "join-listen",
                    "listen",
                    "refresh",
                    "refresh",
                    "leave",
                    "subscribe",
                    "unsubscribe",
                    "publish",
                    "hb",
                    "bogus",
                    "",
                ]);
                let mut fields: Vec<(String, String)> = vec![("p_event".into(), kind.into())];
                if !rng.next().is_multiple_of(8) {
                    // Mostly a recent id, so sessions get past join.
                    let recent = ids.len().saturating_sub(6);
                    let from = if rng.next().is_multiple_of(4) { 0 } else { recent };
                    let id = ids[from + (rng.next() as usize) % (ids.len() - from)].clone();
                    fields.push(("p_id".into(), id));
                }
                for name in
                    ["p_format", "p_mode", "p_subject", "p_label", "p_sid", "p_to", "msg", "a:b", "p_seq"]
                {
                    if rng.next().is_multiple_of(3) {
                        let value = match name {
                            "p_format" => rng.pick(&["js", "xml", "xml-strict", "ser", "json"]).to_string(),
                            "p_mode" => rng.pick(&["stream", "pull", "poll", "push"]).to_string(),
                            "p_sid" => sids[(rng.next() as usize) % sids.len()].clone(),
                            "p_to" => ids[(rng.next() as usize) % ids.len()].clone(),
                            _ => rng.pick(HOSTILE).to_string(),
                        };
                        fields.push((name.into(), value));
                    }
                }
                let refuse = rng.next().is_multiple_of(5);
                let path = if rng.next().is_multiple_of(7) { "//x" } else { "/pushlet/pushlet.srv" };
                let mut publish = |m: &mut NewMessage, _to_hub: bool| {
                    assert!(validate_channel(&m.channel).is_ok());
                    assert!(serde_json::from_str::<Value>(&m.data).is_ok_and(|v| v.is_object()));
                    if refuse {
                        Err("busy".to_string())
                    } else {
                        Ok(())
                    }
                };
                w.e.request(Request { from: conn, fields, path: path.into() }, w.now, &mut publish, &mut out);
                // Every request is answered now or held (only pull refreshes are held).
                let answered = out.iter().any(|o| target(o) == conn);
                if !answered {
                    assert_eq!(kind, "refresh", "round {round}: unanswered {kind}");
                    pending.insert(conn);
                    *seen.entry("held").or_default() += 1;
                }
            }
            6 => {
                let channel = rng.pick(&["news", "news/sports", "chat/room", "newsletter", "x"]);
                let data = rng.pick(&[r#"{"msg":"</script>"}"#, "plain & <b>", "{\"p_seq\":1}", "[1]"]);
                let batch: Vec<Arc<Message>> = (0..1 + rng.next() % 3)
                    .map(|n| {
                        Arc::new(Message::new(
                            MessageId::new(round.into(), n),
                            Arc::from(channel),
                            None,
                            data.into(),
                        ))
                    })
                    .collect();
                w.e.deliver(&batch, w.now, &mut out);
            }
            7 | 8 => {
                w.now += Duration::from_millis(rng.next() % 6_000);
                w.e.tick(w.now, &mut out);
            }
            _ => {
                if open.remove(&conn).is_some() || pending.remove(&conn) {
                    w.e.closed(conn, w.now);
                }
            }
        }
        for o in &out {
            let to = target(o);
            let kind = match o {
                Output::Whole { .. } => "whole",
                Output::Open { .. } => "open",
                Output::More { .. } => "more",
                Output::End { .. } => "end",
            };
            *seen.entry(kind).or_default() += 1;
            let events = match o {
                Output::Whole { content_type, body, .. } => {
                    assert!(!open.contains_key(&to), "round {round}: Whole to an open stream");
                    pending.remove(&to);
                    decode(format_of(content_type), body)
                }
                Output::Open { content_type, body, .. } => {
                    assert!(!open.contains_key(&to), "round {round}: Open twice");
                    pending.remove(&to);
                    open.insert(to, format_of(content_type));
                    decode(format_of(content_type), body)
                }
                Output::More { body, .. } => {
                    let format =
                        *open.get(&to).unwrap_or_else(|| panic!("round {round}: More to a closed conn"));
                    decode(format, body)
                }
                Output::End { body, .. } => {
                    let format =
                        open.remove(&to).unwrap_or_else(|| panic!("round {round}: End to a closed conn"));
                    assert_eq!(*body, render_end(format));
                    Ok(Vec::new())
                }
            };
            let events = events.unwrap_or_else(|e| panic!("round {round}: {e}: {o:?}"));
            for event in &events {
                let name = match field(event, "p_event") {
                    Some("data") => "data",
                    Some("hb") => "hb",
                    Some("nack") => "nack",
                    Some("refresh") => "refresh",
                    _ => "other",
                };
                *seen.entry(name).or_default() += 1;
                if let Some(id) = field(event, "p_id").filter(|id| is_name(id, 20)) {
                    if !ids.iter().any(|known| known == id) {
                        ids.push(id.to_string());
                    }
                }
                if let Some(sid) = field(event, "p_sid") {
                    sids.push(sid.to_string());
                }
                if let Some(format) = field(event, "p_format").and_then(|f| Format::parse(f).ok()) {
                    formats.insert(get(event, "p_id").to_string(), format);
                }
            }
        }
        check_invariants(&w.e);
        if sids.len() > 64 {
            sids.drain(1..32);
        }
    }
    assert!(formats.len() > 10, "the loop made sessions");
    for kind in ["whole", "open", "more", "end", "held", "data", "hb", "nack", "refresh"] {
        assert!(seen.get(kind).is_some_and(|n| *n >= 10), "the loop rarely reached {kind}: {seen:?}");
    }
}
